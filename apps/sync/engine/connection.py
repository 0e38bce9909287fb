"""Speaking raw, pipelined IMAP on an open connection (opening.py opens and logs in).

imapclient sends only the connection's set-up and tear-down (STARTTLS, CAPABILITY, LOGIN or
AUTHENTICATE PLAIN, NAMESPACE, LOGOUT).  Every other command (LIST, CREATE, SELECT, STATUS,
FETCH, APPEND ...) is sent raw, written to / read from the same socket and buffered reader that
its imaplib.IMAP4 uses, because imaplib's one-command-at-a-time model cannot pipeline.  A raw
command is always read to its tagged completion before imapclient is used again, so the two
never interleave.
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import imapclient

from .errors import EngineError, ErrorCode, TransientError

log = logging.getLogger("imapcopy.engine")

_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\r\n$")
_RESP_CODE = re.compile(rb"^\[([A-Z0-9.-]+)(?: ([^\]]*))?\]")
# Items of a FETCH response, shared by everything that reads one.
FETCH_START = re.compile(rb"^\* \d+ FETCH ")
FETCH_UID = re.compile(rb"[( ]UID (\d+)")
FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
FETCH_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_MAX_LINE = 10 * 1024 * 1024
# What a server may send, so that a hostile or broken one cannot exhaust memory or time: a bigger
# literal is refused before any of it is read, a longer line or answer ends the connection.
DEFAULT_MAX_LITERAL = 256 * 1024 * 1024  # a message (Endpoint.max_literal_bytes overrides it)
# Greeting, STARTTLS, LOGIN and CAPABILITY together may take this many times the endpoint's timeout:
# a server trickling a byte now and then never lets a socket timeout fire.
SETUP_TIMEOUTS = 2
MAX_COLLECTED_RESPONSES = 100_000  # untagged responses kept for one raw command
MAX_COLLECTED_BYTES = 64 * 1024 * 1024
THROTTLE_CODES = {b"UNAVAILABLE", b"LIMIT", b"INUSE"}


def too_large(what: str, side: str | None) -> EngineError:
    return EngineError(ErrorCode.RESPONSE_TOO_LARGE, f"the server sent {what}", side)


def classify_os_error(exc: BaseException, side: str | None) -> EngineError:
    """Map a low-level failure to the error code the user sees."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, socket.gaierror):
        return EngineError(ErrorCode.DNS_FAILED, "the server name could not be resolved", side)
    if isinstance(exc, ConnectionRefusedError):
        return EngineError(ErrorCode.CONNECTION_REFUSED, "the server refused the connection", side)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientError(ErrorCode.TIMEOUT, "the server did not answer in time", side)
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return EngineError(ErrorCode.TLS_ERROR, f"TLS failed: {reason}", side)
    if isinstance(exc, (OSError, EOFError, imaplib.IMAP4.abort)):
        return TransientError(ErrorCode.NETWORK_ERROR, f"connection lost ({type(exc).__name__})", side)
    return EngineError(ErrorCode.PROTOCOL_ERROR, f"unexpected reply ({type(exc).__name__})", side)


def _close_quietly(client: imapclient.IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception as exc:  # already gone: nothing left to close
        log.debug("closing connection: %s", type(exc).__name__)


# --------------------------------------------------------------------------- raw protocol
@dataclass
class Response:
    """One untagged or tagged response: text pieces with the literals that followed them."""

    text: bytes  # the lines joined, literal markers kept
    literals: list[bytes] = field(default_factory=list)


@dataclass
class Completion:
    status: bytes  # OK / NO / BAD
    text: bytes
    untagged: list[Response]

    @property
    def code(self) -> bytes | None:
        m = _RESP_CODE.match(self.text)
        return m.group(1) if m else None

    @property
    def code_args(self) -> bytes:
        m = _RESP_CODE.match(self.text)
        return (m.group(2) or b"") if m else b""

    @property
    def ok(self) -> bool:
        return self.status == b"OK"


STATUS_CHUNK = 200
LOGOUT_SECONDS = 5.0


class Session:
    """A logged-in connection with raw helpers for pipelined commands."""

    def __init__(self, client: imapclient.IMAPClient, side: str | None, capabilities: set[str]) -> None:
        self.client = client
        self.side = side
        self.capabilities = capabilities
        self._imap = client._imap
        self._tag = 0
        self.max_literal = DEFAULT_MAX_LITERAL
        self.max_folders: int | None = None  # None: folders.DEFAULT_MAX_FOLDERS
        self.broken = False  # the stream can no longer be trusted: close without LOGOUT
        self.selected_exists = 0  # messages in the mailbox last selected (bounds FETCH answers)

    # capabilities ------------------------------------------------------------
    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    @property
    def append_limit(self) -> int | None:
        for cap in self.capabilities:
            if cap.startswith("APPENDLIMIT="):
                try:
                    return int(cap.split("=", 1)[1])
                except ValueError:
                    return None
        return None

    # low level ---------------------------------------------------------------
    def next_tag(self) -> bytes:
        self._tag += 1
        return b"X%d" % self._tag

    def send(self, data: bytes) -> None:
        try:
            self._imap.sock.sendall(data)
        except Exception as exc:
            raise classify_os_error(exc, self.side) from exc

    def fail(self, error: EngineError) -> EngineError:
        """Mark the connection unusable (no LOGOUT on close) and return the error to raise."""
        self.broken = True
        return error

    def _readline(self) -> bytes:
        try:
            line = self._imap.file.readline(_MAX_LINE)
        except Exception as exc:
            raise self.fail(classify_os_error(exc, self.side)) from exc
        if not line:
            raise TransientError(ErrorCode.NETWORK_ERROR, "the server closed the connection", self.side)
        if len(line) >= _MAX_LINE and not line.endswith(b"\n"):
            raise self.fail(too_large("a line that never ends", self.side))
        return line

    def _read_exact(self, size: int) -> bytes:
        if size > self.max_literal:
            raise self.fail(too_large(f"a literal of {size} bytes", self.side))
        try:
            data = self._imap.file.read(size)
        except Exception as exc:
            raise self.fail(classify_os_error(exc, self.side)) from exc
        if len(data) != size:
            raise TransientError(ErrorCode.NETWORK_ERROR, "the server closed the connection", self.side)
        return data

    def read_response(self) -> Response:
        """Read one full response line, following literals."""
        line = self._readline()
        resp = Response(text=line)
        while True:
            m = _LITERAL_AT_END.search(line)
            if not m:
                break
            resp.literals.append(self._read_exact(int(m.group(1))))
            line = self._readline()
            resp.text += line
        return resp

    def read_until(self, tag: bytes, on_untagged=None) -> Completion:
        """Read responses until the tagged completion of `tag`."""
        untagged: list[Response] = []
        kept = 0  # bytes in `untagged`
        prefix = tag + b" "
        while True:
            resp = self.read_response()
            if resp.text.startswith(prefix):
                rest = resp.text[len(prefix) :].rstrip(b"\r\n")
                status, _, text = rest.partition(b" ")
                return Completion(status.upper(), text, untagged)
            if resp.text.startswith(b"* BYE"):
                raise TransientError(ErrorCode.NETWORK_ERROR, "the server ended the session", self.side)
            if on_untagged is not None:
                on_untagged(resp)
            elif resp.text.startswith(b"*"):
                untagged.append(resp)
                kept += len(resp.text) + sum(len(x) for x in resp.literals)
                if len(untagged) > MAX_COLLECTED_RESPONSES or kept > MAX_COLLECTED_BYTES:
                    raise self.fail(too_large("an answer that never ends", self.side))

    def command(self, line: bytes, on_untagged=None) -> Completion:
        tag = self.next_tag()
        self.send(tag + b" " + line + b"\r\n")
        return self.read_until(tag, on_untagged)

    def pipeline(self, lines: list[bytes]) -> list[Completion]:
        """Send several commands at once and collect their completions, in order."""
        return self.collect(self.send_commands(lines))

    def send_commands(self, lines: list[bytes]) -> list[bytes]:
        """Send commands without waiting (their answers are read with collect()); -> their tags.
        Lets the caller do other work, e.g. on the other server, while this one answers."""
        tags = [self.next_tag() for _ in lines]
        if lines:
            self.send(b"".join(tag + b" " + line + b"\r\n" for tag, line in zip(tags, lines, strict=True)))
        return tags

    def collect(self, tags: list[bytes], on_untagged=None) -> list[Completion]:
        return [self.read_until(tag, on_untagged) for tag in tags]

    def check(self, completion: Completion, what: str) -> Completion:
        """Raise for a failed command; throttling answers become retryable."""
        if completion.ok:
            return completion
        if is_throttled(completion):
            raise TransientError(ErrorCode.NETWORK_ERROR, f"{what}: server is throttling", self.side)
        detail = completion.text[:200].decode("utf-8", "replace")
        raise EngineError(ErrorCode.PROTOCOL_ERROR, f"{what} failed: {detail}", self.side)

    # helpers -----------------------------------------------------------------
    def select(self, mailbox: bytes, readonly: bool) -> MailboxState:
        verb = b"EXAMINE " if readonly else b"SELECT "
        done = self.command(verb + quote(mailbox))
        self.check(done, "EXAMINE" if readonly else "SELECT")
        state = MailboxState.parse(done.untagged)
        self.selected_exists = state.exists
        return state

    def permanent_flags(self, mailbox: bytes) -> list[str] | None:
        """The flags `mailbox` can store (PERMANENTFLAGS, which only a read-write SELECT tells),
        leaving no mailbox selected where the server can (UNSELECT, RFC 3691; in the same round
        trip): Dovecot re-syncs a selected mailbox after every APPEND into it, a fifth of its
        work in a copy.  Never CLOSE instead: it would expunge the folder's deleted messages."""
        select = b"SELECT " + quote(mailbox)
        unselect = self.has("UNSELECT")
        done = self.pipeline([select, b"UNSELECT"])[0] if unselect else self.command(select)
        self.check(done, "SELECT")
        state = MailboxState.parse(done.untagged)
        self.selected_exists = 0 if unselect else state.exists
        return state.permanent_flags

    def answer_guard(self, expected: int):
        """A counter to call once per untagged response of a command that expects about
        `expected` of them: a server that sends far more (an endless stream of unsolicited
        FETCH responses, say) ends the connection instead of filling the memory."""
        limit = 2 * expected + 10_000
        seen = 0

        def tick() -> None:
            nonlocal seen
            seen += 1
            if seen > limit:
                raise self.fail(too_large("an answer that never ends", self.side))

        return tick

    def status(self, mailboxes: list[bytes], items: bytes) -> dict[bytes, dict[str, int]]:
        """Pipelined STATUS of many mailboxes: one round trip per STATUS_CHUNK of them (a bounded
        number in flight, so neither side can block writing while the other is not reading)."""
        out: dict[bytes, dict[str, int]] = {}
        wanted = set(mailboxes)
        found: dict[bytes, dict[str, int]] = {}
        tick = self.answer_guard(len(mailboxes))  # a few unsolicited responses are normal; an endless stream is not

        def collect(resp: Response) -> None:
            tick()
            try:
                parsed = parse_status(resp)
            except ValueError:  # not numbers: not an answer to our STATUS
                return
            if parsed and parsed[0] in wanted:
                found.setdefault(parsed[0], parsed[1])

        for start in range(0, len(mailboxes), STATUS_CHUNK):
            names = mailboxes[start : start + STATUS_CHUNK]
            tags = self.send_commands([b"STATUS " + quote(name) + b" (" + items + b")" for name in names])
            for name, done in zip(names, self.collect(tags, collect), strict=True):
                if not done.ok:
                    out[name] = {}
        for name, values in found.items():
            out.setdefault(name, values)
        return out

    def close(self) -> None:
        if self.broken:
            _close_quietly(self.client)
            return
        try:
            # LOGOUT is a courtesy: a server that does not answer it soon is not waited for.
            wait = min(self._imap.sock.gettimeout() or LOGOUT_SECONDS, LOGOUT_SECONDS)
            self._imap.sock.settimeout(wait)
            self._imap.deadline = time.monotonic() + wait
            self.client.logout()
        except Exception:
            _close_quietly(self.client)

    @contextmanager
    def time_limit(self, seconds: float | None = None) -> Iterator[None]:
        """Tear the connection down if the block takes more than `seconds` (default: SETUP_TIMEOUTS
        socket timeouts) and raise TIMEOUT: for exchanges that are always short, which a server
        trickling bytes could otherwise drag out."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.abort()

        if seconds is None:
            seconds = SETUP_TIMEOUTS * (self._imap.sock.gettimeout() or 60.0)
        timer = threading.Timer(max(0.0, seconds), expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except EngineError as exc:
            if expired.is_set():
                raise self.fail(TransientError(ErrorCode.TIMEOUT, "the server answers too slowly", self.side)) from exc
            raise
        finally:
            timer.cancel()

    def abort(self) -> None:
        """Tear the socket down at once (used to unblock a thread stuck in a read)."""
        try:
            self._imap.sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.debug("aborting connection: %s", type(exc).__name__)


def is_throttled(completion: Completion) -> bool:
    code = completion.code
    text = completion.text.lower()
    if b"throttl" in text:
        return True
    # [LIMIT] also means "message too big" on APPEND; callers check that case first.
    return code in THROTTLE_CODES and b"size" not in text


@dataclass
class MailboxState:
    exists: int = 0
    uidvalidity: int | None = None
    uidnext: int | None = None
    permanent_flags: list[str] | None = None

    @classmethod
    def parse(cls, untagged: list[Response]) -> MailboxState:
        state = cls()
        for resp in untagged:
            t = resp.text
            m = re.match(rb"\* (\d+) EXISTS", t)
            if m:
                state.exists = int(m.group(1))
                continue
            m = re.search(rb"\[UIDVALIDITY (\d+)\]", t)
            if m:
                state.uidvalidity = int(m.group(1))
            m = re.search(rb"\[UIDNEXT (\d+)\]", t)
            if m:
                state.uidnext = int(m.group(1))
            m = re.search(rb"\[PERMANENTFLAGS \(([^)]*)\)\]", t)
            if m:
                state.permanent_flags = m.group(1).decode("ascii", "replace").split()
        return state


_STATUS_RE = re.compile(rb'^\* STATUS (?P<name>"(?:[^"\\]|\\.)*"|[^ ]+) \((?P<items>[^)]*)\)', re.I)


def parse_status(resp: Response) -> tuple[bytes, dict[str, int]] | None:
    if resp.literals:  # mailbox name sent as a literal
        name = resp.literals[0]
        m = re.search(rb"\(([^)]*)\)\s*$", resp.text)
        items = m.group(1) if m else b""
    else:
        m = _STATUS_RE.match(resp.text)
        if not m:
            return None
        name = unquote(m.group("name"))
        items = m.group("items")
    words = items.split()
    values = {words[i].decode().upper(): int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return name, values


def quote(name: bytes) -> bytes:
    if b"\r" in name or b"\n" in name or b"\0" in name:
        # These cannot be sent in a quoted string; refuse rather than inject them into a command.
        raise EngineError(ErrorCode.PROTOCOL_ERROR, "a folder name with control characters cannot be sent")
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def unquote(value: bytes) -> bytes:
    if value.startswith(b'"') and value.endswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def uid_set(uids: list[int]) -> bytes:
    """Compress sorted UIDs into an IMAP sequence set: 1:5,7,9:12."""
    parts = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = uid
    parts.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(parts)


def expand_uid_set(text: bytes) -> list[int]:
    out = []
    for part in text.split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        elif part.strip():
            out.append(int(part))
    return out
