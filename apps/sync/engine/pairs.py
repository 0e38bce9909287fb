"""The pair runners, the second half of a copy attempt: 1..parallelism (reader, writer) pairs,
each with its own source and destination connection, take the folders biggest first.  A reader
thread (pipeline.Reader) FETCHes batches; the writer (here) APPENDs them (append.Appender), saves
the checkpoint before each APPEND and advances it after, and records what was copied or left
behind in the ledger.

`PairRuns` is a part of the copy run (copier._CopyRun): it uses the run's options, ledger,
callback hand-off (`calls`), reporting (`event`, `save`, `progress`, `cancel_requested`) and
connection state (`_extra_pairs`, `_careful_appends`, the rate limiters)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .append import Appender
from .calls import CallerThread
from .connection import Session
from .errors import Cancelled, EngineError, ErrorCode, TransientError
from .folders import FolderPlan
from .ledger import Ledger, Uncredited
from .model import CopyOptions, Endpoint, SkippedMessage
from .opening import connect
from .pipeline import (
    AlreadyPresent,
    Batch,
    ByteBudget,
    FolderBegin,
    FolderEnd,
    FolderTask,
    Message,
    PipelineStopped,
    RateLimiter,
    Reader,
    ReaderFailed,
    Skip,
    header_summary,
)
from .stored import RewriteWatch


class PairRuns:
    # Set by the copy run (copier._CopyRun); besides, it provides event(), save(), progress(),
    # cancel_requested() and _parallelism().
    source: Endpoint
    destination: Endpoint
    options: CopyOptions
    ledger: Ledger
    calls: CallerThread
    current_folder: str | None
    _stop: threading.Event
    _extra_pairs: PairOpener | None
    _careful_appends: bool
    _rewrites: RewriteWatch
    _keep_flags: dict[str, Callable[[bytes], bool]]
    _source_limiter: RateLimiter
    _dest_limiter: RateLimiter

    def _pipeline(self, src: Session, dst: Session, tasks: list[FolderTask]) -> None:
        """Run 1..parallelism reader/writer pairs over the folders, biggest folders first.

        Each folder is handled by exactly one pair, so its checkpoint advances in order.  The first
        pair starts at once; the others join as their connections open.  The workers hand every
        callback (save, on_event, on_progress) to this thread, so the caller's callbacks always run
        on the thread that called copy_mailbox().
        """
        wanted = self._parallelism(len(tasks)) - 1
        opener = self._extra_pairs
        if opener is None and wanted > 0:
            opener = self._extra_pairs = PairOpener(self.source, self.destination, wanted)
        if opener is not None:
            opener.wake = self.calls.wake
        todo: queue.Queue = queue.Queue()
        for task in sorted(tasks, key=lambda t: -t.size_hint):
            todo.put(task)
        self._stop.clear()
        errors: list[BaseException] = []

        def work(pair_src: Session, pair_dst: Session) -> None:
            self.calls.add_worker()  # from now on, callbacks go through calls.call
            try:
                self._run_pair(pair_src, pair_dst, todo)
            except BaseException as exc:
                errors.append(exc)
                self._stop.set()
            finally:
                self.calls.wake()  # wake the loop below at once

        self.calls.forget_workers()
        threads: list[threading.Thread] = []

        def start(pair: tuple[Session, Session]) -> None:
            thread = threading.Thread(target=work, args=pair, name=f"imapcopy-writer-{len(threads)}", daemon=True)
            threads.append(thread)
            thread.start()

        start((src, dst))
        taken = 0  # extra pairs looked at
        cancelled = False
        while True:
            if opener is not None:
                opened, error, finished = opener.progress()
                for pair in opened[taken:]:
                    taken += 1
                    # The opener keeps every pair it opened for _close_all; one opened once every
                    # folder is taken, or beyond what this run can use, is left idle until then.
                    if len(threads) <= wanted and not todo.empty() and not self._stop.is_set():
                        start(pair)
                if finished:
                    opener = None
                    if error is not None and len(threads) <= wanted:
                        # Typically a per-user connection limit: carry on with the connections we have.
                        self.event("throttled", None, side=error.side, reason="connection_limit",
                                   detail=error.detail, connections=len(threads))  # fmt: skip
            if not any(t.is_alive() for t in threads):
                break
            if not cancelled and self.cancel_requested():
                cancelled = True
                self._stop.set()
            self.calls.serve(0.1)
            self.progress()
        for t in threads:
            t.join()
        self.calls.serve(0)
        self.calls.forget_workers()
        real = [e for e in errors if not isinstance(e, (Cancelled, PipelineStopped))]
        fatal = [e for e in real if not isinstance(e, TransientError)]
        if fatal or real:
            raise (fatal or real)[0]
        if cancelled:
            raise Cancelled

    def _run_pair(self, src: Session, dst: Session, todo: queue.Queue) -> None:
        opts = self.options
        limits = [x for x in (opts.max_message_bytes, dst.append_limit) if x]
        budget = ByteBudget(2 * opts.batch_bytes)
        out: queue.Queue = queue.Queue(maxsize=256)
        reader = Reader(
            src,
            todo,
            out,
            budget,
            opts.batch_bytes,
            min(limits) if limits else None,
            self._source_limiter,
            lambda side, slept: self.event("throttled", None, side=side, wait_seconds=round(slept, 1)),
        )
        appender = Appender(dst, careful=self._careful_appends, watch=self._rewrites)
        reader.start()
        current: FolderTask | None = None
        clean_exit = False
        try:
            while True:
                if self._stop.is_set():
                    raise PipelineStopped
                try:
                    item = out.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    break
                if isinstance(item, ReaderFailed):
                    raise item.error
                if isinstance(item, FolderBegin):
                    current = item.task
                    self._learn_flags(dst, current.plan)
                    self.current_folder = current.plan.source.name
                    if current.split is None or not current.split.started:
                        if current.split is not None:
                            current.split.started = True
                        self.event(
                            "folder_started", current.plan.source.name, destination=current.plan.dest_name,
                            separator=current.plan.source.separator,
                        )  # fmt: skip
                elif isinstance(item, AlreadyPresent):
                    # Credited one by one: the checkpoint may pass some of them long before others.
                    for uid, size in item.found:
                        self.ledger.defer(item.task.checkpoint, Uncredited(uid, copied=1, nbytes=size))
                    self.event(
                        "already_present", item.task.plan.source.name, messages=len(item.found),
                        bytes=sum(size for _uid, size in item.found),
                    )  # fmt: skip
                elif isinstance(item, Skip):
                    self._record_skip(item)
                elif isinstance(item, Batch):
                    try:
                        slept = self._dest_limiter.wait(len(item.messages), item.nbytes)
                        if slept > 0.5:
                            self.event(
                                "throttled", item.task.plan.source.name, side="destination",
                                wait_seconds=round(slept, 1),
                            )  # fmt: skip
                        self._write_batch(dst, appender, item)
                    finally:
                        budget.release(item.nbytes)
                elif isinstance(item, FolderEnd):
                    self._finish_folder(dst, appender, item.task)
                    current = None
            clean_exit = True
        finally:
            reader.stop.set()
            if not clean_exit:
                src.abort()  # unblock a reader waiting on the network
                if current is not None:
                    self.save(current.checkpoint)  # in-memory state only claims confirmed work
            reader.join(timeout=10)

    def _write_batch(self, dst: Session, appender: Appender, batch: Batch) -> None:
        task = batch.task
        checkpoint = task.checkpoint
        checkpoint.pending_uid = max(checkpoint.pending_uid, batch.max_uid)
        self.save(checkpoint)  # durable before the APPEND: a crash now leaves a window to reconcile
        outcome = appender.append(task.plan.dest_raw, batch.messages, task.plan.keep_flag) if batch.messages else None
        if outcome is not None:
            self._record_outcome(task, batch, outcome)
        if task.split is not None:
            # Other pipelines copy other parts of this folder: advance to the common watermark
            # and leave dest_uidnext where the folder started, so a crash window covers them all.
            with self.ledger.lock, task.split.lock:
                task.segment.confirmed = batch.max_uid
                self.ledger.advance(checkpoint, task.split.watermark())
        else:
            self.ledger.advance(checkpoint, batch.max_uid)
        # A held folder keeps its window open from before its first uncopied message.
        if task.present is None and task.split is None and not self.ledger.held(checkpoint):
            checkpoint.pending_uid = checkpoint.last_uid
            uidnext = checkpoint.dest_uidnext  # nothing appended: still where copies of UIDs > last_uid start
            if outcome and outcome.dest_uids:
                uidnext = max(outcome.dest_uids) + 1
            elif outcome and outcome.appended:
                uidnext = self._dest_uidnext(dst, task)
            if uidnext:
                checkpoint.dest_uidnext, checkpoint.dest_mark_uid = uidnext, checkpoint.last_uid
        if outcome is not None and self.ledger.failed_this_run > self.options.error_budget:
            raise EngineError(
                ErrorCode.ERROR_BUDGET_EXCEEDED,
                f"more than {self.options.error_budget} messages failed",
                "destination",
            )

    def _record_outcome(self, task: FolderTask, batch: Batch, outcome) -> None:
        copied = len(outcome.appended)
        nbytes = sum(len(m.body) for m in outcome.appended)
        checkpoint = task.checkpoint
        ledger = self.ledger
        if outcome.failed or outcome.too_large or ledger.held(checkpoint):
            # The checkpoint stops below the first message left behind (maybe inside this batch):
            # credit each message at its own UID, so those below it are counted, those above not.
            for msg in outcome.appended:
                ledger.defer(checkpoint, Uncredited(msg.uid, copied=1, nbytes=len(msg.body)))
            for msg, _reason in outcome.failed:
                ledger.defer(checkpoint, Uncredited(msg.uid, failed=1))
                ledger.hold(checkpoint, msg.uid)
        else:
            ledger.defer(checkpoint, Uncredited(batch.max_uid, copied=copied, nbytes=nbytes))
        with ledger.lock:
            ledger.copied_this_run += copied
            ledger.bytes_this_run += nbytes
            ledger.failed_this_run += len(outcome.failed)
            new_keywords = outcome.dropped_keywords - ledger.dropped_keywords
            ledger.dropped_keywords |= new_keywords
        if new_keywords:
            self.event("keyword_dropped", task.plan.source.name, keywords=sorted(new_keywords))
        for msg in outcome.too_large:
            self._record_skip(Skip(task, msg.uid, len(msg.body), "rejected_too_large", *header_summary(msg.body)))
        for msg, reason in outcome.failed:
            date, subject = header_summary(msg.body)
            folder = task.plan.source.name
            if ledger.first_report(folder, msg.uid):  # met again by a retry within this run: reported once
                skipped = SkippedMessage(folder, msg.uid, date, subject, len(msg.body), "refused", reason)
                ledger.not_copied.append(skipped)
            self.event(
                "message_failed", folder, uid=msg.uid, date=date, subject=subject, size=len(msg.body), reason=reason
            )
        if outcome.flags_dropped:
            with ledger.lock:
                checkpoint.flags_dropped += len(outcome.flags_dropped)
        if outcome.altered:
            self._record_altered(task, outcome.altered)

    def _record_altered(self, task: FolderTask, altered: list[tuple[Message, str]]) -> None:
        folder = task.plan.source.name
        with self.ledger.lock:
            task.checkpoint.altered += len(altered)
        for msg, reason in altered:
            date, subject = header_summary(msg.body)
            self.ledger.altered.append(SkippedMessage(folder, msg.uid, date, subject, len(msg.body), reason))
            self.event(
                "message_altered", folder, uid=msg.uid, date=date, subject=subject, size=len(msg.body), reason=reason
            )

    def _learn_flags(self, dst: Session, plan: FolderPlan) -> None:
        """Which flags the destination folder stores (its PERMANENTFLAGS, asked on this pipeline's
        own connection while its reader fetches the first messages)."""
        keep = self._keep_flags.get(plan.dest_name)
        if keep is None:
            keep = flag_filter(dst.permanent_flags(plan.dest_raw))
            self._keep_flags[plan.dest_name] = keep
        plan.keep_flag = keep

    def _dest_uidnext(self, dst: Session, task: FolderTask) -> int | None:
        statuses = dst.status([task.plan.dest_raw], b"UIDNEXT")
        return statuses.get(task.plan.dest_raw, {}).get("UIDNEXT")

    def _record_skip(self, item: Skip) -> None:
        folder = item.task.plan.source.name
        self.ledger.defer(item.task.checkpoint, Uncredited(item.uid, skipped=1))
        self.ledger.hold(item.task.checkpoint, item.uid)
        if not self.ledger.first_report(folder, item.uid):
            return  # met again by a retry within this run: reported once
        self.ledger.not_copied.append(SkippedMessage(folder, item.uid, item.date, item.subject, item.size, item.reason))
        self.event(
            "message_skipped",
            folder,
            uid=item.uid,
            date=item.date,
            subject=item.subject,
            size=item.size,
            reason=item.reason,
        )

    def _finish_folder(self, dst: Session, appender: Appender, task: FolderTask) -> None:
        checkpoint = task.checkpoint
        if task.split is not None:
            with self.ledger.lock, task.split.lock:
                task.segment.done = True
                self.ledger.advance(checkpoint, task.split.watermark())
                last_piece = all(seg.done for seg in task.split.segments)
            if not last_piece:
                self.save(checkpoint)
                return
        self.ledger.advance(checkpoint, task.source_uidnext - 1)
        checkpoint.source_uidnext = task.source_uidnext
        if self.ledger.held(checkpoint):
            # Messages were left behind: the checkpoint stays below the first of them, and the
            # window above it stays open (pending_uid > last_uid), so the next run reconciles
            # what was copied after it and tries the rest again.
            checkpoint.pending_uid = max(checkpoint.pending_uid, task.source_uidnext - 1)
        else:
            checkpoint.pending_uid = checkpoint.last_uid
            uidnext = checkpoint.dest_uidnext
            if task.present is not None or task.split is not None:
                uidnext = self._dest_uidnext(dst, task)
            if uidnext:
                checkpoint.dest_uidnext, checkpoint.dest_mark_uid = uidnext, checkpoint.last_uid
        checkpoint.done = True
        self.save(checkpoint)
        past = self.ledger.past_checkpoint(checkpoint)
        self.event(
            "folder_done",
            task.plan.source.name,
            copied=checkpoint.messages_copied + past.get("copied", 0),
            skipped=checkpoint.messages_skipped + past.get("skipped", 0),
            failed=checkpoint.messages_failed + past.get("failed", 0),
        )


class PairOpener:
    """Opens the extra (source, destination) connections of the parallel pipelines in the
    background, all at once (each login is a few round trips), while the folders are planned."""

    def __init__(self, source: Endpoint, destination: Endpoint, count: int) -> None:
        self._source, self._destination = source, destination
        self.opened: list[tuple[Session, Session]] = []
        self.error: EngineError | None = None
        self.wake: Callable[[], None] = lambda: None  # called whenever a pair opened, and at the end
        self._lock = threading.Lock()
        self._ended = 0
        self._threads = [
            threading.Thread(target=self._open_pair, name="imapcopy-connect-extra", daemon=True) for _ in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _open_pair(self) -> None:
        extra_src = None
        try:
            extra_src = connect(self._source, "source")
            extra_dst = connect(self._destination, "destination")
        except EngineError as exc:
            if extra_src is not None:
                extra_src.close()
            with self._lock:
                self.error = self.error or exc
        else:
            with self._lock:
                self.opened.append((extra_src, extra_dst))
        finally:
            with self._lock:
                self._ended += 1
            self.wake()

    def progress(self) -> tuple[list[tuple[Session, Session]], EngineError | None, bool]:
        """(pairs opened so far, in order; the first error; whether every attempt has ended)"""
        with self._lock:
            return list(self.opened), self.error, self._ended == len(self._threads)

    def result(self) -> tuple[list[tuple[Session, Session]], EngineError | None]:
        for thread in self._threads:
            thread.join()
        return self.opened, self.error


def flag_filter(permanent_flags: list[str] | None) -> Callable[[bytes], bool]:
    """Which flags the destination folder can store (PERMANENTFLAGS; \\* = any keyword)."""
    if permanent_flags is None or "\\*" in permanent_flags:
        return lambda flag: True
    allowed = {f.lower() for f in permanent_flags}

    def keep(flag: bytes) -> bool:
        text = flag.decode("ascii", "replace").lower()
        return text.startswith("\\") or text in allowed

    return keep
