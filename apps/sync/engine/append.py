"""Storing messages on the destination: MULTIAPPEND where offered, else single APPENDs pipelined on
the connection (LITERAL+, LITERAL- for small messages, synchronizing literals waiting only for the
server's "+"); each message succeeds or fails on its own tagged answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .connection import (
    Completion,
    Session,
    expand_uid_set,
    quote,
)
from .errors import EngineError, ErrorCode, TransientError
from .pipeline import Message
from .stored import RewriteWatch, check_stored

log = logging.getLogger("imapcopy.engine")


@dataclass
class AppendOutcome:
    appended: list[Message] = field(default_factory=list)
    dest_uids: list[int] = field(default_factory=list)
    too_large: list[Message] = field(default_factory=list)
    failed: list[tuple[Message, str]] = field(default_factory=list)
    dropped_keywords: set[str] = field(default_factory=set)
    flags_dropped: set[int] = field(default_factory=set)  # source UIDs stored without some flags
    dest_uid_of: dict[int, int] = field(default_factory=dict)  # source UID -> destination UID (UIDPLUS)
    altered: list[tuple[Message, str]] = field(default_factory=list)  # stored, but changed: why


# A server that rejects a message in the middle of a LITERAL+ APPEND may read the rest of the
# data as commands (Dovecot does, for a size limit it does not announce): message text must never
# reach it that way.  So non-synchronizing literals are used only for messages that cannot hit a
# size limit: below the announced APPENDLIMIT (bigger ones are skipped before), or, without one,
# below a size no real server refuses.  Bigger messages wait for the server's "+" first.
LITERAL_PLUS_MAX_UNANNOUNCED = 64 * 1024
# LITERAL- (RFC 7888, Gmail): {n+} allowed up to this many bytes; a bigger one ends the session.
LITERAL_MINUS_MAX = 4096
# Without MULTIAPPEND, single APPENDs are pipelined on the connection: this many message bytes
# (and commands) at most sent and not yet answered, so that neither side blocks writing while the
# other is not reading, and a crash leaves a bounded window to reconcile.
PIPELINE_BYTES = 1024 * 1024
PIPELINE_COMMANDS = 100


def appends_wait_round_trips(session: Session) -> bool:
    """Whether most APPENDs to this server wait a round trip for its "+" before the message text
    may follow: without LITERAL+ (LITERAL- covers messages up to 4,096 bytes only)."""
    return not session.has("LITERAL+")


class AppendDesync(TransientError):
    """The server answered a MULTIAPPEND for fewer messages than were sent."""


def format_flags(flags: list[bytes]) -> bytes:
    return b"(" + b" ".join(flags) + b")"


class Appender:
    """MULTIAPPEND with LITERAL+ where offered; else (or to find the message that spoilt a
    MULTIAPPEND) one APPEND per message, several in flight at once: back to back with LITERAL+ or
    LITERAL- (small messages), waiting only for the "+" of a synchronizing literal, never for an
    earlier command's answer.  Each message succeeds or fails on its own tagged answer."""

    def __init__(self, session: Session, careful: bool = False, watch: RewriteWatch | None = None) -> None:
        self.session = session
        self.multiappend = session.has("MULTIAPPEND")
        self.literal_plus = session.has("LITERAL+")
        self.literal_minus = session.has("LITERAL-")
        self.uidplus = session.has("UIDPLUS")
        self.unselect = session.has("UNSELECT")
        self.watch = watch or RewriteWatch()
        limit = session.append_limit
        self.literal_plus_max = limit if limit else LITERAL_PLUS_MAX_UNANNOUNCED
        if not self.literal_plus and self.literal_minus:
            self.literal_plus_max = min(self.literal_plus_max, LITERAL_MINUS_MAX)
        self.careful = careful  # after a desync: one message per APPEND, synchronizing literals
        self.refused_keywords: set[bytes] = set()

    def append(self, mailbox: bytes, messages: list[Message], keep_flag) -> AppendOutcome:
        outcome = AppendOutcome()
        prepared = [(m, self._flags(m, keep_flag, outcome)) for m in messages]
        if self.multiappend and not self.careful and len(prepared) > 1:
            done, uids = self._send(mailbox, prepared)
            if done.ok:
                if self.uidplus and uids is not None and len(uids) != len(prepared):
                    self.careful = True
                    # The caller reconnects; what did land is in the window reconciled on resume.
                    raise AppendDesync(ErrorCode.NETWORK_ERROR, "MULTIAPPEND answered partially", "destination")
                outcome.appended.extend(m for m, _ in prepared)
                outcome.dest_uids.extend(uids or [])
                if uids is not None and len(uids) == len(prepared):
                    outcome.dest_uid_of.update((m.uid, uid) for (m, _), uid in zip(prepared, uids, strict=True))
                self._check_stored(mailbox, outcome)
                return outcome
            self._raise_if_fatal(done)
            # One message spoilt the whole (atomic) batch: find it by appending one by one.
        self._append_each(mailbox, prepared, outcome)
        self._check_stored(mailbox, outcome)
        return outcome

    def _nonsync(self, size: int) -> bool:
        """Whether a literal of `size` bytes may go without waiting for the server's "+"."""
        return (self.literal_plus or self.literal_minus) and not self.careful and size <= self.literal_plus_max

    def _append_each(self, mailbox: bytes, prepared: list[tuple[Message, list[bytes]]], outcome: AppendOutcome) -> None:
        """One APPEND per message, pipelined (one at a time once careful)."""
        if len(prepared) == 1 or self.careful:
            for msg, flags in prepared:
                self._append_one(mailbox, msg, flags, outcome)
            return
        answers = _PipelinedAppends(self, mailbox).run(prepared)
        fatal = None
        for (msg, flags), done in zip(prepared, answers, strict=True):
            if done is None:  # not sent: an earlier answer stopped the copy
                continue
            if fatal is None and not done.ok:
                try:
                    self._raise_if_fatal(done)
                except EngineError as exc:
                    fatal = exc
                    continue
            if fatal is not None:
                continue
            if not done.ok and b"keyword" in done.text.lower():
                self._append_one(mailbox, msg, flags, outcome)  # drops keywords until it goes through
                continue
            self._record(msg, done, _append_uids(done), outcome)
        if fatal is not None:
            # What was appended before is not credited: it lies in the window reconciled on resume.
            raise fatal

    def _record(self, msg: Message, done, uids: list[int] | None, outcome: AppendOutcome) -> None:
        if done.ok:
            outcome.appended.append(msg)
            outcome.dest_uids.extend(uids or [])
            if uids is not None and len(uids) == 1:
                outcome.dest_uid_of[msg.uid] = uids[0]
            return
        text = done.text.lower()
        if done.code in (b"TOOBIG", b"LIMIT") or b"too large" in text or b"size" in text:
            outcome.too_large.append(msg)
        else:
            outcome.failed.append((msg, done.text[:200].decode("utf-8", "replace")))

    def _flags(self, msg: Message, keep_flag, outcome: AppendOutcome) -> list[bytes]:
        kept = []
        for flag in msg.flags:
            if keep_flag(flag) and flag not in self.refused_keywords:
                kept.append(flag)
            else:
                outcome.dropped_keywords.add(flag.decode("ascii", "replace"))
                outcome.flags_dropped.add(msg.uid)
        return kept

    def _append_one(self, mailbox: bytes, msg: Message, flags: list[bytes], outcome: AppendOutcome) -> None:
        done, uids = self._send(mailbox, [(msg, flags)])
        # A keyword the server cannot store spoils the APPEND: drop keywords, longest first,
        # until it goes through, and remember them for the following messages.
        keywords = sorted((f for f in flags if not f.startswith(b"\\")), key=len, reverse=True)
        while not done.ok and keywords and b"keyword" in done.text.lower():
            bad = keywords.pop(0)
            self.refused_keywords.add(bad)
            outcome.dropped_keywords.add(bad.decode("ascii", "replace"))
            outcome.flags_dropped.add(msg.uid)
            flags = [f for f in flags if f != bad]
            done, uids = self._send(mailbox, [(msg, flags)])
        if not done.ok:
            self._raise_if_fatal(done)
        self._record(msg, done, uids, outcome)

    def _check_stored(self, mailbox: bytes, outcome: AppendOutcome) -> None:
        outcome.altered.extend(check_stored(self.session, mailbox, outcome, self.watch, self.unselect))

    def _raise_if_fatal(self, done) -> None:
        from .connection import is_throttled

        if done.code == b"OVERQUOTA" or b"quota" in done.text.lower():
            raise EngineError(ErrorCode.OVER_QUOTA, "the destination mailbox is full", "destination")
        if is_throttled(done):
            raise TransientError(ErrorCode.NETWORK_ERROR, "destination is throttling", "destination")
        if done.code == b"TRYCREATE":
            raise EngineError(ErrorCode.PROTOCOL_ERROR, "destination folder vanished", "destination")

    def _send(self, mailbox: bytes, items: list[tuple[Message, list[bytes]]]):
        s = self.session
        tag = s.next_tag()
        head = tag + b" APPEND " + quote(mailbox)
        pending: list[bytes] = [head]
        pending_len = len(head)
        for msg, flags in items:
            size = len(msg.body)
            nonsync = self._nonsync(size)
            marker = b"{%d+}\r\n" % size if nonsync else b"{%d}\r\n" % size
            pending.append(b" " + format_flags(flags) + b' "' + msg.internaldate + b'" ' + marker)
            if nonsync:
                if size < 64 * 1024:
                    pending.append(msg.body)
                    pending_len += size + 64
                    if pending_len > 256 * 1024:
                        s.send(b"".join(pending))
                        pending, pending_len = [], 0
                else:
                    s.send(b"".join(pending))
                    s.send(msg.body)
                    pending, pending_len = [], 0
                continue
            s.send(b"".join(pending))
            pending, pending_len = [], 0
            resp = s.read_response()
            while resp.text.startswith(b"* "):  # e.g. EXISTS for the selected mailbox
                resp = s.read_response()
            if not resp.text.startswith(b"+"):
                if resp.text.startswith(tag + b" "):
                    rest = resp.text[len(tag) + 1 :].rstrip(b"\r\n")
                    status, _, text = rest.partition(b" ")
                    return Completion(status.upper(), text, []), None
                raise TransientError(ErrorCode.PROTOCOL_ERROR, "unexpected answer to APPEND", "destination")
            s.send(msg.body)
        pending.append(b"\r\n")
        s.send(b"".join(pending))
        done = s.read_until(tag, lambda resp: None)
        return done, _append_uids(done)


def _append_uids(done) -> list[int] | None:
    """The destination UIDs of an APPEND's tagged OK ([APPENDUID validity uids], UIDPLUS)."""
    if done.ok and done.code == b"APPENDUID":
        args = done.code_args.split()
        if len(args) == 2:
            return expand_uid_set(args[1])
    return None


class _PipelinedAppends:
    """Sends one APPEND per message without waiting for the answers of the earlier ones, within
    PIPELINE_BYTES / PIPELINE_COMMANDS unanswered, and reads their tagged answers as they come.
    A synchronizing literal waits for its "+" only (earlier commands' answers read meanwhile).
    After an answer that stops the copy (quota, throttling, folder gone) nothing more is sent;
    what is in flight is answered before returning, so the connection stays usable."""

    def __init__(self, appender: Appender, mailbox: bytes) -> None:
        self.appender = appender
        self.session = appender.session
        self.head = b" APPEND " + quote(mailbox) + b" "
        self.waiting: dict[bytes, int] = {}  # tag -> index, sent and not yet answered
        self.sizes: dict[bytes, int] = {}
        self.in_flight = 0  # message bytes sent and not yet answered
        self.answers: list[Completion | None] = []
        self.stop = False
        self.out: list[bytes] = []
        self.out_len = 0

    def run(self, prepared: list[tuple[Message, list[bytes]]]) -> list[Completion | None]:
        """The tagged answer of each message's APPEND, in order (None: not sent)."""
        self.answers = [None] * len(prepared)
        self.tick = self.session.answer_guard(2 * len(prepared))
        try:
            self._run(prepared)
        except BaseException:
            self.session.broken = True  # answers still on their way: no LOGOUT on this stream
            raise
        return self.answers

    def _run(self, prepared: list[tuple[Message, list[bytes]]]) -> None:
        s = self.session
        for index, (msg, flags) in enumerate(prepared):
            size = len(msg.body)
            while self.waiting and (len(self.waiting) >= PIPELINE_COMMANDS or self.in_flight + size > PIPELINE_BYTES):
                self._flush()
                self._read(None)
            if self.stop:
                break
            tag = s.next_tag()
            line = tag + self.head + format_flags(flags) + b' "' + msg.internaldate + b'" '
            self.waiting[tag], self.sizes[tag] = index, size
            self.in_flight += size
            if self.appender._nonsync(size):
                self._queue(line + b"{%d+}\r\n" % size, msg.body, b"\r\n")
                continue
            self._queue(line + b"{%d}\r\n" % size)
            self._flush()
            while tag in self.waiting and not self._read(tag):
                pass
            if tag in self.waiting:  # "+": go on (else it was answered instead, e.g. too big)
                self._queue(msg.body, b"\r\n")
        self._flush()
        while self.waiting:
            self._read(None)

    def _queue(self, *parts: bytes) -> None:
        self.out.extend(parts)
        self.out_len += sum(len(p) for p in parts)
        if self.out_len >= 128 * 1024:
            self._flush()

    def _flush(self) -> None:
        if self.out:
            data, self.out, self.out_len = b"".join(self.out), [], 0
            self.session.send(data)

    def _read(self, continuation_for: bytes | None) -> bool:
        """Read one response; True if it is the "+" awaited for `continuation_for`."""
        s = self.session
        resp = s.read_response()
        text = resp.text
        if text.startswith(b"+"):
            if continuation_for is None:
                raise s.fail(AppendDesync(ErrorCode.PROTOCOL_ERROR, "unexpected continuation to APPEND", "destination"))
            return True
        if text.startswith(b"* BYE"):
            raise s.fail(TransientError(ErrorCode.NETWORK_ERROR, "the server ended the session", "destination"))
        tag, _, rest = text.rstrip(b"\r\n").partition(b" ")
        self.tick()
        if tag in self.waiting:
            status, _, detail = rest.partition(b" ")
            done = Completion(status.upper(), detail, [])
            self.answers[self.waiting.pop(tag)] = done
            self.in_flight -= self.sizes.pop(tag)
            if not done.ok and not self.stop:
                try:
                    self.appender._raise_if_fatal(done)
                except EngineError:
                    self.stop = True  # send nothing more; the caller raises once all is answered
        return False
