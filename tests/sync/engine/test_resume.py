"""Interruptions: kill -9, dropped connections, cancellation, UIDVALIDITY changes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.sync.engine import (
    CopyOptions,
    JsonFileCheckpointStore,
    MemoryCheckpointStore,
    Security,
    copy_mailbox,
    probe_account,
)
from tests.support.proxy import TcpProxy

from .conftest import DOT_TO_SLASH, new_box

REPO = Path(__file__).resolve().parents[3]


def cli_command(
    src, dst, state: Path, *extra: str, source_port: int | None = None, dest_port: int | None = None
) -> tuple[list[str], dict]:
    """The engine's command line between two test accounts (or proxies in front of them)."""
    env = dict(os.environ, IMAPCOPY_SOURCE_PASSWORD=src.user.password, IMAPCOPY_DEST_PASSWORD=dst.user.password)
    cmd = [
        sys.executable, "-m", "apps.sync.engine.cli", "-q",
        f"imap+plain://{src.user.login}@127.0.0.1:{source_port or src.server.port}",
        f"imap+plain://{dst.user.login}@127.0.0.1:{dest_port or dst.server.port}",
        "--state", str(state), *extra,
    ]  # fmt: skip
    return cmd, env


def run_then_kill(cmd: list[str], env: dict, state: Path, delay: float) -> None:
    """Start the command line copier and SIGKILL it `delay` seconds into its copy (timed from its
    first checkpoint, so a slow start-up on a busy machine does not kill it before it began)."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_then_resume_leaves_exactly_one_copy(src, dst, tmp_path):
    mails = mail.build_corpus(seed=21, messages=240, sizes=(0, 3000))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    state = tmp_path / "state.json"
    # Paced and in small batches so that SIGKILL lands at many different points of the copy.
    cmd, env = cli_command(src, dst, state, "--batch-mb", "0.02", "--max-messages-per-second", "100")
    for delay in (0.35, 0.5, 0.2, 0.65, 0.45):
        run_then_kill(cmd, env, state, delay)
    assert state.exists()
    partial = json.loads(state.read_text())
    assert any(not ck["done"] for ck in partial.values()) or len(partial) < len(mail.DEFAULT_FOLDERS)
    final = subprocess.run(cmd[:-4], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stdout + final.stderr
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_unconfirmed_append_window_is_reconciled(src, dst):
    """The crash window between an APPEND and its checkpoint, reproduced exactly."""
    mails = mail.build_corpus(seed=22, messages=40, folders=[("INBOX",)])
    mail.upload(src.account, mails)
    store = MemoryCheckpointStore()
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).status == "finished"
    # Pretend we died after sending the second half: checkpoint says half confirmed, rest pending.
    ck = store.load()["INBOX"]
    ck.last_uid, ck.pending_uid, ck.dest_uidnext, ck.done = 20, ck.last_uid, 21, False
    ck.messages_copied = 20
    store.save(ck)
    mail.upload(src.account, mail.build_corpus(seed=23, messages=3, folders=[("INBOX",)]))
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert result.status == "finished"
    assert result.copied_this_run == 3
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_a_checkpoint_whose_last_writes_were_lost_duplicates_nothing(src, dst):
    """A checkpoint older than the destination: its last saves lost (a machine crash with SQLite's
    synchronous=NORMAL, a database restored from a backup). Every checkpoint write the run made
    after the first copy is gone, so it looks like a closed window at the end of that copy, yet
    the destination holds the messages copied since; they must be recognised, not copied twice."""
    mail.upload(src.account, mail.build_corpus(seed=26, messages=20, folders=[("INBOX",)]))
    store = MemoryCheckpointStore()
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).status == "finished"
    stale = dataclasses.replace(store.load()["INBOX"])
    mail.upload(src.account, mail.build_corpus(seed=27, messages=5, folders=[("INBOX",)]))
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).copied_this_run == 5
    store.save(stale)  # the second run's checkpoint writes never reached the disk
    mail.upload(src.account, mail.build_corpus(seed=28, messages=2, folders=[("INBOX",)]))
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert result.status == "finished", result
    assert result.copied_this_run == 2
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
    assert result.messages_copied == result.messages_total


def test_mail_delivered_to_the_destination_between_runs_is_left_alone(src, dst):
    """The destination is a live mailbox: mail that reached it since the last run is neither
    taken for a copy of a source message nor touched, and new source mail is still copied."""
    mail.upload(src.account, mail.build_corpus(seed=29, messages=10, folders=[("INBOX",)]))
    store = MemoryCheckpointStore()
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).status == "finished"
    delivered = mail.build_corpus(seed=30, messages=3, folders=[("INBOX",)])
    mail.upload(dst.account, delivered)
    mail.upload(src.account, mail.build_corpus(seed=31, messages=4, folders=[("INBOX",)]))
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert result.status == "finished", result
    assert result.copied_this_run == 4
    source, destination = mail.snapshot(src.account), mail.snapshot(dst.account)
    assert source[("INBOX",)] - destination[("INBOX",)] == Counter()  # every source message, once
    assert sum(destination[("INBOX",)].values()) == sum(source[("INBOX",)].values()) + len(delivered)  # untouched


def test_a_duplicate_is_not_mistaken_for_its_copied_twin_when_a_split_copy_resumes(src, dst):
    """A split folder's window starts where the folder started, so it also holds copies of
    confirmed messages: an uncopied exact duplicate of one of them must still be copied."""
    twin, other = mail.build_corpus(seed=44, messages=2, folders=[("INBOX",)], duplicate_every=0)[:2]
    mail.upload(src.account, [twin])
    store = MemoryCheckpointStore()
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).status == "finished"
    mail.upload(src.account, [other, twin])  # source UIDs 2 and 3; 3 is an exact duplicate of 1
    # The state a split copy leaves when killed: UID 1 confirmed, the part with UIDs 2-3 sent but
    # not confirmed (nothing of it landed), the window open from the folder's first UID.
    ck = store.load()["INBOX"]
    ck.last_uid, ck.pending_uid, ck.dest_uidnext, ck.dest_mark_uid, ck.done = 1, 3, 1, 0, False
    store.save(ck)
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert result.status == "finished", result
    assert result.copied_this_run == 2
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
    assert sum(mail.snapshot(dst.account)[("INBOX",)].values()) == 3


def test_uidvalidity_change_reconciles_without_duplicates(src, dst, dot_server):
    mails = mail.build_corpus(seed=24, messages=30, folders=[("INBOX",), ("Projects",)])
    mail.upload(src.account, mails)
    store = MemoryCheckpointStore()
    copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    # The source folder is rebuilt (new UIDVALIDITY, same messages) and gets one new message.
    with src.account.client() as c:
        c.delete_folder("INBOX.Projects")
    projects = [m for m in mails if m.folder == ("Projects",)]
    mail.upload(src.account, projects + mail.build_corpus(seed=25, messages=1, folders=[("Projects",)]))
    events = []
    result = copy_mailbox(
        src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store, on_event=events.append
    )
    assert result.status == "finished"
    assert result.copied_this_run == 1
    assert any(e.kind == "uidvalidity_changed" for e in events)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_dropped_connection_is_resumed(src, dst):
    mails = mail.build_corpus(seed=26, messages=120, sizes=(2000, 20000))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    events = []
    # Every source connection is cut once ~300 kB went through: in the middle of the copy.
    with TcpProxy("127.0.0.1", src.server.port, drop_after_bytes=300_000) as proxy:
        endpoint = dataclasses.replace(src.endpoint(), port=proxy.port)
        result = copy_mailbox(
            endpoint,
            dst.endpoint(),
            options=CopyOptions(batch_bytes=64 * 1024),
            checkpoints=MemoryCheckpointStore(),
            on_event=events.append,
        )
        assert proxy.drops == 1
    assert result.status == "finished", result
    assert any(e.kind == "retry" for e in events)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_destination_connection_dropped_is_resumed(src, dst):
    mails = mail.build_corpus(seed=27, messages=60, sizes=(2000, 20000))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    with TcpProxy("127.0.0.1", dst.server.port, drop_after_bytes=300_000) as proxy:
        dest = dataclasses.replace(dst.endpoint(), port=proxy.port)
        result = copy_mailbox(
            src.endpoint(), dest, options=CopyOptions(batch_bytes=32 * 1024), checkpoints=MemoryCheckpointStore()
        )
        assert proxy.drops == 1
    assert result.status == "finished", result
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_cancel_leaves_resumable_state(src, dst, tmp_path):
    # Two big folders: a cancel honoured only between folders would copy dozens more messages.
    mails = mail.build_corpus(seed=28, messages=150, sizes=(0, 5000), folders=[("INBOX",), ("Archive",)])
    mail.upload(src.account, mails)
    store = JsonFileCheckpointStore(tmp_path / "state.json")
    copied_when_asked: list[int] = []

    def on_progress(p) -> None:
        if p.messages_copied >= 20 and not copied_when_asked:
            copied_when_asked.append(p.messages_copied)

    slow_source = src.endpoint(max_messages_per_second=100)
    result = copy_mailbox(
        slow_source, dst.endpoint(), options=CopyOptions(batch_bytes=16 * 1024, progress_interval=0.05),
        checkpoints=store, on_progress=on_progress, should_cancel=lambda: bool(copied_when_asked),
    )  # fmt: skip
    assert result.status == "cancelled"
    assert result.error_code == "cancelled"
    # Honoured at the next checkpoint: the batches already read (16 kB each) land, and no more
    # than half a folder; the throttle (100 messages a second) keeps a loaded machine's lag small.
    assert result.messages_copied - copied_when_asked[0] <= 40
    assert 0 < result.messages_copied < len(mails)
    resumed = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert resumed.status == "finished"
    assert resumed.copied_this_run == len(mails) - result.messages_copied
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_tls_resume_through_starttls(src, dst):
    """Same resume logic over STARTTLS, to make sure the raw path works on TLS sockets."""
    mail.upload(src.account, mail.build_corpus(seed=29, messages=20, folders=[("INBOX",)]))
    store = MemoryCheckpointStore()
    for _ in range(2):
        result = copy_mailbox(
            src.endpoint(Security.STARTTLS), dst.endpoint(Security.STARTTLS),
            options=CopyOptions(), checkpoints=store,
        )  # fmt: skip
        assert result.status == "finished"
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_throttling_answer_backs_off_and_goes_on(src, dst):
    mail.upload(src.account, mail.build_corpus(seed=30, messages=20, folders=[("INBOX",), ("Projects",)]))
    answered = []

    def throttle_first_examine(chunk: bytes) -> bytes:
        # A Microsoft-style refusal of the first EXAMINE (read-only, so nothing is lost).
        if not answered and b"OK [READ-ONLY]" in chunk:
            answered.append(True)
            return re.sub(rb"(X\d+) OK \[READ-ONLY\][^\r\n]*", rb"\1 NO [UNAVAILABLE] Request is throttled", chunk)
        return chunk

    events = []
    with TcpProxy("127.0.0.1", src.server.port, rewrite_down=throttle_first_examine) as proxy:
        source = dataclasses.replace(src.endpoint(), port=proxy.port)
        result = copy_mailbox(
            source, dst.endpoint(), options=CopyOptions(), checkpoints=MemoryCheckpointStore(), on_event=events.append
        )
    assert answered
    assert result.status == "finished", result
    assert any(e.kind == "throttled" for e in events)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_connection_limit_falls_back_to_one_connection(src):
    with DovecotServer(Profile(name="one", max_connections_per_user=1)) as server:
        box = new_box(server)
        mail.upload(src.account, mail.build_corpus(seed=31, messages=30, folders=[("INBOX",), ("Projects",)]))
        events = []
        result = copy_mailbox(
            src.endpoint(), box.endpoint(), options=CopyOptions(parallelism=2),
            checkpoints=MemoryCheckpointStore(), on_event=events.append,
        )  # fmt: skip
        assert result.status == "finished", result
        assert any(e.kind == "throttled" and e.detail.get("reason") == "connection_limit" for e in events)
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(box.account)) == []


def test_big_folder_split_between_connections_copies_each_message_once(src, dst, caplog):
    caplog.set_level(logging.INFO, logger="imapcopy.engine")
    mails = mail.build_corpus(seed=40, messages=300, folders=[("INBOX",), ("Small",)], sizes=(3000,))
    mails = [m for m in mails if m.folder == ("INBOX",)] + [m for m in mails if m.folder == ("Small",)][:5]
    mail.upload(src.account, mails)
    store = MemoryCheckpointStore()
    events = []
    result = copy_mailbox(
        src.endpoint(), dst.endpoint(), options=CopyOptions(batch_bytes=16 * 1024, parallelism=3),
        checkpoints=store, on_event=events.append,
    )  # fmt: skip
    assert result.status == "finished", result
    assert [e.folder for e in events if e.kind == "folder_started"].count("INBOX") == 1
    assert "copying folder INBOX in 8 parallel parts" in caplog.text
    inbox = store.load()["INBOX"]
    assert inbox.done and inbox.last_uid == inbox.source_uidnext - 1 and inbox.pending_uid == inbox.last_uid
    again = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(parallelism=3), checkpoints=store)
    assert again.copied_this_run == 0
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_kill_9_during_split_folder_copy_leaves_exactly_one_copy(src, dst, tmp_path):
    mails = mail.build_corpus(seed=41, messages=400, folders=[("INBOX",)], sizes=(0, 4000))
    mail.upload(src.account, mails)
    state = tmp_path / "state.json"
    cmd, env = cli_command(
        src, dst, state, "--batch-mb", "0.02", "--parallelism", "3", "--max-messages-per-second", "250"
    )
    for delay in (0.5, 0.3, 0.6):
        run_then_kill(cmd, env, state, delay)
    assert not json.loads(state.read_text())["INBOX"]["done"]
    final = subprocess.run(cmd[:-2], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stdout + final.stderr
    assert json.loads(state.read_text())["INBOX"]["messages_copied"] == len(mails)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_destination_without_multiappend_literal_plus_or_uidplus(src, tmp_path):
    """One APPEND per message with synchronizing literals; resume still exact."""
    bare = Profile(name="bare", extra_config="imap_capability = IMAP4rev1 NAMESPACE CHILDREN IDLE")
    with DovecotServer(bare) as server:
        box = new_box(server)
        capabilities = set(probe_account(box.endpoint()).capabilities)
        assert not capabilities & {"MULTIAPPEND", "LITERAL+", "UIDPLUS"}, capabilities
        mails = mail.build_corpus(seed=42, messages=40, folders=[("INBOX",), ("Projects",)], sizes=(500, 1_200_000))
        mail.upload(src.account, mails)
        store = JsonFileCheckpointStore(tmp_path / "state.json")
        result = copy_mailbox(src.endpoint(), box.endpoint(), options=CopyOptions(), checkpoints=store)
        assert result.status == "finished", result
        ck = store.load()["INBOX"]
        ck.last_uid, ck.pending_uid, ck.dest_uidnext, ck.done = 3, ck.last_uid, 4, False
        store.save(ck)
        again = copy_mailbox(src.endpoint(), box.endpoint(), options=CopyOptions(), checkpoints=store)
        assert again.status == "finished" and again.copied_this_run == 0
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(box.account)) == []


def test_counters_stay_exact_when_a_cancelled_split_copy_is_resumed(src, dst):
    """Parts of a split folder run ahead of its checkpoint; the resumed run recognises that mail
    on the destination and must not count it a second time (the customer saw 5,232 of 5,000)."""
    mails = mail.build_corpus(seed=43, messages=400, folders=[("INBOX",)], sizes=(2000, 6000))
    mail.upload(src.account, mails)
    store = MemoryCheckpointStore()
    cancel = []

    def on_progress(p) -> None:
        if p.messages_copied >= 150:
            cancel.append(True)

    options = CopyOptions(batch_bytes=16 * 1024, parallelism=3, progress_interval=0.05)
    slow_source = src.endpoint(max_messages_per_second=300)
    first = copy_mailbox(
        slow_source, dst.endpoint(), options=options, checkpoints=store, on_progress=on_progress,
        should_cancel=lambda: bool(cancel),
    )  # fmt: skip
    assert first.status == "cancelled"
    on_destination = sum(mail.snapshot(dst.account)[("INBOX",)].values())
    assert first.messages_copied == on_destination
    saved = store.load()["INBOX"]
    assert saved.messages_copied <= on_destination  # the checkpoint counts only what it covers
    progress = []
    resumed = copy_mailbox(
        src.endpoint(), dst.endpoint(), options=options, checkpoints=store, on_progress=progress.append
    )
    assert resumed.status == "finished", resumed
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
    assert resumed.messages_copied == resumed.messages_total == len(mails)
    assert resumed.copied_this_run == len(mails) - on_destination
    assert max(p.messages_copied for p in progress) == len(mails)
    assert store.load()["INBOX"].messages_copied == len(mails)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
