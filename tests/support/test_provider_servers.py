"""The provider look-alikes behave as documented: Dovecot profiles, ImapProxy quirks, Gmail layout.

imapclient and raw sockets only (no engine), so a failure here is the fixtures' fault."""

from __future__ import annotations

import base64
import random
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from tests.support.gmail import ALL_MAIL, IMPORTANT, LABELS, SPAM, STARRED, TRASH, build_gmail_mailbox
from tests.support.imap_proxy import ImapProxy, Quirks, emailid, gm_msgid

MESSAGE = b"From: a@example.com\r\nSubject: proxy test\r\nMessage-ID: <p1@example.com>\r\n\r\nHello.\r\n"
EXPECTED = {
    "gmail_like": "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID CHILDREN UIDPLUS ENABLE MOVE CONDSTORE ESEARCH "
    "LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE",
    "exchange_like": "IMAP4 IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+",
    "yahoo_like": "IMAP4rev1 ID MOVE NAMESPACE UIDPLUS LITERAL+ CHILDREN UNSELECT SPECIAL-USE",
    "bare": "IMAP4rev1",
}
FOLDERS = {
    "gmail_like": {
        "INBOX": set(),
        "[Gmail]/All Mail": {"\\All"},
        "[Gmail]/Sent Mail": {"\\Sent"},
        "[Gmail]/Drafts": {"\\Drafts"},
        "[Gmail]/Trash": {"\\Trash"},
        "[Gmail]/Spam": {"\\Junk"},
        "[Gmail]/Starred": {"\\Flagged"},
        "[Gmail]/Important": {"\\Important"},
    },
    "exchange_like": {n: set() for n in ("INBOX", "Sent Items", "Deleted Items", "Junk Email", "Drafts", "Archive")},
    "yahoo_like": {
        "INBOX": set(),
        "Sent": {"\\Sent"},
        "Trash": {"\\Trash"},
        "Bulk Mail": {"\\Junk"},
        "Draft": {"\\Drafts"},
        "Archive": {"\\Archive"},
    },
    "bare": {"INBOX": set()},
}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, DovecotServer]]:
    started: dict[str, DovecotServer] = {}
    try:
        for name in EXPECTED:
            started[name] = DovecotServer(getattr(Profile, name)(), pool_size=12)
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def account(server: DovecotServer, port: int | None = None) -> mail.Account:
    user = server.new_user()
    return mail.Account("127.0.0.1", port or server.port, user.login, user.password, separator="/")


class Raw:
    """A line-level IMAP client: what goes on the wire is exactly what the test wrote."""

    def __init__(self, port: int, acct: mail.Account | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        if acct is not None:
            assert self.command(b"L LOGIN %s %s" % (acct.login.encode(), acct.password.encode()))[-1].startswith(
                b"L OK"
            )

    def command(self, line: bytes, *literals: bytes, tag: bytes | None = None) -> list[bytes]:
        """Send a command (line may end in "{n}" etc.; literals follow as given); the answer's lines
        up to the tagged one, a continuation request or a BYE."""
        tag = tag or line.split()[0]
        self.sock.sendall(line if line.endswith(b"\n") else line + b"\r\n")
        for literal in literals:
            self.sock.sendall(literal)
        return self.read_until(tag)

    def read_until(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            lines.append(line)
            if not line or line.startswith((tag + b" ", b"+", b"* BYE")):
                return lines

    def close(self) -> None:
        self.sock.close()


def capabilities(lines: list[bytes]) -> set[str]:
    line = next(x for x in lines if x.startswith(b"* CAPABILITY "))
    return set(line.decode().split()[2:])


# ---------------------------------------------------------------------- profiles
@pytest.mark.parametrize("profile", list(EXPECTED))
def test_profile_advertises_exactly_the_providers_capabilities(servers, profile):
    server = servers[profile]
    acct = account(server)
    raw = Raw(server.port)
    before = capabilities(raw.command(b"a CAPABILITY"))
    assert {"AUTH=PLAIN", "STARTTLS"} <= before  # login still works: Dovecot adds these pre-login
    assert before - {"AUTH=PLAIN", "AUTH=LOGIN", "STARTTLS"} == set(EXPECTED[profile].split())
    assert raw.command(b"b LOGIN %s %s" % (acct.login.encode(), acct.password.encode()))[-1].startswith(b"b OK")
    assert capabilities(raw.command(b"c CAPABILITY")) == set(EXPECTED[profile].split())
    raw.close()
    with acct.client() as c:
        listed = {
            name: {f.decode() for f in flags} - {"\\HasNoChildren", "\\HasChildren"}
            for flags, _, name in c.list_folders()
        }
    assert listed == FOLDERS[profile]


def test_gmail_like_is_literal_minus(servers):
    """Dovecot's imap_literal_minus: {n+} up to 4096 bytes, beyond that BYE (RFC 7888)."""
    server = servers["gmail_like"]
    raw = Raw(server.port, account(server))
    small, big = MESSAGE, MESSAGE + b"x" * 5000
    assert raw.command(b"a APPEND INBOX {%d+}\r\n" % len(small), small, b"\r\n")[-1].startswith(b"a OK")
    # Dovecot answers as soon as it reads the size, and closes: the literal is not sent (sending
    # it would race the close and end in a broken pipe).
    assert raw.command(b"b APPEND INBOX {%d+}\r\n" % len(big))[-1].startswith(b"* BYE [TOOBIG]")
    raw.close()


# ---------------------------------------------------------------------- proxy
def test_proxy_forwards_big_literals_and_pipelined_literal_plus(servers):
    server = servers["exchange_like"]
    with ImapProxy(server.port) as proxy:
        acct = account(server, proxy.port)
        big = mail.make_message(random.Random(1), 1, size=3_000_000)
        corpus = mail.build_corpus(seed=5, messages=30, folders=[("INBOX",), ("Other",)])
        mail.upload_fast(acct, corpus, batch=7)  # pipelined MULTIAPPEND with {n+} literals
        with acct.client() as c:
            c.append("INBOX", big)
            c.select_folder("INBOX", readonly=True)
            bodies = [v[b"BODY[]"] for v in c.fetch(c.search(), ["BODY.PEEK[]"]).values()]
        assert big in bodies
        direct = mail.snapshot(mail.Account("127.0.0.1", server.port, acct.login, acct.password))
        assert direct == mail.snapshot(acct)
        assert sum(direct[("INBOX",)].values()) == 1 + sum(m.folder == ("INBOX",) for m in corpus)
        assert proxy.commands["MULTIAPPEND"] > 0 and proxy.commands["LITERAL+"] > 0 and proxy.refused == []


def test_proxy_capabilities_idle_and_authenticate(servers):
    server = servers["exchange_like"]
    quirks = Quirks(capabilities="IMAP4rev1 IDLE SASL-IR", objectid=True, refuse_unadvertised=True)
    with ImapProxy(server.port, quirks) as proxy:
        acct = account(server, proxy.port)
        raw = Raw(proxy.port)
        assert b"[CAPABILITY IMAP4rev1 IDLE SASL-IR AUTH=PLAIN AUTH=LOGIN OBJECTID]" in raw.greeting  # no STARTTLS
        assert raw.command(b"s STARTTLS")[-1].startswith(b"s BAD")
        plain = base64.b64encode(b"\0%s\0%s" % (acct.login.encode(), acct.password.encode()))
        assert raw.command(b"a AUTHENTICATE PLAIN")[-1].startswith(b"+")  # the server's "+" goes through
        assert raw.command(plain, tag=b"a")[-1].startswith(b"a OK [CAPABILITY IMAP4rev1 IDLE SASL-IR OBJECTID]")
        assert capabilities(raw.command(b"b CAPABILITY")) == {"IMAP4rev1", "IDLE", "SASL-IR", "OBJECTID"}
        raw.command(b"c SELECT INBOX")
        assert raw.command(b"d IDLE")[-1].startswith(b"+")
        assert raw.command(b"DONE", tag=b"d")[-1].startswith(b"d OK")
        assert raw.command(b"e UNSELECT")[-1].startswith(b"e BAD")  # Dovecot has it, "the server" not
        raw.close()
        raw = Raw(proxy.port)  # SASL-IR: the initial response on the command line
        assert raw.command(b"a AUTHENTICATE PLAIN " + plain)[-1].startswith(b"a OK")
        raw.close()
    assert proxy.reasons == ["STARTTLS", "UNSELECT"]
    assert proxy.commands["AUTHENTICATE"] == 2 and proxy.commands["IDLE"] == 1 and "DONE" not in proxy.commands


def test_proxy_shifts_sizes_and_drops_keywords(servers):
    server = servers["exchange_like"]
    with ImapProxy(server.port, Quirks(size_shift=-3, no_keywords=True)) as proxy:
        acct = account(server, proxy.port)
        with acct.client() as c:
            c.append("INBOX", MESSAGE, ("\\Seen", "$Label1", "custom"))
            info = c.select_folder("INBOX")
            assert b"\\*" not in info[b"PERMANENTFLAGS"] and b"\\Seen" in info[b"PERMANENTFLAGS"]
            c.add_flags([1], ["$Forwarded", "\\Flagged"])
            item = c.fetch([1], ["RFC822.SIZE", "FLAGS"])[1]
            assert item[b"RFC822.SIZE"] == len(MESSAGE) - 3
            assert set(item[b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen", b"\\Flagged"}
    with mail.Account("127.0.0.1", server.port, acct.login, acct.password).client() as c:  # the server itself
        c.select_folder("INBOX", readonly=True)
        item = c.fetch([1], ["RFC822.SIZE", "FLAGS"])[1]
        assert item[b"RFC822.SIZE"] == len(MESSAGE)
        assert set(item[b"FLAGS"]) - {b"\\Recent"} == {b"\\Seen", b"\\Flagged"}  # no keyword was stored


def test_proxy_refuses_what_a_bare_server_does_not_advertise(servers):
    server = servers["bare"]
    with ImapProxy(server.port, Quirks(refuse_unadvertised=True)) as proxy:
        acct = account(server, proxy.port)
        raw = Raw(proxy.port, acct)
        assert raw.command(b"a APPEND INBOX {%d+}\r\n" % len(MESSAGE), MESSAGE, b"\r\n")[-1].startswith(b"a BAD")
        # MULTIAPPEND with synchronizing literals: BAD instead of the second "+"
        assert raw.command(b"b APPEND INBOX {%d}\r\n" % len(MESSAGE))[-1].startswith(b"+")
        assert raw.command(MESSAGE + b" {%d}\r\n" % len(MESSAGE), tag=b"b")[-1].startswith(b"b BAD")
        for command in (b"c UNSELECT", b"d NAMESPACE", b"e UID MOVE 1 Trash", b"f STATUS INBOX (MESSAGES SIZE)"):
            assert raw.command(command)[-1].startswith(command.split()[0] + b" BAD")
        assert raw.command(b"g SELECT INBOX")[-1].startswith(b"g OK")
        assert raw.command(b"h UID FETCH 1:* (UID EMAILID)")[-1].startswith(b"h BAD")
        assert raw.command(b"i NOOP")[-1].startswith(b"i OK")  # still in step after all that
        raw.close()
    refused = [b"APPEND", b"APPEND", b"UNSELECT", b"NAMESPACE", b"UID", b"STATUS", b"UID"]
    assert [line.split()[1] for line in proxy.refused] == refused
    assert proxy.reasons[:2] == ["{n+} without LITERAL+", "MULTIAPPEND"]
    assert proxy.commands["MULTIAPPEND"] == 1  # counted, refused before its second message was read
    with acct.client() as c:
        assert c.select_folder("INBOX")[b"EXISTS"] == 0  # nothing refused reached the server


def test_proxy_refuses_multiappend_with_literal_plus_and_stays_in_step(servers):
    server = servers["exchange_like"]  # LITERAL+, no MULTIAPPEND
    with ImapProxy(server.port, Quirks(refuse_unadvertised=True)) as proxy:
        acct = account(server, proxy.port)
        raw = Raw(proxy.port, acct)
        n = len(MESSAGE)
        lines = raw.command(b"a APPEND INBOX {%d+}\r\n" % n, MESSAGE, b" {%d+}\r\n" % n, MESSAGE, b"\r\n")
        assert lines[-1].startswith(b"a BAD")
        assert raw.command(b"b APPEND INBOX {%d+}\r\n" % n, MESSAGE, b"\r\n")[-1].startswith(b"b OK")
        assert raw.command(b"c NOOP")[-1].startswith(b"c OK")
        raw.close()
    assert proxy.reasons == ["MULTIAPPEND"]


def test_proxy_closes_on_big_literal_plus_under_literal_minus(servers):
    server = servers["gmail_like"]
    with ImapProxy(server.port, Quirks(refuse_unadvertised=True)) as proxy:
        raw = Raw(proxy.port, account(server, proxy.port))
        small, big = MESSAGE, MESSAGE + b"x" * 5000
        assert raw.command(b"a APPEND INBOX {%d+}\r\n" % len(small), small, b"\r\n")[-1].startswith(b"a OK")
        # The proxy answers as soon as it reads the size, and closes: the literal is not sent.
        assert raw.command(b"b APPEND INBOX {%d+}\r\n" % len(big))[-1].startswith(b"* BYE [TOOBIG]")
        assert raw.file.readline() == b""
        raw.close()
    assert proxy.reasons == ["{n+} > 4096 under LITERAL-"]


def test_proxy_emulates_emailid_and_x_gm_msgid(servers):
    server = servers["gmail_like"]
    with ImapProxy(server.port, Quirks(gmail=True, objectid=True, refuse_unadvertised=True)) as proxy:
        acct = account(server, proxy.port)
        with acct.client() as c:
            assert {b"X-GM-EXT-1", b"OBJECTID"} <= set(c.capabilities())
            c.append(ALL_MAIL, MESSAGE)
            c.append(ALL_MAIL, MESSAGE)  # the same bytes again: another message
            c.select_folder(ALL_MAIL)
            c.copy([1], "INBOX")
            in_all = c.fetch(c.search(), ["EMAILID", "X-GM-MSGID"])
            c.select_folder("INBOX")
            in_inbox = c.fetch(c.search(), ["X-GM-MSGID", "EMAILID", "RFC822.SIZE"])
            with pytest.raises(Exception, match="BAD"):
                c.fetch(c.search(), ["X-GM-LABELS"])
        raw = Raw(proxy.port, acct)
        raw.command(b"s EXAMINE INBOX")
        guid_line = raw.command(b"t FETCH 1 (EMAILID)")[0]
        raw.close()
    assert in_inbox[1][b"EMAILID"] == in_all[1][b"EMAILID"] != in_all[2][b"EMAILID"]
    assert in_inbox[1][b"X-GM-MSGID"] == in_all[1][b"X-GM-MSGID"] != in_all[2][b"X-GM-MSGID"]
    assert in_inbox[1][b"RFC822.SIZE"] == len(MESSAGE)
    assert guid_line.startswith(b"* 1 FETCH (EMAILID (M") and b"X-GUID" not in guid_line
    with mail.Account("127.0.0.1", server.port, acct.login, acct.password).client() as c:
        c.select_folder(ALL_MAIL, readonly=True)
        guid = c.fetch([1], ["X-GUID"])[1][b"X-GUID"]
    assert in_all[1][b"EMAILID"] == (emailid(guid),) and in_all[1][b"X-GM-MSGID"] == gm_msgid(guid)
    assert proxy.reasons == ["X-GM-LABELS not emulated"]


def test_proxy_rewrites_appended_messages(servers):
    server = servers["yahoo_like"]
    quirks = Quirks(rewrite_message=lambda body: b"X-Rewritten: yes\r\n" + body.replace(b"\xc3\xbc", b"?"))
    with ImapProxy(server.port, quirks) as proxy:
        acct = account(server, proxy.port)
        body = b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n"
        with acct.client() as c:
            c.append("INBOX", body)
            c.select_folder("INBOX", readonly=True)
            stored = c.fetch([1], ["BODY.PEEK[]"])[1][b"BODY[]"]
    assert stored == b"X-Rewritten: yes\r\nSubject: Gr?\xc3\x9fe\r\n\r\nx\r\n"


# ---------------------------------------------------------------------- Gmail layout
def test_gmail_builder_yields_the_layout_it_describes(servers):
    server = servers["gmail_like"]
    with ImapProxy(server.port, Quirks(gmail=True, objectid=True, refuse_unadvertised=True)) as proxy:
        acct = account(server, proxy.port)
        layout = build_gmail_mailbox(acct)
        ids: dict[str, list] = {}  # folder -> the EMAILIDs it holds
        with acct.client() as c:
            listed = {name: flags for flags, _, name in c.list_folders()}
            for name, expected in layout.folders.items():
                c.select_folder(name, readonly=True)
                items = c.fetch(c.search(), ["BODY.PEEK[]", "FLAGS", "EMAILID"]).values() if expected else []
                held = Counter((v[b"BODY[]"], frozenset(f.decode() for f in v[b"FLAGS"]) - {"\\Recent"}) for v in items)
                assert held == layout.contents(name), name
                ids[name] = [v[b"EMAILID"] for v in items]
    assert proxy.refused == []  # the builder uses only what Gmail advertises
    assert listed["[Gmail]"] == (b"\\Noselect", b"\\HasChildren")
    assert set(LABELS) <= set(listed) and layout.folders["Empty Label"] == []
    # Label folders hold copies of All Mail messages (same EMAILID); Trash and Spam do not.
    for name, emailids in ids.items():
        assert len(set(emailids)) == len(emailids), name  # the duplicate pair: two ids, same bytes
        assert set(emailids).isdisjoint(ids[ALL_MAIL]) if name in (TRASH, SPAM) else set(emailids) <= set(ids[ALL_MAIL])
    assert len({e for emailids in ids.values() for e in emailids}) == layout.total
    assert layout.total == sum(len(layout.folders[f]) for f in (ALL_MAIL, TRASH, SPAM))
    assert layout.distinct_bodies == layout.total - 1  # one byte-for-byte duplicate pair ...
    assert max(Counter(m.body for m in layout.folders["INBOX"]).values()) == 2  # ... both in INBOX
    archived = layout.archived
    assert len(archived) == 4 and all(m.folders[0] == ALL_MAIL for m in archived)
    assert any(m.message_id is None for m in archived)
    assert [m.folders for m in archived if "\\Flagged" in m.flags] == [(ALL_MAIL, STARRED)]
    assert all(set(m.folders) <= {ALL_MAIL, STARRED, IMPORTANT} for m in archived)
    several = [m.key for m in layout.messages if len(set(m.folders) - {ALL_MAIL, STARRED, IMPORTANT}) > 1]
    assert set(several) >= {"work-inbox", "family-project"}
    assert layout.folders[STARRED] == [m for m in layout.messages if "\\Flagged" in m.flags]
    assert layout.folders["Work/Projects"] and layout.folders["Famille & amis"]
