"""The Cyrus fixture (tests/support/cyrus.py) works as the engine tests need it: real password
checks, messages kept with their flags, keywords and dates, and the namespace it announces."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from apps.localmail import mail
from tests.support.cyrus import CyrusServer


def account(server: CyrusServer, **user_options) -> mail.Account:
    user = server.new_user(**user_options)
    return mail.Account(server.host, server.port, user.login, user.password, server.prefix, server.separator)


def test_a_new_user_logs_in_with_its_password_only(cyrus_server):
    acc = account(cyrus_server)
    with acc.client() as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    for login, password in [(acc.login, acc.password + "x"), ("nobody-" + acc.login, acc.password)]:
        client = IMAPClient(acc.host, port=acc.port, ssl=False, timeout=20)
        with pytest.raises(LoginError):
            client.login(login, password)
        client.logout()


def test_append_keeps_flags_keywords_and_internaldate(cyrus_server):
    acc = account(cyrus_server)
    body = b"From: a@example.com\r\nSubject: kept\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n"
    when = datetime(2001, 1, 1, 12, 34, 56, tzinfo=timezone(timedelta(hours=2)))
    with acc.client() as client:
        client.normalise_times = False
        client.append("INBOX", body, flags=(rb"\Seen", rb"\Flagged", b"$Forwarded", b"MyKeyword"), msg_time=when)
        client.select_folder("INBOX")
        [(_, data)] = client.fetch([1], ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY.PEEK[]"]).items()
    assert set(data[b"FLAGS"]) - {rb"\Recent"} == {rb"\Seen", rb"\Flagged", b"$Forwarded", b"MyKeyword"}
    assert data[b"INTERNALDATE"] == when  # the same instant (Cyrus answers in UTC)
    assert data[b"RFC822.SIZE"] == len(body)
    assert data[b"BODY[]"] == body


@pytest.mark.parametrize("fixture", ["cyrus_server", "cyrus_slash_server"])
def test_separator_and_prefix_match_namespace_and_list(fixture, request):
    server: CyrusServer = request.getfixturevalue(fixture)
    acc = account(server)
    with acc.client() as client:
        personal = client.namespace().personal
        assert [(p, s) for p, s in personal] == [(server.prefix, server.separator)]
        name = acc.server_name(("Archive", "2020"))
        client.create_folder(acc.server_name(("Archive",)))
        client.create_folder(name)
        listed = {n: delimiter for _flags, delimiter, n in client.list_folders()}
    assert listed[name] == server.separator.encode()
    assert acc.path_of(name) == ("Archive", "2020")
    assert "INBOX" in listed
