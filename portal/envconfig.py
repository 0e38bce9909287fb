"""Small, strict readers for settings that come from environment variables.

Every reader fails loudly (ImproperlyConfigured) on a value it cannot parse: a typo in a
production environment must stop the process at start-up, not change behaviour silently.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0/yes/no/on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of IP networks or single addresses ("127.0.0.0/8,::1")."""
    networks = []
    for item in env_list(name):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network") from None
    return networks


def env_ports(name: str, default: list[int]) -> list[int] | None:
    """A comma-separated list of TCP ports ("143,993"), or "any" for no restriction (None)."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    if raw.strip().lower() == "any":
        return None
    ports = []
    for item in env_list(name):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a TCP port (1-65535) or 'any'")
        ports.append(int(item))
    if not ports:
        raise ImproperlyConfigured(f"{name} must list at least one port, or be 'any'")
    return ports


def env_choice(name: str, default: str, choices: list[str] | tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_slug(name: str, default: str, *, max_length: int = 30) -> str:
    """A short name of lowercase letters, digits and hyphens (it goes into Redis keys and ids)."""
    import re

    value = os.environ.get(name, default)
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", value) or len(value) > max_length:
        raise ImproperlyConfigured(
            f"{name} must be 1 to {max_length} lowercase letters, digits or inner hyphens, got {value!r}"
        )
    return value


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    from urllib.parse import urlsplit

    value = os.environ.get(name, default)
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        expected = " or ".join(scheme + "://" for scheme in schemes)
        raise ImproperlyConfigured(f"{name} must be a URL starting with {expected}, got {value!r}")
    if parts.scheme in ("http", "https", "redis", "rediss") and not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host: {value!r}")
    return value


def local_secret(path: Path, make) -> str:
    """Read a secret kept in a file, creating it (mode 0600) on first use.

    Only for local runs: production passes secrets through the environment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = make()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process (the worker starting beside the web server) won the race.
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
        handle.flush()
        os.fsync(handle.fileno())
    return value


def random_secret_key() -> str:
    return secrets.token_urlsafe(50)
