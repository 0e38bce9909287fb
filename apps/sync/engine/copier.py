"""copy_mailbox(): one copy run — retries, reporting, the result.

The run is split by job: planning.py (list, map, create, STATUS, where each folder starts: the
pure reconcile.py decision), pairs.py (the reader/writer pairs), ledger.py (what is copied and
what each checkpoint may claim), calls.py (callbacks handed to the caller's thread)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .append import AppendDesync, appends_wait_round_trips
from .calls import CallerThread
from .checkpoints import CheckpointStore
from .connection import LOGOUT_SECONDS, Session
from .errors import Cancelled, EngineError, ErrorCode, TransientError
from .ledger import Ledger
from .model import CopyOptions, CopyResult, Counters, Endpoint, Event, FolderCheckpoint, Progress
from .opening import connect
from .pairs import PairOpener, PairRuns
from .pipeline import RateLimiter
from .planning import FolderPlanning
from .stored import RewriteWatch

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


class _CopyRun(FolderPlanning, PairRuns):
    """One copy_mailbox() call: the attempts (run, _attempt), reporting, connections; planning
    (FolderPlanning) and the pairs (PairRuns) are its two halves, in their own modules."""

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
        self.totals = Counters()  # what planning found: folders, messages, bytes
        self.ledger = Ledger()  # counters, what the checkpoints may claim, what was left behind
        self.calls = CallerThread(store)  # callbacks from the pairs' threads, run on this one
        self.renamed: dict[str, str] = {}
        self.refused_folders: dict[str, str] = {}  # source folder -> why it cannot be copied
        # All Mail's archived messages: source folder, destination folder, how many there are.
        self.archive: dict = {}
        self._rewrites = RewriteWatch()  # what the destination does with unusual messages
        self.current_folder: str | None = None
        self._last_progress = 0.0
        self._sessions: list[Session] = []
        self._connected_once = False
        # Set once a destination answered a MULTIAPPEND for fewer messages than sent: from then
        # on (retries included) append one message at a time with synchronizing literals.
        self._careful_appends = False
        self._append_round_trips = False  # set once connected: see appends_wait_round_trips
        self._stop = threading.Event()
        self._extra_pairs: PairOpener | None = None
        self._keep_flags: dict[str, Callable[[bytes], bool]] = {}
        self._source_limiter = RateLimiter(source.max_messages_per_second, source.max_bytes_per_second)
        self._dest_limiter = RateLimiter(destination.max_messages_per_second, destination.max_bytes_per_second)

    # ----------------------------------------------------------------- reporting
    def event(self, kind: str, folder: str | None = None, **detail) -> None:
        if self._on_event is not None and self.calls.on_worker():
            self.calls.call(lambda: self.event(kind, folder, **detail))
            return
        if self._on_event is not None:
            try:
                self._on_event(Event(kind, folder, detail))
            except Exception:
                log.exception("on_event callback failed")

    def progress(self, force: bool = False) -> None:
        if self._on_progress is None or self.calls.on_worker():
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
        return self.ledger.snapshot(self._active_checkpoints(), self.totals, self.current_folder)

    def _active_checkpoints(self) -> list[FolderCheckpoint]:
        return [self.checkpoints[name] for name in self.active if name in self.checkpoints]

    def save(self, checkpoint: FolderCheckpoint) -> None:
        self.calls.call(self.store.save, self.ledger.state_to_save(checkpoint))

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
                before = self.ledger.handled_this_run()
                try:
                    self._attempt()
                    break
                except TransientError as exc:
                    self._close_all()
                    if isinstance(exc, AppendDesync):
                        self._careful_appends = True
                    if not self._connected_once:
                        raise  # a server that cannot be reached at all: report it now
                    if self.ledger.handled_this_run() > before:
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
            if self.ledger.failed_this_run or self.ledger.not_copied or self.refused_folders:
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
            "summary", None, not_copied=len(self.ledger.not_copied), flags_dropped=inexact["flags_dropped"],
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
            not_copied=self.ledger.not_copied,
            renamed_folders=self.renamed,
            dropped_keywords=sorted(self.ledger.dropped_keywords),
            flags_dropped=inexact["flags_dropped"],
            altered=self.ledger.altered,
            altered_total=inexact["altered"],
            archived=archived,
            copied_this_run=self.ledger.copied_this_run,
            bytes_this_run=self.ledger.bytes_this_run,
        )

    def _inexact(self) -> dict[str, int]:
        return self.ledger.inexact(self._active_checkpoints())

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
        self._append_round_trips = appends_wait_round_trips(dst)
        # A first run will want its extra connections: open them while the folders are planned.
        if self.options.parallelism > 1 and not (self.checkpoints and all(c.done for c in self.checkpoints.values())):
            self._extra_pairs = PairOpener(self.source, self.destination, self._parallelism() - 1)

        tasks = self._plan(src, dst)
        self.progress(force=True)
        if tasks:
            tasks = self._split_big_folders(src, tasks)
            self._pipeline(src, dst, tasks)
        self.check_cancel()

    def _parallelism(self, folders: int | None = None) -> int:
        """Pairs to run: the options' figure for this destination, capped by the endpoints'
        connection limits and by `folders` (the pieces of work there are to share)."""
        if self._append_round_trips:
            wanted = self.options.parallelism_round_trip_appends
        else:
            wanted = self.options.parallelism
        n = max(1, wanted if folders is None else min(wanted, folders))
        for endpoint in (self.source, self.destination):
            if endpoint.max_connections:
                n = min(n, endpoint.max_connections)
        return n
