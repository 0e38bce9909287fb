"""Fixed-window counters in the shared cache, and the keys they count under.

A portal that tests passwords would otherwise be a password-guessing oracle, and the status
lookup would let anyone probe which addresses are being copied. A limit is only as good as its
key: the client is found behind the trusted reverse proxies (TRUSTED_PROXIES), an IPv6 client
by its /64, and an account by its normalised login and server, so that `Victim@…`, `127.1` and
`2130706433` do not each get a fresh allowance."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import socket
import time
import unicodedata
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import ngettext

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# One customer is routinely given a whole /64 (RFC 6177), so a /128 key would let them rotate.
IPV6_CLIENT_PREFIX = 64


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the window frees a slot; 0 when allowed

    def __bool__(self) -> bool:
        return self.allowed


def _key(scope: str, subject: str) -> str:
    # Hashed, so that no address or login sits in the cache in clear.
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]
    return f"ratelimit:{scope}:{digest}"


def _counter_key(anchor: str, window_end: float) -> str:
    # The counter is named after its window's end: when the anchor expires a new window gets a
    # new counter, so a counter can never outlive, or be read against, another window.
    return f"{anchor}:{int(window_end * 1000)}"


def _retry_after(window_end: float, now: float) -> int:
    return max(1, math.ceil(window_end - now))


def _scaled(limit: int) -> int:
    # IMAPCOPY_RATE_LIMIT_FACTOR is 1 unless a load benchmark raises it.
    return limit * settings.IMAPCOPY_RATE_LIMIT_FACTOR


def _count(scope: str, subject: str, window_seconds: int) -> tuple[int, float]:
    """Count one attempt; returns the attempts in the current window and when it ends."""
    anchor = _key(scope, subject)
    for _ in range(3):
        now = time.time()
        window_end = now + window_seconds
        if not cache.add(anchor, window_end, timeout=window_seconds):
            window_end = cache.get(anchor)
            if window_end is None:  # the window ended between add and get: open the next one
                continue
        counter = _counter_key(anchor, window_end)
        cache.add(counter, 0, timeout=math.ceil(window_end - now) + 1)
        try:
            return cache.incr(counter), window_end
        except ValueError:  # expired between add and incr
            continue
    # The cache keeps losing the keys (evicting under memory pressure): count this attempt alone.
    return 1, time.time() + window_seconds


def allow(scope: str, subject: str, *, limit: int, window_seconds: int) -> Verdict:
    """Count one attempt; not allowed once `limit` attempts were made in the current window."""
    count, window_end = _count(scope, subject, window_seconds)
    if count <= _scaled(limit):
        return Verdict(True, 0)
    return Verdict(False, _retry_after(window_end, time.time()))


def peek(scope: str, subject: str, *, limit: int, window_seconds: int) -> Verdict:
    """Whether one more attempt would be allowed, without counting it (see `hit`)."""
    anchor = _key(scope, subject)
    window_end = cache.get(anchor)
    if window_end is None:
        return Verdict(True, 0)
    count = cache.get(_counter_key(anchor, window_end)) or 0
    if count < _scaled(limit):
        return Verdict(True, 0)
    return Verdict(False, _retry_after(window_end, time.time()))


def hit(scope: str, subject: str, *, window_seconds: int) -> None:
    """Count one attempt without judging it: with `peek`, only failures count."""
    _count(scope, subject, window_seconds)


def rate_limited_message(verdict: Verdict) -> str:
    minutes = max(1, math.ceil(verdict.retry_after / 60))
    return ngettext(
        "Too many attempts. Please try again in %(minutes)d minute.",
        "Too many attempts. Please try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


# --- Keys -----------------------------------------------------------------------------------


def _parse_ip(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        return address.ipv4_mapped
    return address


def _is_trusted_proxy(address: IPAddress) -> bool:
    return any(address in network for network in settings.TRUSTED_PROXIES)


def _client_ip(request) -> IPAddress | None:
    remote = _parse_ip(request.META.get("REMOTE_ADDR", ""))
    if remote is None or not _is_trusted_proxy(remote):
        # Not from our proxy: X-Forwarded-For is whatever the client wanted it to be.
        return remote
    client = remote
    # Each proxy appends the address it was connected from: read right to left, trusting only
    # what our own proxies wrote; the left-most hops are the client's to invent.
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _parse_ip(hop)
        if address is None:
            break  # a malformed hop: the last proxy we trust is all we know
        client = address
        if not _is_trusted_proxy(address):
            break
    return client


def client_address(request) -> str:
    """The rate-limit key of the client that sent this request: its IPv4 address or IPv6 /64."""
    address = _client_ip(request)
    if address is None:
        return request.META.get("REMOTE_ADDR", "")
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


# The spellings inet_aton (and so getaddrinfo) reads as an IPv4 address: 127.1, 2130706433,
# 0x7f.0.0.1, 0177.0.0.1.
_IPV4_SPELLING = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")


def normalize_host(host: str) -> str:
    """One spelling per server: lowercase, no trailing dot, IDNA, canonical IP literals."""
    value = unicodedata.normalize("NFKC", host).strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    if ":" in value:
        try:
            address = ipaddress.IPv6Address(value.split("%", 1)[0])
        except ValueError:
            return value
        return str(address.ipv4_mapped or address.compressed)
    value = value.rstrip(".")
    if _IPV4_SPELLING.match(value):
        try:
            return socket.inet_ntoa(socket.inet_aton(value))
        except OSError:
            pass
    try:
        return value.encode("idna").decode("ascii")
    except UnicodeError:
        return value


def account_subject(*, login: str, host: str, provider_slug: str = "") -> str:
    """The rate-limit subject of a mailbox account, the same whatever its spelling."""
    normalized_login = unicodedata.normalize("NFKC", login).strip().casefold()
    return "\x00".join((normalized_login, normalize_host(host), provider_slug))
