"""Pipelined APPEND into destinations without MULTIAPPEND (issue 13): several APPENDs in flight
on one connection, back to back with LITERAL+ or LITERAL- (messages up to 4,096 bytes), waiting
only for the "+" of a synchronizing literal.  Each destination sits behind the provider-like
proxy (refusing what it did not advertise); a recorder on the proxy notes when each APPEND
reached it and when its tagged answer left it, so the tests see APPENDs overlapping."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import EXCHANGE_CAPABILITY, DovecotServer, Profile
from apps.sync.engine import CopyOptions, MemoryCheckpointStore, copy_mailbox
from apps.sync.engine.errors import ErrorCode
from tests.support import imap_proxy
from tests.support.imap_proxy import ImapProxy, Quirks

from .conftest import new_box
from .test_providers import proxied
from .test_resume import REPO, cli_command

FOLDERS = [("INBOX",), ("Work",), ("Work", "Deep")]
# Below LITERAL-'s 4,096 bytes, between it and LITERAL_PLUS_MAX_UNANNOUNCED, and above it.
SIZES = (0, 2000, 9000, 90_000)


@pytest.fixture(scope="module")
def exchange_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.exchange_like()) as server:
        yield server


@pytest.fixture(scope="module")
def gmail_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.gmail_like()) as server:
        yield server


@pytest.fixture(scope="module")
def bare_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.bare()) as server:
        yield server


@pytest.fixture(scope="module")
def strict_exchange_server() -> Iterator[DovecotServer]:
    """Exchange-like, refusing messages over 100 kB without announcing it (no APPENDLIMIT)."""
    profile = Profile(
        name="strict-exchange", capability=EXCHANGE_CAPABILITY, quota=True, append_limit=100_000,
        advertise_append_limit=False, max_keyword_length=200, layout="fs",
    )  # fmt: skip
    with DovecotServer(profile) as server:
        yield server


class Timeline:
    """APPENDs seen by every ImapProxy connection: when each command reached the proxy, and when
    the proxy passed its tagged answer on (recorded before the client can have read it).  An
    APPEND recorded before the answer of an earlier one was sent while that one was in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[int, list[bytes]] = defaultdict(list)  # connection -> APPEND tags, in order
        self.open: dict[int, set[bytes]] = defaultdict(set)  # connection -> APPENDs not yet answered
        self.most: dict[int, int] = defaultdict(int)  # connection -> most APPENDs in flight at once
        self.answered = 0  # APPENDs answered (OK or not)
        self.answer_delay = 0.0  # seconds each tagged APPEND answer is held back

    def in_flight(self) -> dict[int, int]:
        with self.lock:
            return {conn: len(tags) for conn, tags in self.open.items()}


@pytest.fixture
def timeline(monkeypatch) -> Timeline:
    line = Timeline()
    command, rewrite = imap_proxy.Connection._command, imap_proxy.Connection._rewrite_response

    def _command(self, tag, name, text):
        if name == "APPEND":
            with line.lock:
                line.sent[id(self)].append(tag)
                line.open[id(self)].add(tag)
                line.most[id(self)] = max(line.most[id(self)], len(line.open[id(self)]))
        return command(self, tag, name, text)

    def _rewrite_response(self, text, fetch):
        tag = text.split(b" ", 1)[0]
        if tag in line.open.get(id(self), ()):
            if line.answer_delay:
                time.sleep(line.answer_delay)
            with line.lock:
                line.open[id(self)].discard(tag)
                line.answered += 1
        return rewrite(self, text, fetch)

    monkeypatch.setattr(imap_proxy.Connection, "_command", _command)
    monkeypatch.setattr(imap_proxy.Connection, "_rewrite_response", _rewrite_response)
    return line


@pytest.mark.parametrize(
    ("dest_server", "quirks"),
    [
        ("exchange_server", Quirks(refuse_unadvertised=True)),
        ("gmail_server", Quirks(gmail=True, refuse_unadvertised=True)),
        ("bare_server", Quirks(refuse_unadvertised=True)),
    ],
    ids=["exchange-literal-plus", "gmail-literal-minus", "bare-synchronizing"],
)
def test_appends_are_pipelined_without_multiappend_and_the_copy_is_exact(
    request, plain_server, dest_server, quirks, timeline
):
    """Every message arrives once with its flags and date; several APPENDs were in flight on a
    connection at once; only advertised extensions were used ({n+} with LITERAL+, with LITERAL-
    only up to 4,096 bytes, never on a bare server); a rerun copies nothing."""
    server = request.getfixturevalue(dest_server)
    src, dst = new_box(plain_server), new_box(server)
    mails = mail.build_corpus(seed=131, messages=90, folders=FOLDERS, sizes=SIZES)
    mail.upload(src.account, mails)
    timeline.answer_delay = 0.002  # the destination answers a little late, as across a network
    with ImapProxy(server.port, quirks) as proxy:
        dest, _ = proxied(dst, proxy)
        options = CopyOptions(parallelism=2)
        result = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=MemoryCheckpointStore())
        assert proxy.refused == [], proxy.reasons
        assert result.status == "finished" and result.exact, result
        assert result.messages_copied == len(mails)
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == []
        assert proxy.commands["MULTIAPPEND"] == 0
        assert proxy.commands["APPEND"] == len(mails)
        # The proxy reads a command only once it forwarded the previous one, and Dovecot answers in
        # order: two at once is all it can see; one APPEND at a time would show 1 on every connection.
        assert max(timeline.most.values()) >= 2, dict(timeline.most)
        if dest_server == "bare_server":
            assert proxy.commands["LITERAL+"] == 0
        else:  # small messages go without waiting for "+"; bigger ones (some) wait for it
            assert 0 < proxy.commands["LITERAL+"] < len(mails), proxy.commands
        again = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=MemoryCheckpointStore())
        assert again.status == "finished" and again.copied_this_run == 0, again
        assert proxy.refused == []


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxied"])
def test_a_refused_message_fails_alone_among_pipelined_appends(plain_server, strict_exchange_server, through_proxy):
    """A message the destination refuses (too big for its unannounced limit: its synchronizing
    literal answered NO, before or after the "+") is reported alone; the others, in flight around
    it, are copied once each; a rerun tries it again and duplicates nothing."""
    src, dst = new_box(plain_server), new_box(strict_exchange_server)
    small = mail.build_corpus(seed=132, messages=30, folders=[("INBOX",)], sizes=(0, 2000, 20_000))
    big_body = mail.make_message(random.Random(7), 999, size=150_000)
    big = mail.Mail(("INBOX",), big_body, ("\\Seen",), small[0].internaldate)
    mail.upload(src.account, [*small[:12], big, *small[12:]])
    with ImapProxy(strict_exchange_server.port, Quirks(refuse_unadvertised=True)) as proxy:
        dest = proxied(dst, proxy)[0] if through_proxy else dst.endpoint()
        options = CopyOptions(parallelism=1)
        result = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=(store := MemoryCheckpointStore()))
        assert result.status == "finished_with_errors", result
        assert [(s.reason, s.size) for s in result.not_copied] == [("rejected_too_large", len(big_body))]
        assert result.messages_copied == len(small)
        expected = mail.snapshot(src.account)
        big_hash = hashlib.sha256(big_body).hexdigest()
        expected[("INBOX",)] = Counter({fp: n for fp, n in expected[("INBOX",)].items() if fp[0] != big_hash})
        assert mail.compare(expected, mail.snapshot(dst.account)) == []
        for again_store in (store, MemoryCheckpointStore()):
            again = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=again_store)
            assert again.copied_this_run == 0 and [s.uid for s in again.not_copied] == [13], again
        assert mail.compare(expected, mail.snapshot(dst.account)) == []
        assert proxy.refused == []


def test_kill_9_with_appends_in_flight_on_every_connection_then_a_rerun(
    plain_server, exchange_server, tmp_path, timeline
):
    """The engine's command line into an Exchange-like destination (LITERAL+, no MULTIAPPEND),
    killed with SIGKILL while every one of its destination connections has several APPENDs
    unanswered and the destination holds some but not all messages; the rerun leaves every
    message exactly once: 0 duplicates, 0 missing."""
    src, dst = new_box(plain_server), new_box(exchange_server)
    folders = [("INBOX",), ("A",), ("B",), ("C",)]
    mails = mail.build_corpus(seed=133, messages=320, folders=folders, sizes=(0, 3000, 9000))
    mail.upload_fast(src.account, mails)
    pairs = 3
    # Answers held back long enough that every pair is mid-folder at once, even on a slow machine
    # (10 ms let a fast pair finish its folders before the last one started: a flaky trigger).
    timeline.answer_delay = 0.03
    with ImapProxy(exchange_server.port, Quirks(refuse_unadvertised=True)) as proxy:
        state = tmp_path / "state.json"
        cmd, env = cli_command(src, dst, state, "--parallelism", str(pairs), dest_port=proxy.port)
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        busy: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                busy = [n for n in timeline.in_flight().values() if n >= 2]
                if len(busy) == pairs and timeline.answered > 0:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.002)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the copy ended before APPENDs were in flight everywhere"
        at_kill = busy
        timeline.answer_delay = 0.0
        held = sum(sum(c.values()) for c in mail.snapshot(dst.account).values())
        assert 0 < held < len(mails), held
        checkpoints = json.loads(state.read_text()).values()
        assert any(not ck["done"] for ck in checkpoints)
        # Messages stored whose APPEND was never confirmed: the window the rerun must reconcile.
        assert held > sum(ck["messages_copied"] for ck in checkpoints), (held, list(checkpoints))

        final = subprocess.run([*cmd, "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stdout + final.stderr
        assert json.loads(final.stdout)["status"] == "finished"
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account)) == [], at_kill
        assert proxy.refused == [], proxy.reasons


def test_a_full_destination_stops_pipelined_appends_with_over_quota(plain_server, strict_exchange_server):
    """The destination fills up with APPENDs in flight: the copy stops with over_quota, as one
    APPEND at a time did, and no message is stored twice; the checkpoint claims no message that
    is not on the destination."""
    src, dst = new_box(plain_server), new_box(strict_exchange_server, quota_bytes=150_000)
    mails = mail.build_corpus(seed=134, messages=40, folders=[("INBOX",)], sizes=(10_000,), duplicate_every=0)
    mail.upload(src.account, mails)
    store = MemoryCheckpointStore()
    result = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(parallelism=1), checkpoints=store)
    assert result.status == "failed" and result.error_code == ErrorCode.OVER_QUOTA, result
    held = mail.snapshot(dst.account)[("INBOX",)]
    assert 0 < sum(held.values()) < len(mails) and max(held.values()) == 1
    source = mail.snapshot(src.account)[("INBOX",)]
    assert held - source == Counter()
    ck = store.load()["INBOX"]
    assert ck.messages_copied <= sum(held.values()) and ck.last_uid <= sum(held.values())
