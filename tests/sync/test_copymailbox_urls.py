"""The command line's account URLs: what is accepted, what is refused, and why."""

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.providers.models import Security
from apps.sync.management.commands.copymailbox import FatalError, parse_account_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("imaps://alice%40example.org@imap.example.org", ("alice@example.org", "imap.example.org", 993, Security.TLS)),
        ("imap://bob@Mail.Example.NET:1143", ("bob", "mail.example.net", 1143, Security.STARTTLS)),
        ("imap+plain://carol@127.0.0.1:14301", ("carol", "127.0.0.1", 14301, Security.NONE)),
    ],
)
def test_valid_urls_give_login_host_port_and_security(url, expected):
    account = parse_account_url(url, "source")
    assert (account.login, account.host, account.port, account.security) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pop3://alice@example.org", "must start with imaps://"),
        ("imaps://imap.example.org", "must name a login and a host"),
        ("imaps://alice:secret@imap.example.org", "put no password in the URL"),
        ("imap+plain://alice@imap.example.org", "allowed only to a loopback host"),
        ("imaps://alice@imap.example.org:99999", "port is not a number"),
    ],
)
def test_invalid_urls_are_refused_with_a_reason(url, message):
    with pytest.raises(FatalError, match=message):
        parse_account_url(url, "source")


@given(login=st.text(min_size=1, max_size=60).filter(lambda s: s.strip() == s and "\x00" not in s))
def test_any_percent_encoded_login_round_trips(login):
    account = parse_account_url(f"imaps://{quote(login, safe='')}@imap.example.org", "source")
    assert account.login == login
