"""The hand-off of callbacks to the caller's thread.

Worker threads (the pair runners) never call the caller's callbacks (`on_event`, `on_progress`,
`should_cancel`, the checkpoint store) themselves: `CallerThread.call()` queues the call and waits,
and the thread that called `copy_mailbox()` runs it in `serve()`, so the callbacks always run on
that thread, never concurrently.  Checkpoint saves waiting together are written in one
`save_many()` (a group commit: one fsync for every writer waiting to APPEND)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable


class CallerThread:
    def __init__(self, store) -> None:
        self._save = store.save  # the checkpoint store's save(): its calls are grouped
        self._save_many: Callable | None = getattr(store, "save_many", None)
        self._calls: queue.Queue = queue.Queue()
        self.workers: set[int | None] = set()  # thread idents whose callbacks are handed over

    def on_worker(self) -> bool:
        return threading.get_ident() in self.workers

    def forget_workers(self) -> None:
        """No thread hands its callbacks over (before the pairs start, and once they ended)."""
        self.workers = set()

    def add_worker(self) -> None:
        """From now on, this thread's callbacks go through call()."""
        self.workers.add(threading.get_ident())

    def wake(self) -> None:
        """Make serve() return at once (a worker ended, a connection opened)."""
        self._calls.put(None)

    def call(self, fn, *args):
        """fn(*args), run on the caller's thread when called from a worker; its result or error."""
        if not self.on_worker():
            return fn(*args)
        done = threading.Event()
        box: list = [None, None]
        self._calls.put((fn, args, box, done))
        done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def serve(self, timeout: float) -> None:
        """Run the calls the workers handed over, waiting up to `timeout` for the first."""
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
            saves = [call for call in calls if call[0] == self._save]
            for fn, args, box, done in calls:
                if fn != self._save:
                    _run_call(fn, args, box, done)
            if saves:
                self._save_together(saves)

    def _save_together(self, saves: list) -> None:
        if self._save_many is None or len(saves) == 1:
            for call in saves:
                _run_call(*call)
            return
        latest = {args[0].source_name: args[0] for _fn, args, _box, _done in saves}  # queue order: last is newest
        error = None
        try:
            self._save_many(list(latest.values()))
        except BaseException as exc:
            error = exc
        for _fn, _args, box, done in saves:
            box[1] = error
            done.set()


def _run_call(fn, args, box, done) -> None:
    try:
        box[0] = fn(*args)
    except BaseException as exc:
        box[1] = exc
    done.set()
