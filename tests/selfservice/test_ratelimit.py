"""Rate-limit keys and verdicts (issue 12, finding 5): the client behind the trusted proxies,
IPv6 clients by their /64, one bucket per account whatever its spelling, the wait time."""

import ipaddress
import time

import pytest
from django.test import RequestFactory

from apps.selfservice.ratelimit import (
    Verdict,
    account_subject,
    allow,
    client_address,
    hit,
    normalize_host,
    peek,
    rate_limited_message,
)

PROXY = "10.0.0.5"


def request_from(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().post("/", **extra)


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(f"{PROXY}/32"), ipaddress.ip_network("10.1.0.0/16")]


def test_behind_a_trusted_proxy_two_customers_get_separate_buckets(behind_proxy):
    alice = client_address(request_from(PROXY, "198.51.100.7"))
    bob = client_address(request_from(PROXY, "203.0.113.9"))
    assert (alice, bob) == ("198.51.100.7", "203.0.113.9")
    assert [bool(allow("test-ip", alice, limit=2, window_seconds=60)) for _ in range(3)] == [True, True, False]
    assert allow("test-ip", bob, limit=2, window_seconds=60)


def test_the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy(behind_proxy):
    # The left-most values are the client's to write; our proxies appended the others.
    request = request_from(PROXY, "1.2.3.4, 198.51.100.7, 10.1.2.3")
    assert client_address(request) == "198.51.100.7"


def test_a_forged_forwarded_for_from_an_untrusted_client_is_ignored(behind_proxy):
    assert client_address(request_from("198.51.100.7", "203.0.113.9")) == "198.51.100.7"
    assert client_address(request_from("198.51.100.7", "10.0.0.5")) == "198.51.100.7"


def test_forwarded_for_is_ignored_when_no_proxy_is_trusted(settings):
    settings.TRUSTED_PROXIES = []
    assert client_address(request_from(PROXY, "203.0.113.9")) == PROXY


@pytest.mark.parametrize("forwarded_for", ["", "unknown", "203.0.113.9, garbage", "203.0.113.9,,"])
def test_a_malformed_hop_falls_back_to_the_last_trusted_proxy(behind_proxy, forwarded_for):
    assert client_address(request_from(PROXY, forwarded_for)) == PROXY


def test_a_malformed_hop_behind_a_trusted_one_falls_back_to_that_proxy(behind_proxy):
    assert client_address(request_from(PROXY, "garbage, 10.1.2.3")) == "10.1.2.3"


def test_an_ipv6_client_is_keyed_by_its_64(behind_proxy):
    one = client_address(request_from("2001:db8:1:2::1"))
    other_in_same_64 = client_address(request_from("2001:db8:1:2:ffff:ffff:ffff:fffe"))
    next_64 = client_address(request_from("2001:db8:1:3::1"))
    assert one == other_in_same_64 == "2001:db8:1:2::/64"
    assert next_64 != one
    assert client_address(request_from(PROXY, "2001:DB8:1:2::99")) == one


def test_an_ipv4_peer_of_a_dual_stack_socket_is_keyed_as_ipv4(behind_proxy):
    assert client_address(request_from("::ffff:198.51.100.7")) == "198.51.100.7"
    assert client_address(request_from("::ffff:10.0.0.5", "203.0.113.9")) == "203.0.113.9"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("::1", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[::FFFF:127.0.0.1]", "127.0.0.1"),
        ("IMAP.Example.ORG.", "imap.example.org"),
        (" imap.example.org ", "imap.example.org"),
        ("MAIL.Bücher.example", "mail.xn--bcher-kva.example"),
        ("ｉｍａｐ.example.org", "imap.example.org"),
    ],
)
def test_normalize_host_gives_one_spelling_per_server(spelling, canonical):
    assert normalize_host(spelling) == canonical


def test_spellings_of_one_account_share_a_bucket():
    spellings = [
        account_subject(login="victim@example.org", host="127.0.0.1"),
        account_subject(login=" Victim@Example.org", host="127.1"),
        account_subject(login="VICTIM@EXAMPLE.ORG ", host="2130706433"),
        account_subject(login="victim@example.org", host="0x7f.0.0.1"),
    ]
    assert len(set(spellings)) == 1
    verdicts = [allow("test-account", subject, limit=3, window_seconds=600) for subject in spellings]
    assert [bool(v) for v in verdicts] == [True, True, True, False]
    assert account_subject(login="victim@example.org", host="127.0.0.2") != spellings[0]


def test_a_refusal_says_how_long_until_the_window_frees_a_slot():
    assert allow("wait", "a", limit=1, window_seconds=600) == Verdict(True, 0)
    refused = allow("wait", "a", limit=1, window_seconds=600)
    assert not refused
    assert 595 <= refused.retry_after <= 600
    assert rate_limited_message(refused) == "Too many attempts. Please try again in 10 minutes."


def test_the_wait_is_rounded_up_to_whole_minutes():
    assert rate_limited_message(Verdict(False, 61)) == "Too many attempts. Please try again in 2 minutes."
    assert rate_limited_message(Verdict(False, 1)) == "Too many attempts. Please try again in 1 minute."


def test_peek_does_not_count_and_hit_does():
    for _ in range(5):
        assert peek("failures", "a", limit=2, window_seconds=60)
    hit("failures", "a", window_seconds=60)
    assert peek("failures", "a", limit=2, window_seconds=60)
    hit("failures", "a", window_seconds=60)
    refused = peek("failures", "a", limit=2, window_seconds=60)
    assert not refused and 55 <= refused.retry_after <= 60
    assert peek("failures", "b", limit=2, window_seconds=60)


def test_a_new_window_starts_once_the_old_one_ends():
    assert allow("short", "a", limit=1, window_seconds=1)
    assert not allow("short", "a", limit=1, window_seconds=1)
    time.sleep(2.1)
    assert allow("short", "a", limit=1, window_seconds=1)
