"""Customer-typed hosts may not point inside our network."""

import ipaddress

import pytest

from apps.mailboxes.netguard import HostNotAllowed, HostNotFound, is_address_allowed, resolve_allowed_address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1",
        "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:0001::1", "64:ff9b::a00:1",
    ],
)  # fmt: skip
def test_private_loopback_link_local_multicast_and_reserved_addresses_are_refused(address):
    assert not is_address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert is_address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "localhost", "[::1]"])
def test_numeric_and_named_forms_of_loopback_are_refused(host):
    host = host.strip("[]")
    # Refused for the address it names, not because the name failed to resolve: the same host
    # goes through once loopback is allowed.
    with pytest.raises(HostNotAllowed):
        resolve_allowed_address(host, 993)
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert ipaddress.ip_address(resolve_allowed_address(host, 993, loopback)).is_loopback


def test_an_allowed_network_lets_loopback_through_and_returns_the_checked_address():
    assert resolve_allowed_address("127.0.0.1", 993, [ipaddress.ip_network("127.0.0.0/8")]) == "127.0.0.1"
    assert resolve_allowed_address("2130706433", 993, [ipaddress.ip_network("127.0.0.0/8")]) == "127.0.0.1"


def test_ipv4_mapped_loopback_matches_an_allowed_ipv4_network():
    assert is_address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), [ipaddress.ip_network("127.0.0.0/8")])


def test_unknown_host_is_reported_as_not_found():
    with pytest.raises(HostNotFound):
        resolve_allowed_address("no-such-host.invalid", 993)


@pytest.mark.parametrize("address", ["192.0.0.8", "192.0.0.9", "192.0.0.10", "192.88.99.1", "::ffff:192.0.0.8"])
def test_special_purpose_addresses_python_calls_global_are_refused(address):
    """Python 3.11.7's ipaddress calls parts of 192.0.0.0/24 (IETF protocol assignments) and the
    old 6to4 relay anycast range global: nothing a customer's mail server lives at."""
    assert not is_address_allowed(ipaddress.ip_address(address))
