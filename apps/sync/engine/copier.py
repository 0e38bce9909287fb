"""copy_mailbox(): plan folders, reconcile checkpoints, run the pipeline, retry, report."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .append import AppendDesync, Appender
from .archive import find_archived
from .checkpoints import CheckpointStore
from .connection import LOGOUT_SECONDS, MailboxState, Session, connect, quote
from .errors import Cancelled, EngineError, ErrorCode, TransientError
from .fingerprint import fetch_fingerprints
from .folders import FolderPlan, Listing, encode_name, list_folders, plan_archive, plan_folders, safe_part
from .model import (
    CopyOptions,
    CopyResult,
    Endpoint,
    Event,
    FolderCheckpoint,
    Progress,
    SkippedMessage,
)
from .pipeline import (
    AlreadyPresent,
    Batch,
    ByteBudget,
    FolderBegin,
    FolderEnd,
    FolderSplit,
    FolderTask,
    Message,
    RateLimiter,
    Reader,
    ReaderFailed,
    Segment,
    Skip,
    _Stopped,
    fetch_sizes,
    header_summary,
)
from .stored import RewriteWatch

# Without STATUS=SIZE (Gmail, Microsoft 365, Yahoo) a folder's bytes are estimated from its
# message count, so that big folders are still split between pipelines (the split itself uses
# the real sizes) and the biggest handed out first.
ESTIMATED_MESSAGE_BYTES = 50_000

log = logging.getLogger("imapcopy.engine")

MAX_ATTEMPTS = 6  # consecutive failed attempts without progress before giving up
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def copy_mailbox(
    source: Endpoint,
    destination: Endpoint,
    *,
    options: CopyOptions,
    checkpoints: CheckpointStore,
    on_progress: Callable[[Progress], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> CopyResult:
    """Copy every folder of `source` into `destination`.  Never raises for expected failures:
    returns status="failed" with error_code.  Resumes from `checkpoints`."""
    return _CopyRun(source, destination, options, checkpoints, on_progress, on_event, should_cancel).run()


@dataclass
class _Uncredited:
    """Work done past a folder's checkpoint (``last_uid``).  It is credited to the folder's counters
    only once the checkpoint covers ``uid``: a resumed run meets that work again (reconciliation
    recognises the messages) and counts it then, so counting it now as well would count it twice."""

    uid: int
    copied: int = 0
    nbytes: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, other: _Uncredited, sign: int = 1) -> None:
        self.copied += sign * other.copied
        self.nbytes += sign * other.nbytes
        self.skipped += sign * other.skipped
        self.failed += sign * other.failed


class _PastCheckpoint:
    """One folder's uncredited work, by UID (a heap), with running totals: crediting and reporting
    stay cheap however much a folder held below a message left behind accumulates."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _Uncredited]] = []
        self._order = itertools.count()  # ties on UID: never compare the work items themselves
        self.total = _Uncredited(0)

    def add(self, work: _Uncredited) -> None:
        heapq.heappush(self._heap, (work.uid, next(self._order), work))
        self.total.add(work)

    def pop_upto(self, uid: int) -> Iterator[_Uncredited]:
        while self._heap and self._heap[0][0] <= uid:
            work = heapq.heappop(self._heap)[2]
            self.total.add(work, -1)
            yield work

    def as_dict(self) -> dict[str, int]:
        if not self._heap:
            return {}
        t = self.total
        return {"copied": t.copied, "bytes": t.nbytes, "skipped": t.skipped, "failed": t.failed}


@dataclass
class _Totals:
    folders_total: int = 0
    messages_total: int = 0
    bytes_total: int = 0


class _CopyRun:
    def __init__(self, source, destination, options, store, on_progress, on_event, should_cancel) -> None:
        self.source: Endpoint = source
        self.destination: Endpoint = destination
        self.options: CopyOptions = options
        self.store: CheckpointStore = store
        self._on_progress = on_progress
        self._on_event = on_event
        self._should_cancel = should_cancel or (lambda: False)
        self.checkpoints: dict[str, FolderCheckpoint] = {}
        self.active: list[str] = []  # source names of the folders in this copy
        self.totals = _Totals()
        self.not_copied: list[SkippedMessage] = []
        self.altered: list[SkippedMessage] = []
        self.renamed: dict[str, str] = {}
        self.refused_folders: dict[str, str] = {}  # source folder -> why it cannot be copied
        self.dropped_keywords: set[str] = set()
        # All Mail's archived messages: source folder, destination folder, how many there are.
        self.archive: dict = {}
        self._rewrites = RewriteWatch()  # what the destination does with unusual messages
        self.failed_this_run = 0
        self.copied_this_run = 0
        self.bytes_this_run = 0
        self.current_folder: str | None = None
        self._last_progress = 0.0
        self._sessions: list[Session] = []
        self._connected_once = False
        # Set once a destination answered a MULTIAPPEND for fewer messages than sent: from then
        # on (retries included) append one message at a time with synchronizing literals.
        self._careful_appends = False
        self._stop = threading.Event()
        self._extra_pairs: _PairOpener | None = None
        self._keep_flags: dict[str, Callable[[bytes], bool]] = {}
        self._workers: set[int | None] = set()
        self._calls: queue.Queue = queue.Queue()
        # Guards the checkpoints' counters and last_uid, the uncredited work and the run totals.
        self._counter_lock = threading.RLock()
        self._uncredited: dict[str, _PastCheckpoint] = {}
        # Folder -> highest UID its checkpoint may reach in this run: just below the first message
        # that was not copied (refused, too large), so that the next run tries that one again.
        self._holds: dict[str, int] = {}
        self._skipped_seen: set[tuple[str, int]] = set()
        self._source_limiter = RateLimiter(source.max_messages_per_second, source.max_bytes_per_second)
        self._dest_limiter = RateLimiter(destination.max_messages_per_second, destination.max_bytes_per_second)

    # ----------------------------------------------------------------- reporting
    def event(self, kind: str, folder: str | None = None, **detail) -> None:
        if self._on_event is not None and threading.get_ident() in self._workers:
            self._call(lambda: self.event(kind, folder, **detail))
            return
        if self._on_event is not None:
            try:
                self._on_event(Event(kind, folder, detail))
            except Exception:
                log.exception("on_event callback failed")

    def progress(self, force: bool = False) -> None:
        if self._on_progress is None or threading.get_ident() in self._workers:
            return  # the supervising thread reports progress
        now = time.monotonic()
        if not force and now - self._last_progress < self.options.progress_interval:
            return
        self._last_progress = now
        try:
            self._on_progress(self.snapshot())
        except Exception:
            log.exception("on_progress callback failed")

    def snapshot(self) -> Progress:
        with self._counter_lock:
            cks = [self.checkpoints[name] for name in self.active if name in self.checkpoints]
            pending = [self._uncredited[name].total for name in self.active if name in self._uncredited]
            return Progress(
                folders_total=self.totals.folders_total,
                folders_done=sum(1 for c in cks if c.done),
                messages_total=self.totals.messages_total,
                messages_copied=sum(c.messages_copied for c in cks) + sum(u.copied for u in pending),
                messages_skipped=sum(c.messages_skipped for c in cks) + sum(u.skipped for u in pending),
                messages_failed=sum(c.messages_failed for c in cks) + sum(u.failed for u in pending),
                bytes_total=self.totals.bytes_total,
                bytes_copied=sum(c.bytes_copied for c in cks) + sum(u.nbytes for u in pending),
                current_folder=self.current_folder,
            )

    def save(self, ck: FolderCheckpoint) -> None:
        # A copy: the worker keeps mutating its checkpoint while the store persists this state.
        with self._counter_lock:
            state = dataclasses.replace(ck)
            state.past_checkpoint = self._past_checkpoint(ck)
        self._call(self.store.save, state)

    def _past_checkpoint(self, ck: FolderCheckpoint) -> dict[str, int]:
        waiting = self._uncredited.get(ck.source_name)
        return waiting.as_dict() if waiting else {}

    def _hold(self, ck: FolderCheckpoint, uid: int) -> None:
        with self._counter_lock:
            self._holds[ck.source_name] = min(self._holds.get(ck.source_name, uid), uid - 1)

    def _held(self, ck: FolderCheckpoint) -> bool:
        with self._counter_lock:
            return ck.source_name in self._holds

    def _defer(self, ck: FolderCheckpoint, work: _Uncredited) -> None:
        with self._counter_lock:
            self._uncredited.setdefault(ck.source_name, _PastCheckpoint()).add(work)

    def _advance(self, ck: FolderCheckpoint, last_uid: int) -> None:
        """Move the checkpoint to last_uid and credit the work it now covers, atomically, so that a
        saved checkpoint never covers work it does not count (or counts work it does not cover)."""
        with self._counter_lock:
            ck.last_uid = max(ck.last_uid, min(last_uid, self._holds.get(ck.source_name, last_uid)))
            waiting = self._uncredited.get(ck.source_name)
            if waiting is None:
                return
            for work in waiting.pop_upto(ck.last_uid):
                ck.messages_copied += work.copied
                ck.bytes_copied += work.nbytes
                ck.messages_skipped += work.skipped
                ck.messages_failed += work.failed

    def cancel_requested(self) -> bool:
        try:
            return bool(self._should_cancel())
        except Exception:  # a broken callback must not leave worker threads running unattended
            log.exception("should_cancel callback failed")
            return False

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise Cancelled

    # ----------------------------------------------------------------- main loop
    def run(self) -> CopyResult:
        started = time.monotonic()
        status, code, side, detail = "finished", None, None, ""
        try:
            self.checkpoints = self.store.load()
            failures = 0
            while True:
                self.check_cancel()
                before = self.copied_this_run + len(self.not_copied) + self.failed_this_run
                try:
                    self._attempt()
                    break
                except TransientError as exc:
                    self._close_all()
                    if isinstance(exc, AppendDesync):
                        self._careful_appends = True
                    if not self._connected_once:
                        raise  # a server that cannot be reached at all: report it now
                    if self.copied_this_run + len(self.not_copied) + self.failed_this_run > before:
                        failures = 0
                    failures += 1
                    if failures >= MAX_ATTEMPTS:
                        raise
                    delay = min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
                    kind = "throttled" if "throttl" in exc.detail else "retry"
                    self.event(
                        kind,
                        self.current_folder,
                        side=exc.side,
                        reason=exc.code.value,
                        detail=exc.detail,
                        attempt=failures,
                        wait_seconds=delay,
                    )
                    log.info("retrying after %s (%s side), attempt %d", exc.detail, exc.side, failures)
                    self._sleep(delay)
            if self.failed_this_run or self.not_copied or self.refused_folders:
                status = "finished_with_errors"
        except Cancelled:
            status, code = "cancelled", ErrorCode.CANCELLED
        except EngineError as exc:
            status, code, side, detail = "failed", exc.code, exc.side, exc.detail
            self.event("error", self.current_folder, code=exc.code.value, side=exc.side, detail=exc.detail)
        except Exception as exc:
            log.exception("internal error during copy")
            status, code, detail = "failed", ErrorCode.INTERNAL_ERROR, type(exc).__name__
            self.event("error", self.current_folder, code=code.value, detail=detail)
        finally:
            self._close_all()
        self.current_folder = None
        self.progress(force=True)
        snap = self.snapshot()
        inexact = self._inexact()
        archived = dict(self.archive)
        if archived:
            archive_ck = self.checkpoints.get(archived.pop("source"))
            archived["copied"] = archive_ck.messages_copied if archive_ck is not None else 0
        self.event(
            "summary", None, not_copied=len(self.not_copied), flags_dropped=inexact["flags_dropped"],
            altered=inexact["altered"], archived=archived,
        )  # fmt: skip
        return CopyResult(
            status=status,
            error_code=code,
            error_side=side,
            error_detail=detail,
            folders_total=snap.folders_total,
            folders_done=snap.folders_done,
            messages_total=snap.messages_total,
            messages_copied=snap.messages_copied,
            messages_skipped=snap.messages_skipped,
            messages_failed=snap.messages_failed,
            bytes_copied=snap.bytes_copied,
            seconds=round(time.monotonic() - started, 3),
            not_copied=self.not_copied,
            renamed_folders=self.renamed,
            dropped_keywords=sorted(self.dropped_keywords),
            flags_dropped=inexact["flags_dropped"],
            altered=self.altered,
            altered_total=inexact["altered"],
            archived=archived,
            copied_this_run=self.copied_this_run,
            bytes_this_run=self.bytes_this_run,
        )

    def _inexact(self) -> dict[str, int]:
        with self._counter_lock:
            cks = [self.checkpoints[name] for name in self.active if name in self.checkpoints]
            return {"flags_dropped": sum(c.flags_dropped for c in cks), "altered": sum(c.altered for c in cks)}

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.check_cancel()
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _connect_both(self) -> tuple[Session, Session]:
        """Log in to both servers at once (each login is a few round trips)."""
        found: dict = {}

        def destination() -> None:
            try:
                found["dst"] = connect(self.destination, "destination")
            except BaseException as exc:
                found["error"] = exc

        thread = threading.Thread(target=destination, name="imapcopy-connect", daemon=True)
        thread.start()
        try:
            src = connect(self.source, "source")
        finally:
            thread.join()
            if "dst" in found:
                self._sessions.append(found["dst"])  # closed by _close_all whatever happens
        self._sessions.append(src)
        if "error" in found:
            raise found["error"]
        return src, found["dst"]

    def _close_all(self) -> None:
        if self._extra_pairs is not None:
            opened, _ = self._extra_pairs.result()
            self._extra_pairs = None
            for pair in opened:
                self._sessions.extend(pair)
        # All at once: a dozen connections to a server that stopped answering would otherwise each
        # wait for their LOGOUT in turn, and the job would look dead meanwhile.
        sessions, self._sessions = list(self._sessions), []
        if len(sessions) <= 1:
            for session in sessions:
                session.close()
            return
        closers = [threading.Thread(target=s.close, name="imapcopy-logout", daemon=True) for s in sessions]
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + LOGOUT_SECONDS + 1
        for session, closer in zip(sessions, closers, strict=True):
            closer.join(max(0.0, deadline - time.monotonic()))
            if closer.is_alive():
                session.abort()

    # ----------------------------------------------------------------- one attempt
    def _attempt(self) -> None:
        src, dst = self._connect_both()
        self.event("connected", side="source", capabilities=sorted(src.capabilities))
        self.event("connected", side="destination", capabilities=sorted(dst.capabilities))
        self._connected_once = True
        # A first run will want its extra connections: open them while the folders are planned.
        if self.options.parallelism > 1 and not (self.checkpoints and all(c.done for c in self.checkpoints.values())):
            self._extra_pairs = _PairOpener(
                self.source, self.destination, self._parallelism(self.options.parallelism) - 1
            )

        source_listing = list_folders(src)
        for folder in source_listing.refused:  # no IMAP command can carry its name: reported, not copied
            if folder.name not in self.refused_folders:
                self.refused_folders[folder.name] = folder.refused
                self.event("folder_refused", folder.name, side="source", reason=folder.refused)
        dest_listing = list_folders(dst)
        whole = self.options.copy_all_mail_as_folder
        plans = plan_folders(source_listing, dest_listing, self.options.skip_gmail_virtual_folders, keep_all_mail=whole)
        if self.options.skip_gmail_virtual_folders and not whole:
            archive = plan_archive(source_listing, dest_listing)
            if archive is not None:
                plans.append(archive)
        self._apply_previous_names(plans, dest_listing)
        missing: list[FolderPlan] = []
        create_tags: list[bytes] = []
        if not self.options.dry_run:
            missing = sorted((p for p in plans if not p.dest_exists), key=lambda p: len(p.source.path))
            # Every plain name in one round trip, answered while the source counts its folders;
            # refused ones go through _create's fallbacks.
            create_tags = dst.send_commands([b"CREATE " + quote(p.dest_raw) for p in missing])

        items = b"MESSAGES UIDNEXT UIDVALIDITY" + (b" SIZE" if src.has("STATUS=SIZE") else b"")
        statuses = src.status([p.source.raw for p in plans], items)

        if missing:
            answers = dst.collect(create_tags)
            created = [p for p, done in zip(missing, answers, strict=True) if done.ok]
            dst.pipeline([b"SUBSCRIBE " + quote(p.dest_raw) for p in created])
            for plan in created:
                plan.dest_exists = plan.created = True
                if plan.renamed:
                    self.renamed[plan.source.name] = plan.dest_name
                    self.event("folder_renamed", plan.source.name, to=plan.dest_name, reason="separator")
                self.event("folder_created", plan.source.name, destination=plan.dest_name)
            for plan in missing:
                if not plan.dest_exists:
                    self._create(dst, plan, dest_listing)
        self.active = [p.source.name for p in plans]
        self.totals = _Totals(folders_total=len(plans))
        # The destination folders' state in one round trip (not one SELECT per folder): a folder
        # the checkpoint calls done is skipped only if the destination still holds that folder.
        dest_statuses = (
            dst.status([p.dest_raw for p in plans if p.dest_exists], b"MESSAGES UIDNEXT UIDVALIDITY")
            if not self.options.dry_run
            else {}
        )
        to_prepare: list[tuple[FolderPlan, FolderCheckpoint, dict]] = []
        archived: dict[str, set[int]] = {}
        for plan in plans:
            st = statuses.get(plan.source.raw, {})
            ck = self.checkpoints.get(plan.source.name)
            if ck is None:
                ck = self.checkpoints[plan.source.name] = FolderCheckpoint(plan.source.name, archive_only=plan.archive)
            ck.destination_name = plan.dest_name
            if plan.archive and "UIDVALIDITY" in st:
                # Only All Mail's archived messages are copied: they are the folder's total.
                if not self._unchanged(ck, st, plan, dest_statuses):
                    found = self._find_archived(src, plan, plans)
                    archived[plan.source.name] = found
                    ck.messages_total = len(found)
                self.archive = {"source": plan.source.name, "folder": plan.dest_name, "found": ck.messages_total}
            else:
                ck.messages_total = st.get("MESSAGES", 0)
                self.totals.bytes_total += st.get("SIZE", 0)
            self.totals.messages_total += ck.messages_total
            if "UIDVALIDITY" not in st:
                # Deleted or made unreadable since LIST: report it, copy the rest.
                self.event("error", plan.source.name, code=ErrorCode.PROTOCOL_ERROR.value, side="source",
                           detail="the folder could not be opened (STATUS failed)")  # fmt: skip
                continue
            if self._unchanged(ck, st, plan, dest_statuses):
                continue
            ck.done = False
            if self.options.dry_run:
                self.event(
                    "folder_planned", plan.source.name, destination=plan.dest_name, exists=plan.dest_exists,
                    messages=st.get("MESSAGES", 0), bytes=st.get("SIZE", 0),
                )  # fmt: skip
                continue
            to_prepare.append((plan, ck, st))
        tasks = [self._prepare(dst, plan, ck, st, dest_statuses.get(plan.dest_raw, {})) for plan, ck, st in to_prepare]
        for task in tasks:
            if task.plan.archive:
                task.only_uids = archived.get(task.plan.source.name, set())
                task.size_hint = len(task.only_uids) * ESTIMATED_MESSAGE_BYTES
        self.progress(force=True)
        if tasks:
            tasks = self._split_big_folders(src, tasks)
            self._pipeline(src, dst, tasks)
        self.check_cancel()

    def _unchanged(self, ck: FolderCheckpoint, st: dict, plan: FolderPlan, dest_statuses: dict) -> bool:
        """Nothing to do in this folder: done, nothing new on the source, the destination folder
        still the one the checkpoint knows."""
        return (
            ck.done
            and ck.uidvalidity == st.get("UIDVALIDITY")
            and ck.source_uidnext == st.get("UIDNEXT")
            and ck.pending_uid <= ck.last_uid
            and not plan.created
            and (self.options.dry_run or _same_folder(ck, dest_statuses.get(plan.dest_raw, {})))
        )

    def _find_archived(self, src: Session, plan: FolderPlan, plans: list[FolderPlan]) -> set[int]:
        """All Mail's messages that none of the folders copied holds (Gmail's archived mail)."""
        labels = [p.source for p in plans if not p.archive]
        found = find_archived(src, plan.source, labels, self.check_cancel)
        self.event(
            "archived_found", plan.source.name, messages=len(found.uids), destination=plan.dest_name,
            method=found.method,
        )  # fmt: skip
        return found.uids

    def _apply_previous_names(self, plans: list[FolderPlan], dest: Listing) -> None:
        """Keep writing where the previous run wrote (a folder renamed then because the destination
        refused its name), but only where the destination agrees: the folder is still there.  A
        destination that moved to another server, or changed its separator or namespace, gets the
        mapping planned afresh from what it shows now (the old name would be a flattened one)."""
        names = {f.name: f for f in dest.folders}
        for plan in plans:
            ck = self.checkpoints.get(plan.source.name)
            if ck and ck.archive_only != plan.archive:
                # Gmail's All Mail switched between "archived messages into Archive" and "whole,
                # as a folder": what the checkpoint covers is not what is asked now.  Start the
                # folder afresh; what is already on the destination is recognised, not copied twice.
                ck.archive_only = plan.archive
                ck.uidvalidity = ck.dest_uidvalidity = None
                ck.destination_name = plan.dest_name
                ck.done = False
            if ck and ck.destination_name and ck.destination_name != plan.dest_name:
                found = names.get(ck.destination_name)
                if found is not None and found.selectable:
                    plan.dest_name, plan.dest_raw, plan.dest_exists = found.name, found.raw, True
                else:
                    self.event("folder_remapped", plan.source.name, before=ck.destination_name, to=plan.dest_name)
                    # Nothing known of the new folder: whatever it holds is recognised, not trusted.
                    ck.dest_uidvalidity = None
            if plan.renamed:
                self.renamed[plan.source.name] = plan.dest_name

    def _create(self, dst: Session, plan: FolderPlan, dest: Listing) -> None:
        """CREATE + SUBSCRIBE; a refused name is replaced by a safe one and reported."""
        sep = dest.namespace.separator or "/"
        candidates = [plan.dest_name]
        relative = (
            plan.dest_name[len(dest.namespace.prefix) :]
            if plan.dest_name.startswith(dest.namespace.prefix)
            else plan.dest_name
        )
        safe = dest.namespace.prefix + sep.join(safe_part(p) for p in relative.split(sep))
        if safe not in candidates:
            candidates.append(safe)
        candidates.append(dest.namespace.prefix + "IMAPCopy-" + safe_part(plan.source.name.replace(sep, "-")))
        last = None
        for name in candidates:
            raw = encode_name(name)
            done = dst.command(b"CREATE " + quote(raw))
            if done.ok or done.code == b"ALREADYEXISTS":
                dst.command(b"SUBSCRIBE " + quote(raw))
                if name != plan.dest_name or plan.renamed:
                    self.renamed[plan.source.name] = name
                    self.event(
                        "folder_renamed",
                        plan.source.name,
                        to=name,
                        reason=done.text[:120].decode("utf-8", "replace")
                        if last is None
                        else last.text[:120].decode("utf-8", "replace"),
                    )
                plan.dest_name, plan.dest_raw, plan.dest_exists = name, raw, True
                plan.created = done.ok
                if done.ok:
                    self.event("folder_created", plan.source.name, destination=name)
                return
            last = done
        raise EngineError(
            ErrorCode.PROTOCOL_ERROR,
            f"could not create a destination folder for {plan.source.name}",
            "destination",
        )

    def _prepare(self, dst: Session, plan: FolderPlan, ck: FolderCheckpoint, st: dict, dest_st: dict) -> FolderTask:
        """Decide where to start in this folder and what may already be on the destination."""
        if "UIDVALIDITY" in dest_st:
            dstate = MailboxState(dest_st.get("MESSAGES", 0), dest_st["UIDVALIDITY"], dest_st.get("UIDNEXT"))
            examined = False
        else:  # a server whose STATUS leaves something out
            dstate, examined = dst.select(plan.dest_raw, readonly=True), True
        task = FolderTask(plan, ck, st["UIDVALIDITY"], st.get("UIDNEXT", 0), start_uid=1)
        with self._counter_lock:
            # Work past the checkpoint from an earlier attempt of this run is met again below
            # (reconciliation or a fresh copy) and counted then.
            self._uncredited.pop(ck.source_name, None)
            self._holds.pop(ck.source_name, None)
        task.size_hint = st.get("SIZE") or st.get("MESSAGES", 0) * ESTIMATED_MESSAGE_BYTES
        source_same = ck.uidvalidity == st["UIDVALIDITY"]
        dest_same = _same_folder(ck, {"UIDVALIDITY": dstate.uidvalidity, "UIDNEXT": dstate.uidnext})
        if source_same and dest_same:
            task.start_uid = ck.last_uid + 1
            window_open = ck.pending_uid > ck.last_uid
            dest_grew = ck.dest_uidnext is not None and (dstate.uidnext or 0) > ck.dest_uidnext
            if dest_grew and not window_open and st.get("UIDNEXT", 0) - 1 > ck.last_uid:
                # The destination holds more than this checkpoint knows of: mail delivered to it
                # since, or copies whose checkpoint writes were lost (a machine crash, a database
                # restored from a backup). What the source has past the checkpoint is treated as
                # an open window, so that such copies are recognised, not made a second time.
                ck.pending_uid = st["UIDNEXT"] - 1
                window_open = True
            if window_open and dest_grew:
                # An APPEND was sent but not confirmed: what landed is at UIDs >= dest_uidnext.
                if not examined:
                    dst.select(plan.dest_raw, readonly=True)
                task.present = [fp for _, fp in fetch_fingerprints(dst, None, ck.dest_uidnext)]
                task.reconcile_upto = ck.pending_uid
                task.reconcile_from = ck.last_uid if ck.dest_mark_uid is None else ck.dest_mark_uid
            else:
                ck.pending_uid = ck.last_uid
                ck.dest_uidnext = dstate.uidnext
                ck.dest_mark_uid = ck.last_uid
        else:
            if ck.uidvalidity is not None or ck.dest_uidvalidity is not None:
                self.event(
                    "uidvalidity_changed",
                    plan.source.name,
                    source_changed=not source_same,
                    destination_changed=not dest_same,
                )
            ck.uidvalidity = st["UIDVALIDITY"]
            ck.dest_uidvalidity = dstate.uidvalidity
            ck.last_uid = 0
            ck.messages_copied = ck.messages_skipped = ck.messages_failed = ck.bytes_copied = 0
            ck.flags_dropped = ck.altered = 0
            if dstate.exists:
                # No usable checkpoint but mail already there: recognise it, copy only the rest.
                if not examined:
                    dst.select(plan.dest_raw, readonly=True)
                task.present = [fp for _, fp in fetch_fingerprints(dst, None, 1)]
                ck.dest_uidnext = 1
                ck.pending_uid = max(st.get("UIDNEXT", 1) - 1, 1)
            else:
                ck.dest_uidnext = dstate.uidnext
                ck.pending_uid = 0
            ck.dest_mark_uid = 0
        self.save(ck)
        return task

    # ----------------------------------------------------------------- pipeline
    def _split_big_folders(self, src: Session, tasks: list[FolderTask]) -> list[FolderTask]:
        """Cut folders much bigger than their share into UID-range segments, so that parallel
        pipelines are not left idle while one of them copies a huge INBOX."""
        n = self._parallelism(len(tasks) * 8)
        if n < 2:
            return tasks
        total = sum(t.size_hint for t in tasks)
        target = max(total / (n * 3), 4 * self.options.batch_bytes)
        out: list[FolderTask] = []
        for task in tasks:
            # A folder being reconciled keeps its simpler one-pipeline path.
            if task.present is not None or task.size_hint < 1.5 * target:
                out.append(task)
                continue
            src.select(task.plan.source.raw, readonly=True)
            sizes = fetch_sizes(src, task.start_uid, task.only_uids)
            weight = sum(size for _, size in sizes)
            if not src.has("STATUS=SIZE"):
                # The target came from estimates: weigh the folder the same way, or a folder of
                # small messages (where round trips, not bytes, set the pace) is never split.
                weight = max(weight, len(sizes) * ESTIMATED_MESSAGE_BYTES)
            pieces = min(8, max(1, round(weight / target)))
            if pieces < 2 or len(sizes) < 2 * pieces:
                out.append(task)
                continue
            per_piece = sum(size for _, size in sizes) / pieces
            segments: list[Segment] = []
            current: list[tuple[int, int]] = []
            acc = 0
            for uid, size in sizes:
                current.append((uid, size))
                acc += size
                if acc >= per_piece and len(segments) < pieces - 1:
                    segments.append(Segment(lo=0, hi=uid, sizes=current))
                    current, acc = [], 0
            if current:
                segments.append(Segment(lo=0, hi=current[-1][0], sizes=current))
            lo = task.start_uid - 1
            for seg in segments:
                seg.lo = seg.confirmed = lo
                lo = seg.hi
            split = FolderSplit(task.start_uid, segments)
            log.info("copying folder %s in %d parallel parts", task.plan.source.name, len(segments))
            for seg in segments:
                out.append(
                    dataclasses.replace(task, segment=seg, split=split, size_hint=sum(sz for _, sz in seg.sizes))
                )
        return out

    def _parallelism(self, folders: int) -> int:
        n = max(1, min(self.options.parallelism, folders))
        for endpoint in (self.source, self.destination):
            if endpoint.max_connections:
                n = min(n, endpoint.max_connections)
        return n

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
            opener = self._extra_pairs = _PairOpener(self.source, self.destination, wanted)
        if opener is not None:
            opener.wake = lambda: self._calls.put(None)
        todo: queue.Queue = queue.Queue()
        for task in sorted(tasks, key=lambda t: -t.size_hint):
            todo.put(task)
        self._stop.clear()
        errors: list[BaseException] = []

        def work(pair_src: Session, pair_dst: Session) -> None:
            self._workers.add(threading.get_ident())  # from now on, callbacks go through _call
            try:
                self._run_pair(pair_src, pair_dst, todo)
            except BaseException as exc:
                errors.append(exc)
                self._stop.set()
            finally:
                self._calls.put(None)  # wake the loop below at once

        self._workers = set()
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
            self._serve_calls(0.1)
            self.progress()
        for t in threads:
            t.join()
        self._serve_calls(0)
        self._workers = set()
        real = [e for e in errors if not isinstance(e, (Cancelled, _Stopped))]
        fatal = [e for e in real if not isinstance(e, TransientError)]
        if fatal or real:
            raise (fatal or real)[0]
        if cancelled:
            raise Cancelled

    # Callbacks requested by worker threads, run here on the caller's thread.
    def _call(self, fn, *args):
        if threading.get_ident() not in self._workers:
            return fn(*args)
        done = threading.Event()
        box: list = [None, None]
        self._calls.put((fn, args, box, done))
        done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def _serve_calls(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                calls = [self._calls.get(timeout=max(0.0, deadline - time.monotonic()))]
            except queue.Empty:
                return
            while True:
                try:
                    calls.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            calls = [call for call in calls if call is not None]  # None: a wake-up, nothing to run
            if not calls:
                return
            # Each call comes from a different worker (a worker waits for its call), so they may
            # run in any order: other calls first, then every checkpoint in one write (a group
            # commit: one fsync for all the writers waiting to APPEND, not one each in turn).
            saves = [call for call in calls if call[0] == self.store.save]
            for fn, args, box, done in calls:
                if fn != self.store.save:
                    self._run_call(fn, args, box, done)
            if saves:
                self._save_together(saves)

    @staticmethod
    def _run_call(fn, args, box, done) -> None:
        try:
            box[0] = fn(*args)
        except BaseException as exc:
            box[1] = exc
        done.set()

    def _save_together(self, saves: list) -> None:
        save_many = getattr(self.store, "save_many", None)
        if save_many is None or len(saves) == 1:
            for call in saves:
                self._run_call(*call)
            return
        latest = {args[0].source_name: args[0] for _fn, args, _box, _done in saves}  # queue order: last is newest
        error = None
        try:
            save_many(list(latest.values()))
        except BaseException as exc:
            error = exc
        for _fn, _args, box, done in saves:
            box[1] = error
            done.set()

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
                    raise _Stopped
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
                        self.event("folder_started", current.plan.source.name, destination=current.plan.dest_name)
                elif isinstance(item, AlreadyPresent):
                    # Credited one by one: the checkpoint may pass some of them long before others.
                    for uid, size in item.found:
                        self._defer(item.task.checkpoint, _Uncredited(uid, copied=1, nbytes=size))
                    self.event("already_present", item.task.plan.source.name, messages=len(item.found))
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
        ck = task.checkpoint
        ck.pending_uid = max(ck.pending_uid, batch.max_uid)
        self.save(ck)  # durable before the APPEND: a crash now leaves a window to reconcile
        outcome = appender.append(task.plan.dest_raw, batch.messages, task.plan.keep_flag) if batch.messages else None
        if outcome is not None:
            self._record_outcome(task, batch, outcome)
        if task.split is not None:
            # Other pipelines copy other parts of this folder: advance to the common watermark
            # and leave dest_uidnext where the folder started, so a crash window covers them all.
            with self._counter_lock, task.split.lock:
                task.segment.confirmed = batch.max_uid
                self._advance(ck, task.split.watermark())
        else:
            self._advance(ck, batch.max_uid)
        # A held folder keeps its window open from before its first uncopied message.
        if task.present is None and task.split is None and not self._held(ck):
            ck.pending_uid = ck.last_uid
            uidnext = ck.dest_uidnext  # nothing appended: still where copies of UIDs > last_uid start
            if outcome and outcome.dest_uids:
                uidnext = max(outcome.dest_uids) + 1
            elif outcome and outcome.appended:
                uidnext = self._dest_uidnext(dst, task)
            if uidnext:
                ck.dest_uidnext, ck.dest_mark_uid = uidnext, ck.last_uid
        if outcome is not None and self.failed_this_run > self.options.error_budget:
            raise EngineError(
                ErrorCode.ERROR_BUDGET_EXCEEDED,
                f"more than {self.options.error_budget} messages failed",
                "destination",
            )

    def _record_outcome(self, task: FolderTask, batch: Batch, outcome) -> None:
        copied = len(outcome.appended)
        nbytes = sum(len(m.body) for m in outcome.appended)
        ck = task.checkpoint
        if outcome.failed or outcome.too_large or self._held(ck):
            # The checkpoint stops below the first message left behind (maybe inside this batch):
            # credit each message at its own UID, so those below it are counted, those above not.
            for msg in outcome.appended:
                self._defer(ck, _Uncredited(msg.uid, copied=1, nbytes=len(msg.body)))
            for msg, _reason in outcome.failed:
                self._defer(ck, _Uncredited(msg.uid, failed=1))
                self._hold(ck, msg.uid)
        else:
            self._defer(ck, _Uncredited(batch.max_uid, copied=copied, nbytes=nbytes))
        with self._counter_lock:
            self.copied_this_run += copied
            self.bytes_this_run += nbytes
            self.failed_this_run += len(outcome.failed)
            new_keywords = outcome.dropped_keywords - self.dropped_keywords
            self.dropped_keywords |= new_keywords
        if new_keywords:
            self.event("keyword_dropped", task.plan.source.name, keywords=sorted(new_keywords))
        for msg in outcome.too_large:
            self._record_skip(Skip(task, msg.uid, len(msg.body), "rejected_too_large", *header_summary(msg.body)))
        for msg, reason in outcome.failed:
            date, subject = header_summary(msg.body)
            folder = task.plan.source.name
            with self._counter_lock:
                first = (folder, msg.uid) not in self._skipped_seen
                self._skipped_seen.add((folder, msg.uid))
            if first:  # met again by a retry within this run: reported once
                self.not_copied.append(SkippedMessage(folder, msg.uid, date, subject, len(msg.body), "refused", reason))
            self.event(
                "message_failed", folder, uid=msg.uid, date=date, subject=subject, size=len(msg.body), reason=reason
            )
        if outcome.flags_dropped:
            with self._counter_lock:
                ck.flags_dropped += len(outcome.flags_dropped)
        if outcome.altered:
            self._record_altered(task, outcome.altered)

    def _record_altered(self, task: FolderTask, altered: list[tuple[Message, str]]) -> None:
        folder = task.plan.source.name
        with self._counter_lock:
            task.checkpoint.altered += len(altered)
        for msg, reason in altered:
            date, subject = header_summary(msg.body)
            self.altered.append(SkippedMessage(folder, msg.uid, date, subject, len(msg.body), reason))
            self.event(
                "message_altered", folder, uid=msg.uid, date=date, subject=subject, size=len(msg.body), reason=reason
            )

    def _learn_flags(self, dst: Session, plan: FolderPlan) -> None:
        """Which flags the destination folder stores (its PERMANENTFLAGS, asked on this pipeline's
        own connection while its reader fetches the first messages)."""
        keep = self._keep_flags.get(plan.dest_name)
        if keep is None:
            keep = _flag_filter(dst.permanent_flags(plan.dest_raw))
            self._keep_flags[plan.dest_name] = keep
        plan.keep_flag = keep

    def _dest_uidnext(self, dst: Session, task: FolderTask) -> int | None:
        statuses = dst.status([task.plan.dest_raw], b"UIDNEXT")
        return statuses.get(task.plan.dest_raw, {}).get("UIDNEXT")

    def _record_skip(self, item: Skip) -> None:
        folder = item.task.plan.source.name
        self._defer(item.task.checkpoint, _Uncredited(item.uid, skipped=1))
        self._hold(item.task.checkpoint, item.uid)
        with self._counter_lock:
            if (folder, item.uid) in self._skipped_seen:
                return  # met again by a retry within this run: reported once
            self._skipped_seen.add((folder, item.uid))
        self.not_copied.append(SkippedMessage(folder, item.uid, item.date, item.subject, item.size, item.reason))
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
        ck = task.checkpoint
        if task.split is not None:
            with self._counter_lock, task.split.lock:
                task.segment.done = True
                self._advance(ck, task.split.watermark())
                last_piece = all(seg.done for seg in task.split.segments)
            if not last_piece:
                self.save(ck)
                return
        self._advance(ck, task.source_uidnext - 1)
        ck.source_uidnext = task.source_uidnext
        if self._held(ck):
            # Messages were left behind: the checkpoint stays below the first of them, and the
            # window above it stays open (pending_uid > last_uid), so the next run reconciles
            # what was copied after it and tries the rest again.
            ck.pending_uid = max(ck.pending_uid, task.source_uidnext - 1)
        else:
            ck.pending_uid = ck.last_uid
            uidnext = ck.dest_uidnext
            if task.present is not None or task.split is not None:
                uidnext = self._dest_uidnext(dst, task)
            if uidnext:
                ck.dest_uidnext, ck.dest_mark_uid = uidnext, ck.last_uid
        ck.done = True
        self.save(ck)
        with self._counter_lock:
            past = self._past_checkpoint(ck)
        self.event(
            "folder_done",
            task.plan.source.name,
            copied=ck.messages_copied + past.get("copied", 0),
            skipped=ck.messages_skipped + past.get("skipped", 0),
            failed=ck.messages_failed + past.get("failed", 0),
        )


class _PairOpener:
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


def _same_folder(ck: FolderCheckpoint, dest_status: dict) -> bool:
    """Whether the destination folder is still the one the checkpoint knows: same UIDVALIDITY,
    and a UIDNEXT that has not gone back (it never does in one folder; a new server's folder
    created in the same second can share a time-based UIDVALIDITY)."""
    if ck.dest_uidvalidity is None or ck.dest_uidvalidity != dest_status.get("UIDVALIDITY"):
        return False
    uidnext = dest_status.get("UIDNEXT")
    return ck.dest_uidnext is None or uidnext is None or uidnext >= ck.dest_uidnext


def _flag_filter(permanent_flags: list[str] | None) -> Callable[[bytes], bool]:
    """Which flags the destination folder can store (PERMANENTFLAGS; \\* = any keyword)."""
    if permanent_flags is None or "\\*" in permanent_flags:
        return lambda flag: True
    allowed = {f.lower() for f in permanent_flags}

    def keep(flag: bytes) -> bool:
        text = flag.decode("ascii", "replace").lower()
        return text.startswith("\\") or text in allowed

    return keep
