"""Copies across real distances (issue 13): a destination without LITERAL+ makes each message wait
a round trip, so the engine uses more connections there and shares big folders out by message
count as well as bytes; and the writer stores a FETCH's messages while the rest of it is still
arriving, so that the destination's link is busy from the first message on."""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Iterator

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.sync.engine import CopyOptions, MemoryCheckpointStore, copy_mailbox
from apps.sync.engine import append as append_module
from apps.sync.engine.pipeline import STREAM_BYTES
from tests.support import imap_proxy
from tests.support.imap_proxy import ImapProxy, Quirks

from .conftest import new_box
from .test_providers import proxied


@pytest.fixture(scope="module")
def gmail_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.gmail_like()) as server:
        yield server


@pytest.fixture(scope="module")
def exchange_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.exchange_like()) as server:
        yield server


@pytest.fixture
def appends_per_connection(monkeypatch) -> dict[int, int]:
    """APPEND commands the proxy saw, per destination connection."""
    seen: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    command = imap_proxy.Connection._command

    def _command(self, tag, name, text):
        if name == "APPEND":
            with lock:
                seen[id(self)] += 1
        return command(self, tag, name, text)

    monkeypatch.setattr(imap_proxy.Connection, "_command", _command)
    return seen


@pytest.mark.parametrize(
    ("dest_server", "quirks", "connections"),
    [
        ("gmail_server", Quirks(gmail=True, refuse_unadvertised=True), 4),
        ("exchange_server", Quirks(refuse_unadvertised=True), 2),
    ],
    ids=["gmail-literal-minus", "exchange-literal-plus"],
)
def test_one_big_folder_into_a_destination_without_literal_plus_is_shared_by_more_connections(
    request, plain_server, dest_server, quirks, connections, appends_per_connection
):
    """One folder of about 250 messages of 9 kB (each above LITERAL-'s 4,096 bytes: into Gmail each
    waits a round trip for the server's "+").  Into the Gmail-like destination the copy runs
    parallelism_round_trip_appends (4) connections, all storing into that one folder; into the
    Exchange-like one (LITERAL+: no wait) the usual parallelism (2), as few bytes as it is.
    Either way every message arrives once and a rerun copies nothing."""
    server = request.getfixturevalue(dest_server)
    src, dst = new_box(plain_server), new_box(server)
    mails = mail.build_corpus(seed=141, messages=240, folders=[("INBOX",)], sizes=(9000,))
    mail.upload_fast(src.account, mails)
    # Small batches, so that a folder of 2 MB is worth sharing out at all.
    options = CopyOptions(parallelism=2, parallelism_round_trip_appends=4, batch_bytes=256 * 1024)
    with ImapProxy(server.port, quirks) as proxy:
        dest, _ = proxied(dst, proxy)
        result = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=(store := MemoryCheckpointStore()))
        assert proxy.refused == [], proxy.reasons
        assert result.status == "finished" and result.exact, result
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == []
        storing = [n for n in appends_per_connection.values() if n]
        assert len(storing) == connections, dict(appends_per_connection)
        assert sum(storing) == len(mails)
        for again_store in (store, MemoryCheckpointStore()):
            again = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=again_store)
            assert again.status == "finished" and again.copied_this_run == 0, again
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == []


def test_the_connection_limit_of_a_provider_still_caps_the_extra_connections(
    plain_server, gmail_server, appends_per_connection
):
    """A Gmail-like destination whose provider allows 3 connections gets 3, not 4."""
    src, dst = new_box(plain_server), new_box(gmail_server)
    mails = mail.build_corpus(seed=142, messages=160, folders=[("INBOX",)], sizes=(9000,))
    mail.upload_fast(src.account, mails)
    options = CopyOptions(parallelism=2, parallelism_round_trip_appends=4, batch_bytes=256 * 1024)
    with ImapProxy(gmail_server.port, Quirks(gmail=True, refuse_unadvertised=True)) as proxy:
        dest = dataclasses.replace(proxied(dst, proxy)[0], max_connections=3)
        result = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=MemoryCheckpointStore())
        assert result.status == "finished" and result.exact, result
        assert len([n for n in appends_per_connection.values() if n]) == 3, dict(appends_per_connection)
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == []


def test_a_fetch_is_stored_in_slices_while_it_arrives(plain_server, dot_server, monkeypatch):
    """With 2 MB batches, the writer is handed each FETCH's messages in slices of about
    STREAM_BYTES as they arrive, not the whole batch at its end: more APPENDs than FETCHes, none
    much bigger than a slice; every message still arrives once, in UID order within its folder."""
    src, dst = new_box(plain_server), new_box(dot_server)
    mails = mail.build_corpus(seed=143, messages=120, folders=[("INBOX",)], sizes=(40_000,))
    mail.upload_fast(src.account, mails)
    stored: list[list[int]] = []
    append = append_module.Appender.append

    def recording_append(self, mailbox, messages, keep_flag):
        stored.append([m.uid for m in messages])
        return append(self, mailbox, messages, keep_flag)

    monkeypatch.setattr(append_module.Appender, "append", recording_append)
    options = CopyOptions(parallelism=1, batch_bytes=2 * 1024 * 1024)
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=options, checkpoints=MemoryCheckpointStore())
    assert result.status == "finished" and result.exact, result
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == []
    # 120 x 40 kB = 4.8 MB: FETCHes of 256 kB, 512 kB, 1 MB, 2 MB, then the rest (5 in all).
    assert len(stored) > 10, [len(s) for s in stored]
    per_slice = STREAM_BYTES // 40_000 + 1
    assert max(len(s) for s in stored) <= per_slice, [len(s) for s in stored]
    assert [uid for s in stored for uid in s] == sorted(uid for s in stored for uid in s)
