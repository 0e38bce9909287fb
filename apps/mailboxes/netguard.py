"""Refuse customer-typed hosts that point inside our network (SSRF).

The host is resolved once, every address is checked, and the caller connects to the address
that was checked, so a DNS answer that changes between check and connect (rebinding) cannot
bypass the guard.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class HostNotAllowed(Exception):
    """The host resolves to an address customers may not reach."""


class HostNotFound(Exception):
    """The host name does not resolve."""


# Special-purpose ranges that Python 3.11's ipaddress calls global although no customer's mail
# server is there (RFC 6890's IETF protocol assignments, the deprecated 6to4 relay anycast).
_NOT_FOR_CUSTOMERS = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("192.88.99.0/24"))


def _is_public(address: IPAddress) -> bool:
    if any(address in network for network in _NOT_FOR_CUSTOMERS):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d reaches a.b.c.d: judge that address, nothing else.
            return _is_public(address.ipv4_mapped)
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not _is_public(embedded):
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def is_address_allowed(address: IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        mapped = address.ipv4_mapped
        if any(mapped in network for network in allowed_networks):
            return True
    if any(address in network for network in allowed_networks):
        return True
    return _is_public(address)


def resolve_allowed_address(host: str, port: int, allowed_networks: Iterable[IPNetwork] = ()) -> str:
    """Resolve `host` and return one address to connect to, or raise.

    Every address the name resolves to must be allowed, not just the first: otherwise an
    attacker's name could list a public and a private address and win half the time."""
    allowed_networks = list(allowed_networks)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise HostNotFound(host) from None
    addresses = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not is_address_allowed(address, allowed_networks):
            raise HostNotAllowed(host)
        addresses.append(str(address))
    if not addresses:
        raise HostNotFound(host)
    return addresses[0]
