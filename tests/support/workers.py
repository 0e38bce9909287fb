"""Real RQ worker processes for fault tests: start, watch, kill -9, measure CPU."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
from django.conf import settings

from tests.conftest import REPO, subprocess_env

T = TypeVar("T")


def start_worker(*, log: Path | None = None, burst: bool = True, **env: str) -> subprocess.Popen:
    """`manage.py rqworker <copy queue>` with the test database and Redis, plus `env`."""
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "rqworker", *(["--burst"] if burst else []), settings.COPY_QUEUE],
            env={**subprocess_env(), **env},
            stdout=out,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            cwd=REPO,
        )
    finally:
        if log:
            out.close()


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting")


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(worker: subprocess.Popen) -> int:
    """SIGKILL the worker and the work horse it forked (RQ gives the horse its own session),
    all at once, as a machine losing power would. Returns how many processes were killed."""
    processes = process_tree(worker.pid)
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    worker.wait(timeout=10)
    psutil.wait_procs(processes, timeout=10)
    return len(processes)


class CpuMeter:
    """CPU seconds used by a process and its children (live ones, sampled repeatedly so a horse
    that exits between samples still counts with its last reading)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._seen: dict[int, float] = {}

    def sample(self) -> float:
        for process in process_tree(self.pid):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            self._seen[process.pid] = times.user + times.system
        return sum(self._seen.values())
