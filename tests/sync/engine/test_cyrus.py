"""Dovecot -> Cyrus and Cyrus -> Dovecot: a second server implementation.

Cyrus refuses some messages Dovecot takes (a header line without a colon) and stores others
differently (8-bit header bytes become 'X'; Dovecot already serves bare line feeds as CRLF).  Each of those is
listed per message; everything else arrives exactly; no rerun, with or without checkpoints,
duplicates anything, the rewritten messages included."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import UTC, datetime

from apps.localmail import mail
from apps.sync.engine import CopyOptions, Endpoint, MemoryCheckpointStore, Security, copy_mailbox
from tests.support.cyrus import CyrusServer

from .conftest import new_box

FOLDERS = [("INBOX",), ("Sent",), ("Archive", "2020"), ("Café", "Réunions"), ("Projects",)]
INVALID_HEADER = (
    b"From: a@example.com\r\nThis line has no colon\r\nSubject: broken\r\nMessage-ID: <broken@x>\r\n\r\nbody\r\n"
)


def cyrus_box(server: CyrusServer) -> tuple[mail.Account, Endpoint]:
    user = server.new_user()
    account = mail.Account(server.host, server.port, user.login, user.password, server.prefix, server.separator)
    endpoint = Endpoint("127.0.0.1", server.port, Security.NONE, user.login, user.password, timeout=20.0)
    return account, endpoint


def sha_of(body: bytes) -> str:
    """Hash of a message as Dovecot serves it (bare line feeds as CRLF)."""
    return hashlib.sha256(re.sub(rb"(?<!\r)\n", b"\r\n", body)).hexdigest()


def by_folder(snapshot: dict) -> dict:
    """Per folder: multiset of message hashes (flags and dates compared separately below)."""
    return {path: Counter({fp[0]: n for fp, n in msgs.items()}) for path, msgs in snapshot.items()}


def test_dovecot_to_cyrus_lists_what_cyrus_refuses_or_rewrites_and_reruns_duplicate_nothing(dot_server, cyrus_server):
    src = new_box(dot_server)
    mails = mail.build_corpus(seed=51, messages=70, folders=FOLDERS)
    refused = mail.Mail(("INBOX",), INVALID_HEADER, ("\\Seen",), datetime(2020, 5, 1, tzinfo=UTC))
    mail.upload(src.account, [*mails, refused], FOLDERS)
    dest_account, dest = cyrus_box(cyrus_server)
    events = []

    result = copy_mailbox(src.endpoint(), dest, options=CopyOptions(), checkpoints=MemoryCheckpointStore(),
                          on_event=events.append)  # fmt: skip

    # What Cyrus refused: listed with the folder, UID, subject and Cyrus's own words.
    assert result.status == "finished_with_errors"
    assert [(m.folder, m.subject, m.reason) for m in result.not_copied] == [("INBOX", "broken", "refused")]
    assert "invalid header" in result.not_copied[0].detail.lower()
    # What Cyrus rewrote: every message with 8-bit header bytes, each listed.
    rewritten = [m for m in mails if has_8bit_header(m.body)]
    assert rewritten and len(result.altered) == result.altered_total == len(rewritten)
    assert {m.reason for m in result.altered} == {"headers_rewritten"}
    assert {m.subject for m in result.altered} == {subject_of(m.body) for m in rewritten}
    assert [e.detail["altered"] for e in events if e.kind == "summary"] == [len(rewritten)]
    assert not result.exact

    # Everything else arrived byte for byte, in its folder.
    source = by_folder(mail.snapshot(src.account))
    after_copy = mail.snapshot(dest_account)
    copied = by_folder(after_copy)
    left_out = Counter(sha_of(m.body) for m in rewritten) + Counter([sha_of(INVALID_HEADER)])
    for path, msgs in source.items():
        assert msgs - copied[path] == Counter({h: n for h, n in (msgs & left_out).items()}), path
        assert sum(copied[path].values()) == sum(msgs.values()) - sum((msgs & left_out).values()) + sum(
            1 for m in rewritten if m.folder == path
        ), path

    # A rerun with the checkpoints, and a new job with none: nothing more on the destination (the
    # rewritten messages are recognised although their bytes and sizes differ).
    for store in (None, MemoryCheckpointStore()):
        again = copy_mailbox(src.endpoint(), dest, options=CopyOptions(), checkpoints=store or MemoryCheckpointStore())
        assert again.copied_this_run == 0, again
        assert mail.snapshot(dest_account) == after_copy


def has_8bit_header(body: bytes) -> bool:
    return any(b > 127 for b in body.split(b"\r\n\r\n", 1)[0])


def subject_of(body: bytes) -> str:
    from email.parser import BytesHeaderParser
    from email.policy import default

    return str(BytesHeaderParser(policy=default).parsebytes(body)["Subject"])


def test_cyrus_to_dovecot_is_exact(cyrus_server, slash_server):
    src_account, source = cyrus_box(cyrus_server)
    mails = mail.build_corpus(seed=52, messages=60, folders=FOLDERS)
    mail.upload(src_account, mails, FOLDERS)
    dst = new_box(slash_server)
    result = copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=MemoryCheckpointStore())
    assert result.status == "finished" and result.exact, result
    sent = {("Sent",): ("Sent Items",)}
    assert mail.compare(mail.snapshot(src_account), mail.snapshot(dst.account), sent) == []
    assert (
        copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=MemoryCheckpointStore()).copied_this_run
        == 0
    )
