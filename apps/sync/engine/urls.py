"""The one IMAP account URL parser (the engine's command line and `manage.py copymailbox`).

    imaps://LOGIN@HOST[:PORT]      implicit TLS (993)      also imap+tls://
    imap://LOGIN@HOST[:PORT]       STARTTLS (143)          also imap+starttls://
    imap+plain://LOGIN@HOST[:PORT] no encryption (143)

The login is percent-decoded (alice%40example.org); a password in the URL is refused: passwords
come from the environment or a prompt.  Each command line words the errors its own way, from
`URLError.reason`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .model import Security

SCHEMES = {
    "imaps": (Security.TLS, 993),
    "imap+tls": (Security.TLS, 993),
    "imap+starttls": (Security.STARTTLS, 143),
    "imap": (Security.STARTTLS, 143),
    "imap+plain": (Security.NONE, 143),
}


class URLError(ValueError):
    """reason: "scheme" (not one of those accepted), "incomplete" (no login or no host),
    "password" (one in the URL), "port" (not a number between 1 and 65535)."""

    def __init__(self, reason: str, scheme: str = "") -> None:
        super().__init__(reason)
        self.reason, self.scheme = reason, scheme


@dataclass(frozen=True)
class AccountURL:
    login: str  # "" when the URL names none
    host: str  # lower case; "" when the URL names none
    port: int
    security: Security

    @property
    def address(self) -> str:
        return self.login if "@" in self.login else f"{self.login}@{self.host}"


def parse_imap_url(value: str, schemes: tuple[str, ...] = tuple(SCHEMES), require_login: bool = False) -> AccountURL:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise URLError("scheme", parts.scheme)
    if require_login and (not parts.username or not parts.hostname):
        raise URLError("incomplete", parts.scheme)
    if parts.password is not None:
        raise URLError("password", parts.scheme)
    security, default_port = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise URLError("port", parts.scheme) from None
    return AccountURL(login=unquote(parts.username or ""), host=parts.hostname or "", port=port, security=security)
