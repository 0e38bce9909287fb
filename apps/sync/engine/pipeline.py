"""The hot path: a reader thread FETCHes from the source while the caller APPENDs to the
destination, joined by a queue whose total message bytes are bounded by a byte budget."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as email_policy

from .connection import (
    FETCH_FLAGS,
    FETCH_INTERNALDATE,
    FETCH_SIZE,
    FETCH_START,
    FETCH_UID,
    Response,
    Session,
    uid_set,
)
from .errors import ErrorCode, TransientError
from .fingerprint import (
    Fingerprint,
    fetch_fingerprints,
    header_fields,
    match_present,
    set_aside,
)
from .folders import FolderPlan
from .model import FolderCheckpoint

log = logging.getLogger("imapcopy.engine")

MAX_MESSAGES_PER_BATCH = 2000
# A FETCH's messages go to the writer in slices of about this many bytes as they arrive.
STREAM_BYTES = 256 * 1024


@dataclass
class Message:
    uid: int
    flags: list[bytes]
    internaldate: bytes
    body: bytes


@dataclass
class Segment:
    """A UID range of a big folder, copied by one pipeline while others copy the rest."""

    lo: int  # exclusive
    hi: int  # inclusive
    sizes: list[tuple[int, int]]
    confirmed: int = 0  # every UID of this segment <= confirmed is on the destination
    done: bool = False


@dataclass
class FolderSplit:
    """Shared by the segments of one folder: where the folder's checkpoint may advance to."""

    start_uid: int
    segments: list[Segment]
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False

    def watermark(self) -> int:
        """Highest UID below which every segment is confirmed (call with the lock held)."""
        mark = self.start_uid - 1
        for seg in self.segments:
            if not seg.done:
                return max(mark, seg.confirmed)
            mark = seg.hi
        return mark


@dataclass
class FolderTask:
    plan: FolderPlan
    checkpoint: FolderCheckpoint
    source_uidvalidity: int
    source_uidnext: int
    start_uid: int  # first source UID to consider
    # Reconciliation: destination fingerprints that may already be copies of source messages
    # with UIDs in [start_uid, reconcile_upto] (None = all of them).
    present: list[Fingerprint] | None = None
    reconcile_upto: int | None = None
    # Copies of source UIDs in (reconcile_from, start_uid) are among `present` too: they are known
    # to be there, so they must not stand in for a duplicate of theirs that is not.
    reconcile_from: int | None = None
    size_hint: int = 0  # bytes to copy (or an estimate), to hand out the biggest folders first
    # Gmail's All Mail: copy these UIDs only (its archived messages); None: every message.
    only_uids: set[int] | None = None
    segment: Segment | None = None  # set when a big folder is split between pipelines
    split: FolderSplit | None = None


# Items the reader hands to the writer, in order.
@dataclass
class FolderBegin:
    task: FolderTask


@dataclass
class Batch:
    task: FolderTask
    messages: list[Message]
    max_uid: int  # every source UID <= max_uid in this folder has been handled once this lands
    nbytes: int


@dataclass
class Skip:
    task: FolderTask
    uid: int
    size: int
    reason: str
    date: str | None = None
    subject: str | None = None


@dataclass
class AlreadyPresent:
    task: FolderTask
    found: list[tuple[int, int]]  # (source UID, size) of each message recognised on the destination


@dataclass
class FolderEnd:
    task: FolderTask


@dataclass
class ReaderFailed:
    error: BaseException


class ByteBudget:
    """Blocks the reader while too many message bytes are queued or being written."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, stop: threading.Event) -> None:
        with self._cond:
            # A single message bigger than the budget is let through alone.
            while self.in_flight > 0 and self.in_flight + n > self.capacity:
                if stop.is_set():
                    raise PipelineStopped
                self._cond.wait(0.2)
            self.in_flight += n

    def release(self, n: int) -> None:
        with self._cond:
            self.in_flight -= n
            self._cond.notify_all()


class RateLimiter:
    """Messages/s and bytes/s ceilings of one endpoint (simple pacing against a start time)."""

    def __init__(self, messages_per_second: float | None, bytes_per_second: float | None) -> None:
        self.mps, self.bps = messages_per_second, bytes_per_second
        self._lock = threading.Lock()
        self.start = time.monotonic()
        self.messages = 0
        self.bytes = 0

    @property
    def active(self) -> bool:
        return bool(self.mps or self.bps)

    def wait(self, messages: int, nbytes: int, stop: threading.Event | None = None) -> float:
        """Account for work about to be done; sleep as needed; return seconds slept."""
        if not self.active:
            return 0.0
        with self._lock:  # shared by the parallel pipelines of one endpoint
            self.messages += messages
            self.bytes += nbytes
            due = 0.0
            if self.mps:
                due = max(due, self.messages / self.mps)
            if self.bps:
                due = max(due, self.bytes / self.bps)
        delay = self.start + due - time.monotonic()
        slept = 0.0
        while delay > 0:
            if stop is not None and stop.is_set():
                break
            step = min(delay, 0.2)
            time.sleep(step)
            slept += step
            delay -= step
        return slept


class PipelineStopped(Exception):
    """The pair's stop event is set: a reader or writer thread gives up its work at once. Not an
    error: whoever set the event knows why (a cancel, or the other thread's failure)."""


def fetch_sizes(session: Session, start_uid: int, only: set[int] | None = None) -> list[tuple[int, int]]:
    """(uid, size) of every message with UID >= start_uid (and in `only`, if given), in UID order."""
    found: list[tuple[int, int]] = []
    tick = session.answer_guard(session.selected_exists)

    def collect(resp: Response) -> None:
        tick()
        if FETCH_START.match(resp.text):
            uid, size = FETCH_UID.search(resp.text), FETCH_SIZE.search(resp.text)
            if uid and size and int(uid.group(1)) >= start_uid and (only is None or int(uid.group(1)) in only):
                found.append((int(uid.group(1)), int(size.group(1))))

    done = session.command(b"UID FETCH %d:* (UID RFC822.SIZE)" % start_uid, collect)
    session.check(done, "FETCH")
    found.sort()
    return found


def fetch_summary(session: Session, uid: int) -> tuple[str | None, str | None]:
    """Date and subject of one message, for reporting a skipped one."""
    found: list[bytes] = []
    tick = session.answer_guard(1)

    def collect(resp: Response) -> None:
        tick()
        if not found and FETCH_START.match(resp.text) and resp.literals:
            found.append(resp.literals[0])

    session.command(b"UID FETCH %d (BODY.PEEK[HEADER.FIELDS (DATE SUBJECT)])" % uid, collect)
    return header_summary(found[0]) if found else (None, None)


def header_summary(header_block: bytes) -> tuple[str | None, str | None]:
    """(Date, Subject) decoded for humans; None where missing or unparseable."""
    head = header_block[:65536]
    end = head.find(b"\r\n\r\n")
    head = head if end < 0 else head[: end + 4]
    try:
        headers = BytesHeaderParser(policy=email_policy).parsebytes(head)
        date, subject = str(headers.get("Date", "")) or None, str(headers.get("Subject", "")) or None
    except Exception:  # a broken header must not stop the copy; it is only for the report
        log.debug("unparseable header in skipped message")
        date = subject = None
    # A malformed line (no colon) ends the header for the parser: what follows is still shown.
    fields = header_fields(head)
    return date or fields.get("date") or None, subject or fields.get("subject") or None


def parse_message(resp: Response) -> Message | None:
    if not FETCH_START.match(resp.text) or not resp.literals:
        return None
    uid, flags, date = FETCH_UID.search(resp.text), FETCH_FLAGS.search(resp.text), FETCH_INTERNALDATE.search(resp.text)
    if not (uid and date):
        return None
    flag_list = [f for f in (flags.group(1).split() if flags else []) if f.lower() != b"\\recent"]
    return Message(int(uid.group(1)), flag_list, date.group(1), resp.literals[0])


class Reader(threading.Thread):
    """Walks the folder tasks on the source connection and queues what the writer needs."""

    def __init__(
        self,
        session: Session,
        tasks: queue.Queue,
        out: queue.Queue,
        budget: ByteBudget,
        batch_bytes: int,
        size_limit: int | None,
        limiter: RateLimiter,
        on_throttle,
    ) -> None:
        super().__init__(name="imapcopy-reader", daemon=True)
        self.session = session
        self.tasks = tasks
        self.out = out
        self.budget = budget
        self.batch_bytes = batch_bytes
        self._limit = min(batch_bytes, 256 * 1024)
        self.size_limit = size_limit
        self.limiter = limiter
        self.on_throttle = on_throttle
        self.stop = threading.Event()

    def _put(self, item) -> None:
        while True:
            if self.stop.is_set():
                raise PipelineStopped
            try:
                self.out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        try:
            # Folders come from a queue shared with the other pipelines: take the next one free.
            while True:
                try:
                    task = self.tasks.get_nowait()
                except queue.Empty:
                    break
                self._read_folder(task)
            self._put(None)
        except PipelineStopped:
            pass
        except BaseException as exc:  # handed to the writer, which decides what to do
            try:
                self._put(ReaderFailed(exc))
            except PipelineStopped:
                pass

    def _read_folder(self, task: FolderTask) -> None:
        s = self.session
        state = s.select(task.plan.source.raw, readonly=True)
        if state.uidvalidity != task.source_uidvalidity:
            raise TransientError(ErrorCode.NETWORK_ERROR, "source UIDVALIDITY changed during the copy", "source")
        self._put(FolderBegin(task))
        if task.segment is not None:
            sizes = task.segment.sizes
        else:
            sizes = fetch_sizes(s, task.start_uid, task.only_uids) if state.exists else []
        if task.present:
            upto = task.reconcile_upto
            candidates = [uid for uid, _ in sizes if upto is None or uid <= upto]
            present = task.present
            known = task.reconcile_from
            if candidates and known is not None and known + 1 < task.start_uid:
                present = set_aside(present, fetch_fingerprints(s, None, known + 1, task.start_uid - 1))
            matched, _ = match_present(fetch_fingerprints(s, candidates), present)
            if matched:
                self._put(AlreadyPresent(task, [(uid, size) for uid, size in sizes if uid in matched]))
                sizes = [(uid, size) for uid, size in sizes if uid not in matched]
        batch: list[tuple[int, int]] = []
        batch_size = 0
        for uid, size in sizes:
            if self.size_limit is not None and size > self.size_limit:
                date, subject = fetch_summary(s, uid)
                self._put(Skip(task, uid, size, "too_large", date, subject))
                continue
            if batch and (batch_size + size > self._limit or len(batch) >= MAX_MESSAGES_PER_BATCH):
                self._fetch_batch(task, batch, batch_size)
                batch, batch_size = [], 0
                # Start with small batches so the writer gets going at once, then grow.
                self._limit = min(self._limit * 2, self.batch_bytes)
            batch.append((uid, size))
            batch_size += size
        if batch:
            self._fetch_batch(task, batch, batch_size)
        self._put(FolderEnd(task))

    def _fetch_batch(self, task: FolderTask, batch: list[tuple[int, int]], nbytes: int) -> None:
        """FETCH one batch and hand its messages on as they arrive, in slices of STREAM_BYTES: the
        writer starts storing while the rest is still on its way, so a copy across a slow link
        keeps the destination's link busy from its first message to its last.  A slice claims the
        UIDs up to its last message only when every UID before it has arrived (servers answer in
        UID order); the last slice claims the whole batch (a message expunged meanwhile is gone)."""
        self.budget.acquire(nbytes, self.stop)
        handed = 0  # message bytes handed to the writer, which releases them from the budget
        try:
            slept = self.limiter.wait(len(batch), nbytes, self.stop)
            if slept > 0.5:
                self.on_throttle("source", slept)
            uids = [uid for uid, _ in batch]
            wanted = set(uids)
            got: dict[int, Message] = {}
            next_index = 0  # uids[:next_index] have all arrived and been handed on or queued below
            ready: list[Message] = []
            ready_bytes = 0
            tick = self.session.answer_guard(len(uids))

            def collect(resp: Response) -> None:
                nonlocal next_index, ready_bytes, handed
                tick()
                msg = parse_message(resp)
                if msg is None or msg.uid not in wanted or msg.uid in got:
                    return  # unsolicited or repeated: not kept
                got[msg.uid] = msg
                while next_index < len(uids) and uids[next_index] in got:
                    ready.append(got[uids[next_index]])
                    ready_bytes += len(ready[-1].body)
                    next_index += 1
                if ready_bytes >= STREAM_BYTES and next_index < len(uids):
                    self._put(Batch(task, list(ready), uids[next_index - 1], ready_bytes))
                    handed += ready_bytes
                    ready.clear()
                    ready_bytes = 0

            done = self.session.command(
                b"UID FETCH " + uid_set(uids) + b" (UID FLAGS INTERNALDATE BODY.PEEK[])", collect
            )
            # NO here usually means some messages were expunged meanwhile: copy the rest.
            if not done.ok and not got:
                self.session.check(done, "FETCH")
            in_order = {m.uid for m in ready}
            rest = ready + [got[uid] for uid in uids[next_index:] if uid in got and uid not in in_order]
            rest_bytes = sum(len(m.body) for m in rest)
            # Keep the budget honest if sizes changed (RFC822.SIZE is not always exact).
            real_bytes = handed + rest_bytes
            if real_bytes < nbytes:
                self.budget.release(nbytes - real_bytes)
            elif real_bytes > nbytes:
                self.budget.acquire(real_bytes - nbytes, self.stop)
            nbytes = real_bytes
            self._put(Batch(task, rest, uids[-1], rest_bytes))
            handed = nbytes
        except BaseException:
            self.budget.release(max(0, nbytes - handed))
            raise
