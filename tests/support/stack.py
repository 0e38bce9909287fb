"""The production stack for tests that need it whole: gunicorn (DEBUG off, generated secrets) on a
free loopback port, a private Redis and a fresh SQLite database, as bench/portal_harness.py runs
it for the load benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from portal.localredis import free_port


@dataclass
class Stack:
    port: int
    env: dict[str, str]
    processes: object  # bench.portal_harness.Processes: start more (workers) with .start()


@contextmanager
def gunicorn_portal(work: Path, *, web_workers: int, **settings: str) -> Iterator[Stack]:
    from bench import portal_harness as harness

    processes = harness.Processes()
    redis, redis_url = harness.start_private_redis(work)
    port = free_port()
    env = harness.production_env(
        work, database_url=f"sqlite:///{work / 'db.sqlite3'}", redis_url=redis_url, site_port=port, **settings
    )
    try:
        harness.manage(env, "migrate", "-v0")
        harness.manage(env, "collectstatic", "--noinput", "-v0")
        harness.start_gunicorn(processes, env, port, web_workers, work / "gunicorn.log")
        yield Stack(port, env, processes)
    finally:
        processes.stop_all()
        harness.stop_redis(redis)
