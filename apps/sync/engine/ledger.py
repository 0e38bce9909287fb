"""The crediting ledger: what this run copied, left behind or found, and what each folder's
checkpoint may claim.

A folder's checkpoint counts only the work up to its ``last_uid``.  Work done past it (a batch
confirmed while another pipeline's part of the same folder lags, messages below one left behind)
waits in the ledger and is credited when the checkpoint reaches it: a resumed run meets that work
again and counts it then, so counting it at once would count it twice.  A message left behind
*holds* its folder's checkpoint just below it, so that the next run tries it again."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .model import Counters, FolderCheckpoint, Progress, SkippedMessage


@dataclass
class Uncredited:
    """Work done past a folder's checkpoint (``last_uid``).  It is credited to the folder's counters
    only once the checkpoint covers ``uid``: a resumed run meets that work again (reconciliation
    recognises the messages) and counts it then, so counting it now as well would count it twice."""

    uid: int
    copied: int = 0
    nbytes: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, other: Uncredited, sign: int = 1) -> None:
        self.copied += sign * other.copied
        self.nbytes += sign * other.nbytes
        self.skipped += sign * other.skipped
        self.failed += sign * other.failed


class PastCheckpoint:
    """One folder's uncredited work, by UID (a heap), with running totals: crediting and reporting
    stay cheap however much a folder held below a message left behind accumulates."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Uncredited]] = []
        self._order = itertools.count()  # ties on UID: never compare the work items themselves
        self.total = Uncredited(0)

    def add(self, work: Uncredited) -> None:
        heapq.heappush(self._heap, (work.uid, next(self._order), work))
        self.total.add(work)

    def pop_upto(self, uid: int) -> Iterator[Uncredited]:
        while self._heap and self._heap[0][0] <= uid:
            work = heapq.heappop(self._heap)[2]
            self.total.add(work, -1)
            yield work

    def as_dict(self) -> dict[str, int]:
        if not self._heap:
            return {}
        t = self.total
        return {"copied": t.copied, "bytes": t.nbytes, "skipped": t.skipped, "failed": t.failed}


class Ledger:
    """Every counter of a run, behind one lock (`lock`, reentrant): the checkpoints' counters and
    ``last_uid``, the uncredited work, the holds, and this run's own figures and lists."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._uncredited: dict[str, PastCheckpoint] = {}
        # Folder -> highest UID its checkpoint may reach in this run: just below the first message
        # that was not copied (refused, too large), so that the next run tries that one again.
        self._holds: dict[str, int] = {}
        self._skipped_seen: set[tuple[str, int]] = set()
        # This run only.
        self.copied_this_run = 0
        self.bytes_this_run = 0
        self.failed_this_run = 0
        self.not_copied: list[SkippedMessage] = []
        self.altered: list[SkippedMessage] = []
        self.dropped_keywords: set[str] = set()

    def handled_this_run(self) -> int:
        """Messages this run is done with (copied, left behind, failed): progress between retries."""
        return self.copied_this_run + len(self.not_copied) + self.failed_this_run

    def defer(self, checkpoint: FolderCheckpoint, work: Uncredited) -> None:
        with self.lock:
            self._uncredited.setdefault(checkpoint.source_name, PastCheckpoint()).add(work)

    def hold(self, checkpoint: FolderCheckpoint, uid: int) -> None:
        with self.lock:
            self._holds[checkpoint.source_name] = min(self._holds.get(checkpoint.source_name, uid), uid - 1)

    def held(self, checkpoint: FolderCheckpoint) -> bool:
        with self.lock:
            return checkpoint.source_name in self._holds

    def forget(self, checkpoint: FolderCheckpoint) -> None:
        """A folder starting again: work past its checkpoint from an earlier attempt of this run is
        met again (reconciliation or a fresh copy) and counted then."""
        with self.lock:
            self._uncredited.pop(checkpoint.source_name, None)
            self._holds.pop(checkpoint.source_name, None)

    def first_report(self, folder: str, uid: int) -> bool:
        """Whether a message left behind is reported for the first time (a retry within this run
        meets it again: reported once)."""
        with self.lock:
            first = (folder, uid) not in self._skipped_seen
            self._skipped_seen.add((folder, uid))
            return first

    def advance(self, checkpoint: FolderCheckpoint, last_uid: int) -> None:
        """Move the checkpoint to last_uid and credit the work it now covers, atomically, so that a
        saved checkpoint never covers work it does not count (or counts work it does not cover)."""
        with self.lock:
            checkpoint.last_uid = max(
                checkpoint.last_uid, min(last_uid, self._holds.get(checkpoint.source_name, last_uid))
            )
            waiting = self._uncredited.get(checkpoint.source_name)
            if waiting is None:
                return
            for work in waiting.pop_upto(checkpoint.last_uid):
                checkpoint.messages_copied += work.copied
                checkpoint.bytes_copied += work.nbytes
                checkpoint.messages_skipped += work.skipped
                checkpoint.messages_failed += work.failed

    def past_checkpoint(self, checkpoint: FolderCheckpoint) -> dict[str, int]:
        with self.lock:
            waiting = self._uncredited.get(checkpoint.source_name)
            return waiting.as_dict() if waiting else {}

    def state_to_save(self, checkpoint: FolderCheckpoint) -> FolderCheckpoint:
        """A copy of the checkpoint (its worker keeps changing it while the store writes this)."""
        with self.lock:
            state = dataclasses.replace(checkpoint)
            state.past_checkpoint = self.past_checkpoint(checkpoint)
            return state

    def snapshot(self, checkpoints: list[FolderCheckpoint], totals: Counters, current_folder: str | None) -> Progress:
        """The job's figures: the checkpoints' counters plus the work past them (`totals`: what
        planning found, folders_total, messages_total and bytes_total)."""
        with self.lock:
            pending = [self._uncredited[c.source_name].total for c in checkpoints if c.source_name in self._uncredited]
            return Progress(
                folders_total=totals.folders_total,
                folders_done=sum(1 for c in checkpoints if c.done),
                messages_total=totals.messages_total,
                messages_copied=sum(c.messages_copied for c in checkpoints) + sum(u.copied for u in pending),
                messages_skipped=sum(c.messages_skipped for c in checkpoints) + sum(u.skipped for u in pending),
                messages_failed=sum(c.messages_failed for c in checkpoints) + sum(u.failed for u in pending),
                bytes_total=totals.bytes_total,
                bytes_copied=sum(c.bytes_copied for c in checkpoints) + sum(u.nbytes for u in pending),
                current_folder=current_folder,
            )

    def inexact(self, checkpoints: list[FolderCheckpoint]) -> dict[str, int]:
        with self.lock:
            return {
                "flags_dropped": sum(c.flags_dropped for c in checkpoints),
                "altered": sum(c.altered for c in checkpoints),
            }
