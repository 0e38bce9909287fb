"""A private, production-like IMAPCopy for the load benchmarks: its own Redis, its own database,
gunicorn as the README runs it in production, and `manage.py rqworker` processes.

Nothing here touches the Redis on 6379 or another database: the Redis gets a free port and a
temporary directory, a PostgreSQL database is created under its own name and dropped at the end.
Every process started here runs in its own session and is stopped by its pid.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from portal.localredis import free_port, start_redis  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
GUNICORN = str(Path(PYTHON).parent / "gunicorn")


def production_env(work: Path, *, database_url: str, redis_url: str, site_port: int, **extra: str) -> dict[str, str]:
    """DEBUG off with generated secrets, as in the README's production example, but on plain HTTP
    on loopback: the HTTPS-only cookies, redirect and HSTS are a TLS proxy's business and are off."""
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PYTHONUNBUFFERED": "1",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
        "SITE_URL": f"http://127.0.0.1:{site_port}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "IMAPCOPY_VAR_DIR": str(work / "var"),
        "STATIC_ROOT": str(work / "static"),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(work / "sent-mail"),
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        # Every customer of the benchmark comes from 127.0.0.1.
        "IMAPCOPY_RATE_LIMIT_FACTOR": "1000000",
        **extra,
    }
    return env


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYTHON, "manage.py", *args], env=env, cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def django_in_process(env: dict[str, str]) -> None:
    """Configure Django in this process with the benchmark's settings (to read the results)."""
    os.environ.update(env)
    import django

    django.setup()


class PrivateDatabase:
    """sqlite:///PATH as given (a fresh file), or a new PostgreSQL database created and dropped here."""

    def __init__(self, url: str | None, work: Path) -> None:
        self.url = url or f"sqlite:///{work / 'load.sqlite3'}"
        parts = urlsplit(self.url)
        self.postgres = parts.scheme in ("postgres", "postgresql", "pgsql")
        self.name = parts.path.lstrip("/")
        if self.postgres and not self.name:
            raise SystemExit(
                "--database-url: name a database to create, e.g. postgres://postgres@127.0.0.1/imapcopy_load"
            )
        self._admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        self._created = False

    def _admin(self, sql: str, *params) -> list:
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def create(self) -> None:
        """Create the PostgreSQL database; refuse a name that exists (it may hold someone's data)."""
        if not self.postgres:
            if Path(urlsplit(self.url).path).exists():
                raise SystemExit(f"{self.url} already exists: name a new file")
            return
        if self._admin("SELECT 1 FROM pg_database WHERE datname = %s", self.name):
            raise SystemExit(
                f"database {self.name!r} already exists: name a new one (the benchmark creates it and drops it)"
            )
        self._admin(f'CREATE DATABASE "{self.name}"')
        self._created = True

    def drop(self) -> None:
        """Drop the database, only if this run created it."""
        if self.postgres and self._created:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self._created = False

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.postgres else "SQLite"


class Processes:
    """Children in their own sessions; stopped in reverse order, by pid only."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen, list[signal.Signals]]] = []

    def start(self, name: str, cmd: list[str], env: dict, log: Path, stop_signals=(signal.SIGTERM,)):
        handle = log.open("ab")
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.children.append((name, proc, list(stop_signals)))
        return proc

    def stop_all(self) -> None:
        for _name, proc, signals in reversed(self.children):
            for signum in signals:
                if proc.poll() is not None:
                    break
                proc.send_signal(signum)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.children.clear()


def start_private_redis(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = start_redis(work / "redis", port, persist=False)
    return proc, f"redis://127.0.0.1:{port}/0"


def stop_redis(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tear_down(procs: Processes, database: PrivateDatabase, redis: subprocess.Popen | None, work: Path,
              keep: bool) -> None:  # fmt: skip
    """Stop what a benchmark started and remove what it created (its logs stay with --keep)."""
    procs.stop_all()
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: S110 - Django may not be set up yet
        pass
    database.drop()
    if redis is not None:
        stop_redis(redis)
    if keep:
        print(f"logs and database in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def start_gunicorn(procs: Processes, env: dict, port: int, workers: int, log: Path, extra: list[str] = ()):
    """The README's production command (`gunicorn portal.wsgi -b ...`), with `workers` processes."""
    # Its own control socket: gunicorn's default (~/.gunicorn/gunicorn.ctl) is shared by every instance.
    control = ["--control-socket", str(log.parent / "gunicorn.ctl")]
    cmd = [GUNICORN, "portal.wsgi", "-b", f"127.0.0.1:{port}", "--workers", str(workers), *control, *extra]
    proc = procs.start("gunicorn", cmd, env, log)
    deadline = time.monotonic() + 60
    url = f"http://127.0.0.1:{port}/"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited; see {log}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on {url}; see {log}")


def start_workers(procs: Processes, env: dict, count: int, logdir: Path) -> list[subprocess.Popen]:
    """`manage.py rqworker <copy queue> <check queue>`, as runportal and the README start them."""
    # The names carry the installation's name (IMAPCOPY_INSTANCE): ask the settings for them.
    names = manage(
        env, "shell", "-v0", "-c", "from django.conf import settings as s; print(s.COPY_QUEUE, s.CHECK_QUEUE)"
    )
    cmd = [PYTHON, "manage.py", "rqworker", *names.stdout.split()]
    stop = (signal.SIGINT, signal.SIGINT)  # warm, then cold shutdown, as runportal does
    return [procs.start(f"rqworker-{i}", cmd, env, logdir / f"rqworker-{i}.log", stop) for i in range(count)]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine_load() -> str:
    """Load average and the busiest other processes, to print beside the figures."""
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"] * 3
    return f"{os.cpu_count()} CPUs, load average {' '.join(load)}"
