"""Each failure gets its own code; skipped messages are reported; secrets stay secret."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile, free_port
from apps.sync.engine import (
    CopyOptions,
    EngineError,
    ErrorCode,
    MemoryCheckpointStore,
    Security,
    copy_mailbox,
    probe_account,
)

from .conftest import DOT_TO_SLASH, new_box

REPO = Path(__file__).resolve().parents[3]


def copy(src_endpoint, dst_endpoint, **options):
    events = []
    result = copy_mailbox(
        src_endpoint, dst_endpoint, options=CopyOptions(**options),
        checkpoints=MemoryCheckpointStore(), on_event=events.append,
    )  # fmt: skip
    return result, events


@contextmanager
def fake_server(greeting: bytes | None) -> Iterator[int]:
    """Accepts connections and sends `greeting` (None: says nothing at all)."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            if greeting is not None:
                conn.sendall(greeting)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for c in conns:
            c.close()


def test_wrong_password_gives_auth_failed(src, dst):
    bad = dataclasses.replace(src.endpoint(), password="not-the-password-xyz")
    result, events = copy(bad, dst.endpoint())
    assert (result.status, result.error_code, result.error_side) == ("failed", ErrorCode.AUTH_FAILED, "source")
    assert "not-the-password-xyz" not in repr(result) + json.dumps([e.detail for e in events])
    with pytest.raises(EngineError) as exc:
        probe_account(bad)
    assert exc.value.code == ErrorCode.AUTH_FAILED
    assert "not-the-password-xyz" not in str(exc.value) + repr(bad)


def test_unreachable_host_gives_dns_failed(src, dst):
    endpoint = dataclasses.replace(dst.endpoint(), host="no-such-host.invalid")
    result, _ = copy(src.endpoint(), endpoint)
    assert (result.error_code, result.error_side) == (ErrorCode.DNS_FAILED, "destination")


def test_refused_port_gives_connection_refused(src):
    endpoint = dataclasses.replace(src.endpoint(), port=free_port())
    with pytest.raises(EngineError) as exc:
        probe_account(endpoint)
    assert exc.value.code == ErrorCode.CONNECTION_REFUSED


def test_silent_server_gives_timeout(src):
    with fake_server(None) as port:
        endpoint = dataclasses.replace(src.endpoint(), port=port, timeout=1.0)
        started = time.monotonic()
        result, _ = copy(endpoint, endpoint)
    assert result.error_code == ErrorCode.TIMEOUT
    assert time.monotonic() - started < 5


def test_non_imap_server_gives_not_imap(src):
    with fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        with pytest.raises(EngineError) as exc:
            probe_account(dataclasses.replace(src.endpoint(), port=port, timeout=2.0))
    assert exc.value.code == ErrorCode.NOT_IMAP


def test_tls_failure_untrusted_certificate(src, dst):
    untrusted = src.endpoint(Security.TLS, ca_file=None)  # self-signed, not in the system store
    result, _ = copy(untrusted, dst.endpoint())
    assert (result.error_code, result.error_side) == (ErrorCode.TLS_ERROR, "source")
    # the same server is fine once its certificate is trusted, or verification is off
    assert probe_account(src.endpoint(Security.TLS)).folders >= 1
    assert probe_account(src.endpoint(Security.TLS, ca_file=None, verify_tls=False)).folders >= 1


def test_tls_failure_wrong_host_name(src):
    endpoint = src.endpoint(Security.TLS, host="127.0.0.2")  # certificate is for localhost/127.0.0.1
    endpoint = dataclasses.replace(endpoint, connect_address="127.0.0.1")
    with pytest.raises(EngineError) as exc:
        probe_account(endpoint)
    assert exc.value.code == ErrorCode.TLS_ERROR


def test_connect_address_keeps_host_for_tls_verification(src):
    endpoint = dataclasses.replace(src.endpoint(Security.TLS), host="localhost", connect_address="127.0.0.1")
    assert probe_account(endpoint).folders >= 1


def test_over_quota_stops_with_clear_code(src, slash_server):
    small = new_box(slash_server, quota_bytes=150_000)
    mail.upload(src.account, mail.build_corpus(seed=31, messages=60, sizes=(10_000,)), mail.DEFAULT_FOLDERS)
    result, events = copy(src.endpoint(), small.endpoint())
    assert result.status == "failed"
    assert (result.error_code, result.error_side) == (ErrorCode.OVER_QUOTA, "destination")
    assert any(e.kind == "error" and e.detail["code"] == "over_quota" for e in events)


def test_too_large_message_is_skipped_and_reported(src, limited_server):
    # The destination advertises APPENDLIMIT=100000 (RFC 7889).
    dst = new_box(limited_server)
    mails = mail.build_corpus(seed=32, messages=6, folders=[("INBOX",)], sizes=(1000,))
    big = mail.Mail(
        ("INBOX",), mail.make_message(__import__("random").Random(1), 999, 150_000), (), mails[0].internaldate
    )
    mail.upload(src.account, [*mails, big])
    result, events = copy(src.endpoint(), dst.endpoint())
    assert result.status == "finished_with_errors"
    assert result.messages_copied == len(mails)
    [skipped] = result.not_copied
    assert (skipped.folder, skipped.reason, skipped.size) == ("INBOX", "too_large", len(big.body))
    assert skipped.subject and "#999" in skipped.subject and skipped.date
    assert any(e.kind == "message_skipped" and e.detail["reason"] == "too_large" for e in events)
    assert sum(mail.snapshot(dst.account)[("INBOX",)].values()) == len(mails)


def test_max_message_bytes_option_skips_bigger_messages(src, dst):
    mails = mail.build_corpus(seed=33, messages=8, folders=[("INBOX",)], sizes=(500, 30_000))
    mail.upload(src.account, mails)
    result, _ = copy(src.endpoint(), dst.endpoint(), max_message_bytes=20_000)
    big = [m for m in mails if len(m.body) > 20_000]
    assert big and len(result.not_copied) == len(big)
    assert result.messages_copied == len(mails) - len(big)


def test_messages_left_behind_are_copied_by_the_next_run_without_duplicates(src, dst):
    """Skipped (here: over a configured maximum, later raised) messages stay due: the checkpoint
    stops below the first one, so a retry copies them and recognises what came after."""
    mails = mail.build_corpus(seed=36, messages=30, folders=[("INBOX",), ("Projects",)], sizes=(500, 30_000))
    mail.upload(src.account, mails)
    big = [m for m in mails if len(m.body) > 20_000]
    store = MemoryCheckpointStore()
    first = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(max_message_bytes=20_000),
                         checkpoints=store)  # fmt: skip
    assert first.status == "finished_with_errors"
    assert (first.messages_copied, first.messages_skipped) == (len(mails) - len(big), len(big))
    second = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert second.status == "finished", second
    assert second.copied_this_run == len(big)
    assert (second.messages_copied, second.messages_skipped) == (len(mails), 0)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
    third = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert third.copied_this_run == 0 and third.messages_copied == len(mails)


def test_probe_account_counts_folders_messages_and_bytes(src, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    summary = probe_account(src.endpoint())
    snap = mail.snapshot(src.account)
    assert summary.folders == len(snap)
    assert summary.messages == len(corpus)
    assert summary.bytes == sum(len(m.body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) for m in corpus)
    assert "IMAP4REV1" in summary.capabilities


def test_progress_is_rate_limited(src, dst):
    mails = mail.build_corpus(seed=34, messages=120, sizes=(1000,))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    calls = []
    started = time.monotonic()
    result = copy_mailbox(
        src.endpoint(max_messages_per_second=100), dst.endpoint(),
        options=CopyOptions(progress_interval=0.25, batch_bytes=8 * 1024),
        checkpoints=MemoryCheckpointStore(),
        on_progress=lambda p: calls.append((time.monotonic(), p)),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.status == "finished"
    assert elapsed > 1.0
    assert 3 <= len(calls) <= elapsed / 0.25 + 3
    # between the first and the final (forced) calls, no two calls are closer than the interval
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls[1:-1])]
    assert all(g >= 0.24 for g in gaps)
    final = calls[-1][1]
    assert final.messages_copied == final.messages_total == len(mails)
    assert final.folders_done == final.folders_total


@pytest.mark.slow
def test_50mb_message_copies_with_bounded_memory(src, dst):
    body = mail.make_message(random.Random(5), 1, 50 * 1024 * 1024)
    mail.upload(src.account, [mail.Mail(("INBOX",), body, ("\\Seen",), mail.build_corpus(messages=1)[0].internaldate)])
    del body
    env = dict(os.environ, IMAPCOPY_SOURCE_PASSWORD=src.user.password, IMAPCOPY_DEST_PASSWORD=dst.user.password)
    cmd = [
        sys.executable, "-m", "apps.sync.engine.cli", "-q",
        f"imap+plain://{src.user.login}@127.0.0.1:{src.server.port}",
        f"imap+plain://{dst.user.login}@127.0.0.1:{dst.server.port}",
    ]  # fmt: skip
    # Measure the copier through a small intermediate process: the kernel's max-RSS of a child
    # spawned straight from this (big) test process would include our own memory.
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    peak_mb = peak_kb / 1024
    assert peak_mb < 150, peak_mb
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), {("Sent",): ("Sent Items",),
        ("Trash",): ("Deleted Items",), ("Junk",): ("Junk E-mail",)}) == []  # fmt: skip


def test_unannounced_size_limit_never_lets_message_text_run_as_commands(src):
    """A server refusing a big message mid-APPEND must not read the rest of it as commands."""
    with DovecotServer(
        Profile(name="strict", quota=True, append_limit=100_000, advertise_append_limit=False)
    ) as server:
        dst = new_box(server)
        small = mail.build_corpus(seed=35, messages=6, folders=[("INBOX",)], sizes=(1000,))
        # Lines that are valid IMAP commands right after the header, then padding to ~160 kB.
        evil_body = b"Subject: big\r\n\r\nzz CREATE Injected\r\n" + b"zz CREATE Injected2\r\n" * 7000
        evil = mail.Mail(("INBOX",), evil_body, (), small[0].internaldate)
        mail.upload(src.account, [*small[:3], evil, *small[3:]])
        result, _ = copy(src.endpoint(), dst.endpoint())
        assert result.status == "finished_with_errors", result
        assert [s.reason for s in result.not_copied] == ["rejected_too_large"]
        assert result.messages_copied == len(small)
        with dst.account.client() as c:
            assert not [name for _, _, name in c.list_folders() if "Injected" in name]


def add_empty_messages(box, count: int) -> None:
    """Messages the destination refuses (Dovecot will not store a zero-byte message), put straight
    into the source's Maildir since no IMAP server would accept them either."""
    new = box.server.maildir(box.user) / "new"
    for i in range(count):
        path = new / f"{1700000000 + i}.empty{i}.imapcopy-test"
        path.write_bytes(b"")
        if os.geteuid() == 0:
            os.chown(path, box.server.run_uid, box.server.run_gid)


def test_refused_messages_are_reported_and_the_copy_goes_on_within_the_error_budget(src, dst):
    mails = mail.build_corpus(seed=34, messages=12, folders=[("INBOX",)], sizes=(800,))
    mail.upload(src.account, mails)
    add_empty_messages(src, 3)
    result, events = copy(src.endpoint(), dst.endpoint(), error_budget=3)
    assert result.status == "finished_with_errors", result
    assert (result.messages_copied, result.messages_failed) == (len(mails), 3)
    refused = [e for e in events if e.kind == "message_failed"]
    assert len(refused) == 3 and all(e.folder == "INBOX" and e.detail["size"] == 0 for e in refused)
    assert all("zero byte" in e.detail["reason"].lower() for e in refused), refused
    assert sum(mail.snapshot(dst.account)[("INBOX",)].values()) == len(mails)


def test_refused_messages_are_tried_again_by_a_rerun_which_duplicates_nothing(src, dst):
    mails = mail.build_corpus(seed=37, messages=12, folders=[("INBOX",)], sizes=(800,))
    mail.upload(src.account, mails[:6])
    add_empty_messages(src, 2)  # refused, between messages that are copied
    mail.upload(src.account, mails[6:])
    store = MemoryCheckpointStore()
    first = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert (first.status, first.messages_copied, first.messages_failed) == ("finished_with_errors", len(mails), 2)
    events = []
    again = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store,
                         on_event=events.append)  # fmt: skip
    assert (again.status, again.messages_copied, again.messages_failed) == ("finished_with_errors", len(mails), 2)
    assert again.copied_this_run == 0
    assert len([e for e in events if e.kind == "message_failed"]) == 2  # tried again, refused again
    assert sum(mail.snapshot(dst.account)[("INBOX",)].values()) == len(mails)


def test_more_refused_messages_than_the_error_budget_stop_the_copy(src, dst):
    mail.upload(src.account, mail.build_corpus(seed=35, messages=4, folders=[("INBOX",)], sizes=(800,)))
    add_empty_messages(src, 4)
    result, events = copy(src.endpoint(), dst.endpoint(), error_budget=2)
    assert result.status == "failed"
    assert (result.error_code, result.error_side) == (ErrorCode.ERROR_BUDGET_EXCEEDED, "destination")
    assert result.messages_failed > 2  # checked after each batch: the whole batch is accounted for
    assert any(e.kind == "error" and e.detail["code"] == "error_budget_exceeded" for e in events)
