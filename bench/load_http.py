#!/usr/bin/env python3
"""The portal's pages under concurrent load: wrk against gunicorn, as the README runs it in production.

Starts a private Redis, a database (fresh SQLite file, or a PostgreSQL database created under the
name given and dropped at the end) holding --jobs ended jobs, and `gunicorn portal.wsgi` with
DEBUG off, then runs wrk (Debian's `wrk`) for --duration seconds against each endpoint:

  status-lookup   POST /status/ address=…      the public lookup (CSRF), a random known address each time
  status-page     GET /status/<token>/         a job's private status page
  status-progress GET /status/<token>/progress/ the JSON the status page polls
  source-form     GET /                        the first step of the customer form
  source-invalid  POST /                       the same form posted with CSRF and a missing login
                                               (re-rendered with errors; no IMAP connection test)

and prints requests/s, latency p50/p95/p99 and errors (non-2xx/3xx answers, socket errors).

Then the status endpoints again while --attackers clients (default 2, each its own address behind a
trusted proxy) hammer the connection test at a silent port (a TCP listener that never answers, as
a filtered port or a hung server): the tests run on the checks queue (2 check workers, as
`runportal` starts them), so the pages should keep their usual latency; the attackers' answers
(302 queued, 429 refused: too many tests in flight) are counted.
The portal's rate limits are raised (IMAPCOPY_RATE_LIMIT_FACTOR) since every request comes from
127.0.0.1; wrk runs on the same machine and takes CPU from gunicorn.

    apt-get install -y wrk
    .venv/bin/python bench/load_http.py                    # 2 gunicorn workers, 32 connections, 30 s each
    .venv/bin/python bench/load_http.py --database-url postgres://postgres@127.0.0.1:5432/imapcopy_load_http
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import portal_harness as harness

# Percentiles and error counts as one JSON line; wrk's own --latency output has no p95.
DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
"""

LOOKUP = """
local n = {jobs}
local headers = {{
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Cookie"] = "csrftoken={cookie}",
  ["Referer"] = "{base}/status/",
}}
request = function()
  local body = "csrfmiddlewaretoken={token}&address=customer" .. math.random(0, n - 1) .. "%40example.org"
  return wrk.format("POST", "/status/", headers, body)
end
"""

POST_INVALID = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "csrftoken={cookie}"
wrk.headers["Referer"] = "{base}/"
wrk.body = "csrfmiddlewaretoken={token}&provider={provider}&login=&password=secret&host=127.0.0.1&use_ssl=on"
"""

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
OTHER = re.compile(r'<option value="(\d+)"[^>]*>\s*Other\s*</option>')


def seed(jobs: int) -> tuple[str, str]:
    """--jobs ended jobs with distinct source addresses; returns (one status path, one address)."""
    from django.utils import timezone

    from apps.mailboxes.services import account_create
    from apps.providers.models import Provider, Security
    from apps.sync.links import status_url
    from apps.sync.models import JobStatus, SyncJob

    other = Provider.objects.get(slug="other")
    source, destination = (
        account_create(
            provider=other, email_address=f"{role}@example.org", login=role, host="imap.example.org",
            port=993, security=Security.TLS, password="not-used",  # noqa: S106 - never connected to
        )
        for role in ("source", "destination")
    )  # fmt: skip
    now = timezone.now()
    SyncJob.objects.bulk_create(
        [
            SyncJob(
                source=source, destination=destination, source_address=f"customer{i}@example.org",
                status=JobStatus.FINISHED, started_at=now, finished_at=now, folders_total=3, folders_done=3,
                messages_total=1234, messages_copied=1234, bytes_total=5_000_000, bytes_copied=5_000_000,
            )
            for i in range(jobs)
        ],
        batch_size=1000,
    )  # fmt: skip
    job = SyncJob.objects.get(source_address="customer0@example.org")
    return status_url(job), "customer0@example.org"


class SilentServer:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def attack(port: int, silent_port: int, client_ip: str, stop: threading.Event, outcomes: collections.Counter):
    """One client posting the connection test at the silent port, over and over, each time from a
    fresh session (as a script would), as fast as the portal answers."""
    while not stop.is_set():
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            headers = {"X-Forwarded-For": client_ip}
            connection.request("GET", "/", headers=headers)
            response = connection.getresponse()
            page = response.read().decode()
            cookie = next(v.split(";", 1)[0] for k, v in response.getheaders() if k.lower() == "set-cookie"
                          and v.startswith("csrftoken="))  # fmt: skip
            body = urllib.parse.urlencode({
                "csrfmiddlewaretoken": CSRF.search(page).group(1), "provider": OTHER.search(page).group(1),
                "login": "victim@example.org", "password": "guess", "host": "127.0.0.1",
                "port": str(silent_port), "security": "none",
            })  # fmt: skip
            headers.update({"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded",
                            "Referer": f"http://127.0.0.1:{port}/"})  # fmt: skip
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcomes[response.status] += 1
            connection.close()
        except (OSError, StopIteration, AttributeError):
            outcomes["error"] += 1
            time.sleep(0.1)


def run_wrk(url: str, script: str, work: Path, name: str, args) -> dict:
    path = work / f"{name}.lua"
    path.write_text(script + DONE)
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
           "-s", str(path), url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "endpoint": name,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p95_ms": round(raw["p95_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "non_2xx_3xx": raw["status"],
        "socket_errors": errors,
        "load_after": harness.machine_load(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=30, help="seconds of load per endpoint (default 30)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    ap.add_argument("--jobs", type=int, default=10_000, help="ended jobs in the database (default 10,000)")
    ap.add_argument("--database-url", help="postgres://user@host:port/NEWDB (created and dropped) or sqlite:///path")
    ap.add_argument("--only", help="comma-separated endpoint names")
    ap.add_argument("--attackers", type=int, default=2, help="clients hammering the connection test (0: none)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="imapcopy-load-http-"))
    database = harness.PrivateDatabase(args.database_url, work)
    procs = harness.Processes()
    redis = None
    results = []
    try:
        redis, redis_url = harness.start_private_redis(work)
        database.create()
        port = harness.free_port()
        env = harness.production_env(
            work, database_url=database.url, redis_url=redis_url, site_port=port,
            # The attackers: each its own address behind our "proxy", allowed to reach the silent
            # port on loopback; their connection tests end after 15 s, as in production.
            TRUSTED_PROXIES="127.0.0.1", IMAPCOPY_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8", IMAPCOPY_IMAP_PORTS="any",
            IMAPCOPY_ALLOW_PLAINTEXT_IMAP="true",
        )  # fmt: skip
        harness.manage(env, "migrate", "-v0")
        harness.manage(env, "collectstatic", "--noinput", "-v0")
        harness.django_in_process(env)
        status_path, _address = seed(args.jobs)
        from django.db import connections

        connections.close_all()
        harness.start_gunicorn(procs, env, port, args.web_workers, work / "gunicorn.log")
        base = f"http://127.0.0.1:{port}"

        with urllib.request.urlopen(base + "/", timeout=30) as response:  # noqa: S310 - our loopback server
            page = response.read().decode()
            cookie = next(
                v.split(";", 1)[0].split("=", 1)[1]
                for k, v in response.getheaders()
                if k.lower() == "set-cookie" and v.startswith("csrftoken=")
            )
        token, provider = CSRF.search(page).group(1), OTHER.search(page).group(1)
        post_invalid = POST_INVALID.format(cookie=cookie, token=token, provider=provider, base=base)
        endpoints = {
            "status-lookup": (base + "/", LOOKUP.format(jobs=args.jobs, cookie=cookie, token=token, base=base)),
            "status-page": (base + status_path, ""),
            "status-progress": (base + status_path + "progress/", ""),
            "source-form": (base + "/", ""),
            "source-invalid": (base + "/", post_invalid),
        }  # fmt: skip
        if args.only:
            endpoints = {k: v for k, v in endpoints.items() if k in args.only.split(",")}
        # Warm up every gunicorn worker (imports, templates, translations) before measuring.
        for url, _script in endpoints.values():
            for _ in range(4 * args.web_workers):
                urllib.request.urlopen(url, timeout=30).read()  # noqa: S310 - our own loopback server
        print(f"machine: {harness.machine_load()}; gunicorn -w {args.web_workers} on {base}, {database.label} "
              f"with {args.jobs} jobs; wrk -t{args.threads} -c{args.connections} -d{args.duration}s",
              flush=True)  # fmt: skip
        print(f"{'endpoint':<16} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'non-2xx/3xx':>11} {'sock err':>8}", flush=True)  # fmt: skip
        for name, (url, script) in endpoints.items():
            time.sleep(2)
            r = run_wrk(url, script, work, name, args)
            results.append(r)
            print(f"{name:<16} {r['rps']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} "
                  f"{r['non_2xx_3xx']:>11} {r['socket_errors']:>8}   ({r['load_after']})", flush=True)  # fmt: skip
        if args.attackers:
            silent = SilentServer()
            names = harness.manage(
                env, "shell", "-v0", "-c", "from django.conf import settings as s; print(s.CHECK_QUEUE)"
            )
            for number in range(2):
                cmd = [harness.PYTHON, "manage.py", "rqworker", names.stdout.strip()]
                procs.start(f"checks-{number}", cmd, env, work / f"checks-{number}.log", (signal.SIGINT, signal.SIGINT))
            stop, outcomes = threading.Event(), collections.Counter()
            attackers = [
                threading.Thread(target=attack, args=(port, silent.port, f"203.0.113.{n + 1}", stop, outcomes))
                for n in range(args.attackers)
            ]
            for thread in attackers:
                thread.start()
            time.sleep(5)  # the checks workers are busy with the silent port by now
            try:
                for name in ("status-page", "status-progress", "status-lookup", "source-form"):
                    if name not in endpoints:
                        continue
                    url, script = endpoints[name]
                    r = run_wrk(url, script, work, f"{name}+attack", args)
                    results.append(r)
                    print(f"{r['endpoint']:<16} {r['rps']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['p99_ms']:>8} "
                          f"{r['max_ms']:>8} {r['non_2xx_3xx']:>11} {r['socket_errors']:>8}   ({r['load_after']})",
                          flush=True)  # fmt: skip
            finally:
                stop.set()
                for thread in attackers:
                    thread.join(timeout=90)
                silent.close()
            held = len(silent.held)
            print(
                f"attackers: {args.attackers} clients posted {sum(outcomes.values())} connection tests to a silent "
                f"port: {dict(outcomes)} (302 queued, 429 refused); {held} connections reached the silent port"
            )
        print(json.dumps(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        errors = (work / "gunicorn.log").read_text().count("Traceback")
        if errors:
            print(f"gunicorn log has {errors} tracebacks: {work / 'gunicorn.log'}")
        return 0 if all(r["non_2xx_3xx"] == 0 and r["socket_errors"] == 0 for r in results) and not errors else 1
    finally:
        harness.tear_down(procs, database, redis, work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
