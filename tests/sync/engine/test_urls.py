"""The one IMAP URL parser (engine/urls.py), as the engine's command line uses it: no server."""

from __future__ import annotations

import argparse

import pytest

from apps.sync.engine import Security
from apps.sync.engine.cli import parse_endpoint
from apps.sync.engine.urls import URLError, parse_imap_url

ARGS = argparse.Namespace(ca_file=None, insecure=False, timeout=60.0, max_messages_per_second=None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("imaps://alice%40example.org@imap.example.org", ("alice@example.org", "imap.example.org", 993, Security.TLS)),
        ("imap+tls://a@h:995", ("a", "h", 995, Security.TLS)),
        ("imap://bob@Mail.Example.NET:1143", ("bob", "mail.example.net", 1143, Security.STARTTLS)),
        ("imap+starttls://b@h", ("b", "h", 143, Security.STARTTLS)),
        ("imap+plain://carol@127.0.0.1:14301", ("carol", "127.0.0.1", 14301, Security.NONE)),
        ("imaps://imap.example.org", ("", "imap.example.org", 993, Security.TLS)),  # the engine CLI allows no login
    ],
)
def test_engine_cli_endpoints(url, expected):
    endpoint = parse_endpoint(url, "pw", ARGS)
    assert (endpoint.login, endpoint.host, endpoint.port, endpoint.security) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pop3://alice@example.org", "unsupported URL scheme 'pop3'"),
        ("imaps://alice:secret@imap.example.org", "put passwords in the environment"),
        ("imaps://alice@imap.example.org:99999", "port is not a number"),
    ],
)
def test_engine_cli_refusals(url, message):
    with pytest.raises(SystemExit, match=message):
        parse_endpoint(url, "pw", ARGS)


def test_parser_reasons():
    for url, reason, kwargs in [
        ("http://a@h", "scheme", {}),
        ("imap+tls://a@h", "scheme", {"schemes": ("imaps", "imap", "imap+plain")}),
        ("imaps://h", "incomplete", {"require_login": True}),
        ("imaps://a:@h", "password", {}),
        ("imaps://a@h:0x", "port", {}),
    ]:
        with pytest.raises(URLError) as caught:
            parse_imap_url(url, **kwargs)
        assert caught.value.reason == reason, url
