"""A hostile IMAP server cannot exhaust the engine: every misbehaviour ends in bounded time and
memory with its own error code, and hostile folder names never reach a command or a path as such.

Each run of the engine happens in a child process, so that its peak memory (VmHWM) is its own:
a gigantic literal read into memory, or an endless answer kept, would show there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from imapclient import imap_utf7

from apps.sync.engine import (
    CopyOptions,
    Endpoint,
    EngineError,
    ErrorCode,
    MemoryCheckpointStore,
    Security,
    copy_mailbox,
    probe_account,
)
from apps.sync.engine.folders import list_folders
from apps.sync.engine.opening import connect
from tests.support.hostile_imap import HOSTILE_NAMES, LOGIN, PASSWORD, HostileImapServer, Scenario

REPO = Path(__file__).resolve().parents[3]
TIMEOUT = 1.0  # the engine's socket timeout in these tests
MAX_RSS_MB = 150  # the child's peak: ~40 MB of interpreter and libraries, the rest is headroom

CHILD = r"""
import json, sys, time
from apps.sync.engine import (CopyOptions, Endpoint, EngineError, MemoryCheckpointStore, Security, copy_mailbox,
                              probe_account)
spec = json.load(sys.stdin)
def endpoint(d):
    return Endpoint(d["host"], d["port"], Security.NONE, d["login"], d["password"], timeout=d["timeout"],
                    max_literal_bytes=d.get("max_literal_bytes"), max_folders=d.get("max_folders"))
started = time.monotonic()
if spec["mode"] == "probe":
    try:
        probe_account(endpoint(spec["source"]))
        code = side = None
    except EngineError as exc:
        code, side = exc.code.value, exc.side
else:
    result = copy_mailbox(endpoint(spec["source"]), endpoint(spec["destination"]), options=CopyOptions(),
                          checkpoints=MemoryCheckpointStore())
    code, side = (result.error_code.value if result.error_code else None), result.error_side
# VmHWM, not ru_maxrss: a child started with vfork inherits its parent's ru_maxrss across exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "side": side, "seconds": time.monotonic() - started, "max_rss_mb": peak_kb / 1024}))
"""


def hostile_endpoint(server: HostileImapServer, **extra) -> dict:
    return {"host": "127.0.0.1", "port": server.port, "login": LOGIN, "password": PASSWORD, "timeout": TIMEOUT, **extra}


def dovecot_endpoint(box) -> dict:
    return {"host": "127.0.0.1", "port": box.server.port, "login": box.user.login, "password": box.user.password,
            "timeout": 20.0}  # fmt: skip


def run_engine(mode: str, source: dict, destination: dict | None = None, wall: float = 60) -> dict:
    """The engine in a child process; its outcome, its own duration and its peak memory."""
    spec = json.dumps({"mode": mode, "source": source, "destination": destination})
    started = time.monotonic()
    child = subprocess.run([sys.executable, "-c", CHILD], input=spec, capture_output=True, text=True,
                           timeout=wall, cwd=REPO)  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    outcome["wall"] = time.monotonic() - started
    return outcome


# scenario -> (code, seconds the failure may take at most)
SOURCE_FAILURES = {
    Scenario.HTTP_GREETING: (ErrorCode.NOT_IMAP, 10),
    Scenario.SMTP_GREETING: (ErrorCode.NOT_IMAP, 10),
    Scenario.SILENT_AFTER_GREETING: (ErrorCode.TIMEOUT, 10),
    Scenario.LOGIN_GIGANTIC_LITERAL: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.LOGIN_ENDLESS_LITERAL: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.LOGIN_ENDLESS_LINE: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.LOGIN_ENDLESS_UNTAGGED: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    # A byte every 0.2 s: no read ever times out, the exchange as a whole does.
    Scenario.LOGIN_TRICKLE: (ErrorCode.TIMEOUT, 10),
    Scenario.LIST_20000: (ErrorCode.TOO_MANY_FOLDERS, 10),
    Scenario.LIST_ENDLESS: (ErrorCode.TOO_MANY_FOLDERS, 10),
}
# Only a copy goes this far (the connection test lists folders and asks STATUS, nothing more).
COPY_ONLY_FAILURES = {
    Scenario.SELECT_ENDLESS_UNTAGGED: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.FETCH_ENDLESS_LITERAL: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.FETCH_OVERSIZED_LITERAL: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    Scenario.FETCH_ENDLESS_UNTAGGED: (ErrorCode.RESPONSE_TOO_LARGE, 10),
    # Silence is worth retrying (a network hiccup looks the same): 6 attempts with backoff.
    Scenario.SELECT_NEVER_COMPLETES: (ErrorCode.TIMEOUT, 45),
    Scenario.LIST_TRICKLE: (ErrorCode.TIMEOUT, 45),
}


@pytest.mark.parametrize("scenario", [*SOURCE_FAILURES, Scenario.LIST_TRICKLE])
def test_connection_test_against_a_hostile_server_fails_fast_with_its_code(scenario):
    code, seconds = {**SOURCE_FAILURES, Scenario.LIST_TRICKLE: (ErrorCode.TIMEOUT, 10)}[scenario]
    with HostileImapServer(scenario) as server:
        outcome = run_engine("probe", hostile_endpoint(server))
    assert (outcome["code"], outcome["side"]) == (code.value, None)
    assert outcome["seconds"] < seconds
    assert outcome["max_rss_mb"] < MAX_RSS_MB
    # The engine stopped reading: the server could not push more than a few MB into it.
    assert server.bytes_sent < 64 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SOURCE_FAILURES) + list(COPY_ONLY_FAILURES))
def test_copy_from_a_hostile_source_fails_with_its_code_in_bounded_time_and_memory(scenario, dst):
    code, seconds = {**SOURCE_FAILURES, **COPY_ONLY_FAILURES}[scenario]
    with HostileImapServer(scenario) as server:
        outcome = run_engine("copy", hostile_endpoint(server), dovecot_endpoint(dst))
    assert (outcome["code"], outcome["side"]) == (code.value, "source")
    assert outcome["seconds"] < seconds
    assert outcome["max_rss_mb"] < MAX_RSS_MB
    assert server.bytes_sent < 64 * 1024 * 1024
    with dst.account.client() as client:
        created = [name for _flags, _sep, name in client.list_folders() if name.startswith(("Archive", "Endless"))]
    assert not created, "nothing of a refused folder list is created on the destination"


@pytest.mark.parametrize(
    "scenario",
    [Scenario.HTTP_GREETING, Scenario.LOGIN_ENDLESS_LITERAL, Scenario.LOGIN_ENDLESS_LINE, Scenario.LIST_ENDLESS],
)
def test_copy_to_a_hostile_destination_fails_with_its_code(scenario, src):
    code, seconds = SOURCE_FAILURES[scenario]
    with HostileImapServer(scenario) as server:
        outcome = run_engine("copy", dovecot_endpoint(src), hostile_endpoint(server))
    assert (outcome["code"], outcome["side"]) == (code.value, "destination")
    assert outcome["seconds"] < seconds
    assert outcome["max_rss_mb"] < MAX_RSS_MB


def test_a_literal_above_the_configured_bound_is_refused_before_it_is_read():
    """A server announcing a 2 GB message is refused at once, not after reading ~2 GB."""
    with HostileImapServer(Scenario.FETCH_OVERSIZED_LITERAL) as server:
        endpoint = Endpoint("127.0.0.1", server.port, Security.NONE, LOGIN, PASSWORD, timeout=TIMEOUT,
                            max_literal_bytes=10 * 1024 * 1024)  # fmt: skip
        session = connect(endpoint, "source")
        try:
            session.select(b"INBOX", readonly=True)
            with pytest.raises(EngineError) as exc:
                session.command(b"UID FETCH 1 (UID BODY.PEEK[])", lambda resp: None)
        finally:
            session.close()
    assert (exc.value.code, exc.value.side) == (ErrorCode.RESPONSE_TOO_LARGE, "source")
    assert "2000000000" in exc.value.detail
    assert session.broken, "a connection left in the middle of a literal is not used again"
    assert server.bytes_sent < 16 * 1024 * 1024


def test_the_folder_limit_is_configurable():
    with HostileImapServer(Scenario.LIST_20000) as server:
        endpoint = Endpoint("127.0.0.1", server.port, Security.NONE, LOGIN, PASSWORD, timeout=5.0)
        with pytest.raises(EngineError) as exc:
            probe_account(endpoint)
        assert exc.value.code == ErrorCode.TOO_MANY_FOLDERS
        assert "10000" in exc.value.detail
        started = time.monotonic()
        summary = probe_account(Endpoint("127.0.0.1", server.port, Security.NONE, LOGIN, PASSWORD, timeout=5.0,
                                         max_folders=25_000))  # fmt: skip
    assert summary.folders == 20_000
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- hostile names
def _listing():
    with HostileImapServer(Scenario.HOSTILE_NAMES) as server:
        endpoint = Endpoint("127.0.0.1", server.port, Security.NONE, LOGIN, PASSWORD, timeout=5.0)
        session = connect(endpoint, "source")
        try:
            return list_folders(session)
        finally:
            session.close()


def test_folder_names_with_control_bytes_are_refused_with_a_reason():
    listing = _listing()
    refused = {f.raw: f.refused for f in listing.refused}
    assert refused == {b"a\r\nX1 DELETE INBOX": "control_characters", b"nul\x00name": "control_characters"}
    for folder in listing.folders:
        assert not any(ord(c) < 32 for c in folder.name), folder.name
    names = {f.raw: f for f in listing.folders}
    assert names[b"ctl&AAA-&AA0ACg-x"].name == "ctl___x" and names[b"ctl&AAA-&AA0ACg-x"].sanitized


@pytest.mark.slow
def test_hostile_folder_names_are_copied_under_safe_names_and_never_injected(dst):
    with HostileImapServer(Scenario.HOSTILE_NAMES) as server:
        source = Endpoint("127.0.0.1", server.port, Security.NONE, LOGIN, PASSWORD, timeout=5.0)
        events = []
        started = time.monotonic()
        result = copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=MemoryCheckpointStore(),
                              on_event=events.append)  # fmt: skip
        commands = list(server.commands)
    assert time.monotonic() - started < 60
    # Finished, but not cleanly: two folders could not be copied, and the events say which and why.
    assert result.status == "finished_with_errors", (result.error_code, result.error_detail)
    copyable = 1 + len(HOSTILE_NAMES) - 2  # INBOX and every name but the CR/LF and NUL ones
    assert result.messages_copied == copyable
    refused = {e.folder: e.detail["reason"] for e in events if e.kind == "folder_refused"}
    assert refused == {"a__X1 DELETE INBOX": "control_characters", "nul_name": "control_characters"}

    # What the destination holds: safe names only, every copied folder with its message.
    with dst.account.client() as client:
        client.folder_encode = False
        listed = client.list_folders()
        names = {imap_utf7.decode(raw): raw for _flags, _sep, raw in listed}
        counts = {
            imap_utf7.decode(raw): client.select_folder(raw, readonly=True)[b"EXISTS"]
            for flags, _sep, raw in listed
            if b"\\Noselect" not in flags and b"\\NonExistent" not in flags
        }
    for name in names:
        assert not any(ord(c) < 32 for c in name), repr(name)
        assert not {".", ".."} & set(name.split("/")), name
    assert counts["__/__/etc"] == 1, "'../../etc' lands as __/__/etc"
    assert counts["__"] == 1 and counts["Plain"] == 1 and counts["ctl___x"] == 1
    assert counts["☺"] == 1, "unterminated modified UTF-7 is read leniently"
    long_names = [n for n in names if n.startswith("Loo")]
    assert long_names and counts[long_names[0]] == 1
    assert result.renamed_folders["../../etc"] == "__/__/etc"
    assert result.renamed_folders[".."] == "__"

    # The hostile server never received a command split by a name: every line it got is one of ours.
    assert commands and all(re.match(rb"(X\d+|[A-P]{4}\d+) [A-Z]", line) for line in commands), commands
    assert not any(b"DELETE" in line for line in commands)
    assert not any(b"\x00" in line or b"nul" in line for line in commands), "the NUL folder is never opened"
