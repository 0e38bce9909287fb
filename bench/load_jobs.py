#!/usr/bin/env python3
"""Many customers at once: N small mailboxes submitted through the running portal over HTTP,
copied by W `manage.py rqworker` processes; prints whether every job ran exactly once and how
long jobs waited and ran.

Starts, all private and on free loopback ports: two Dovecot servers (source and destination,
one account per customer on each), a Redis, a database (a fresh SQLite file, or a PostgreSQL
database created under the name given and dropped at the end), gunicorn with DEBUG off as the
README runs it in production, and the workers. Each simulated customer has its own cookie
session and goes through the real form: GET the source step, POST it (the live connection test
runs in the web process), the same for the destination, then Synchronize; customers run
concurrently from threads. Then it waits for every job to end and checks each one: finished,
claimed once (attempts == 1, one pair of "connected" events, no recovery), and the destination
holds exactly the source's messages (bytes, flags, INTERNALDATE, per folder).

    .venv/bin/python bench/load_jobs.py                                   # 200 customers, SQLite
    .venv/bin/python bench/load_jobs.py --database-url postgres://postgres@127.0.0.1:5432/imapcopy_load
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import portal_harness as harness

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile, User

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
OTHER = re.compile(r'<option value="(\d+)"[^>]*>\s*Other\s*</option>')
EXTRA_FOLDERS = [("Sent",), ("Archive",), ("Projects", "Alpha")]


@dataclass
class Customer:
    number: int
    source: User
    destination: User
    folders: list[tuple[str, ...]]
    messages: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    status_url: str = ""
    error: str = ""


# ----------------------------------------------------------------------------- mailboxes
def fill_source(server: DovecotServer, customer: Customer, min_messages: int, max_messages: int) -> None:
    rng = random.Random(customer.number)
    count = rng.randint(min_messages, max_messages)
    mails = []
    for i in range(count):
        folder = customer.folders[i % len(customer.folders)]
        flags = tuple(f for f, p in (("\\Seen", 0.6), ("\\Flagged", 0.1), ("$Label1", 0.1)) if rng.random() < p)
        date = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(150_000_000))
        mails.append(mail.Mail(folder, mail.make_message(rng, i, rng.randrange(800, 3000)), flags, date))
    account = mail.Account("127.0.0.1", server.port, customer.source.login, customer.source.password)
    mail.upload_fast(account, mails, customer.folders)
    customer.messages = count


# ----------------------------------------------------------------------------- one customer over HTTP
class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=120) as response:
            return response.geturl(), response.read().decode()

    def post(self, path: str, page: str, data: dict) -> tuple[str, str]:
        token = CSRF.search(page)
        if not token:
            raise RuntimeError(f"no CSRF token on {path}")
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **data}).encode()
        request = urllib.request.Request(self.base + path, data=body, headers={"Referer": self.base + path})  # noqa: S310
        with self.opener.open(request, timeout=120) as response:  # follows the redirect with a GET
            return response.geturl(), response.read().decode()


def account_fields(provider: str, server: DovecotServer, user: User) -> dict:
    return {
        "provider": provider, "login": user.login, "password": user.password,
        "email_address": f"{user.login}@example.org", "host": "127.0.0.1", "use_ssl": "on",
        "port": str(server.tls_port), "security": "tls",
    }  # fmt: skip


def submit(base: str, customer: Customer, src_server: DovecotServer, dst_server: DovecotServer) -> Customer:
    browser = Browser(base)
    try:
        started = time.perf_counter()
        _, page = browser.get("/")
        provider = OTHER.search(page)
        if not provider:
            raise RuntimeError("no 'Other' provider in the source form")
        t = time.perf_counter()
        url, page = browser.post("/", page, account_fields(provider.group(1), src_server, customer.source))
        customer.timings["source_test"] = time.perf_counter() - t
        if 'class="success"' not in page:
            raise RuntimeError(f"source connection test failed: {re.findall(r'<p>([^<]+)</p>', page)[:2]}")
        _, page = browser.get("/destination/")
        t = time.perf_counter()
        url, page = browser.post(
            "/destination/", page, account_fields(provider.group(1), dst_server, customer.destination)
        )
        customer.timings["destination_test"] = time.perf_counter() - t
        if 'class="success"' not in page:
            raise RuntimeError("destination connection test failed")
        _, page = browser.get("/synchronize/")
        url, page = browser.post("/synchronize/", page, {})
        if "/status/" not in url:
            raise RuntimeError(f"Synchronize did not lead to a status page: {url}")
        customer.status_url = url
        customer.timings["total"] = time.perf_counter() - started
    except Exception as exc:  # reported, and counted as a failed submission
        customer.error = f"{type(exc).__name__}: {exc}"
    return customer


# ----------------------------------------------------------------------------- checks
def verify(customer: Customer, src_server: DovecotServer, dst_server: DovecotServer) -> list[str]:
    src = mail.Account("127.0.0.1", src_server.port, customer.source.login, customer.source.password)
    dst = mail.Account("127.0.0.1", dst_server.port, customer.destination.login, customer.destination.password)
    return mail.compare(mail.snapshot(src), mail.snapshot(dst))


def seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()


def fmt(values: list[float]) -> str:
    p = harness.percentile
    return f"p50 {p(values, 50):.1f} s, p95 {p(values, 95):.1f} s, max {max(values):.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=200)
    ap.add_argument("--messages", default="20-50", help="messages per mailbox, MIN-MAX (default 20-50)")
    ap.add_argument("--workers", type=int, default=4, help="rqworker processes (default 4)")
    ap.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    ap.add_argument("--web-threads", type=int, default=1, help="threads per gunicorn worker (>1: gthread workers)")
    ap.add_argument(
        "--backlog", action="store_true", help="start the workers only once every job is queued (a queue to drain)"
    )
    ap.add_argument("--concurrency", type=int, default=32, help="customers submitting at once (threads)")
    ap.add_argument("--database-url", help="postgres://user@host:port/NEWDB (created and dropped) or sqlite:///path")
    ap.add_argument("--verify", type=int, default=-1, help="mailboxes to compare message by message (-1: all)")
    ap.add_argument("--timeout", type=float, default=900, help="give up waiting for the jobs after this long")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = ap.parse_args()
    low, high = (int(x) for x in args.messages.split("-"))

    work = Path(tempfile.mkdtemp(prefix="imapcopy-load-jobs-"))
    database = harness.PrivateDatabase(args.database_url, work)
    procs = harness.Processes()
    redis = None
    print(f"machine: {harness.machine_load()}; work dir {work}", flush=True)
    with DovecotServer(Profile.bench(), pool_size=args.customers) as src_server, \
            DovecotServer(Profile.bench(), pool_size=args.customers) as dst_server:  # fmt: skip
        try:
            # --- mailboxes
            t0 = time.perf_counter()
            customers = []
            for n in range(args.customers):
                rng = random.Random(n)
                folders = [("INBOX",), *rng.sample(EXTRA_FOLDERS, rng.choice([1, 2]))]
                customers.append(Customer(n, src_server.new_user(), dst_server.new_user(), folders))
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda c: fill_source(src_server, c, low, high), customers))
            total_messages = sum(c.messages for c in customers)
            print(f"{len(customers)} source mailboxes, {total_messages} messages, filled in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip

            # --- the service
            redis, redis_url = harness.start_private_redis(work)
            database.create()
            port = harness.free_port()
            bundle = work / "ca.pem"
            bundle.write_text(src_server.cert_file.read_text() + dst_server.cert_file.read_text())
            env = harness.production_env(
                work, database_url=database.url, redis_url=redis_url, site_port=port,
                IMAPCOPY_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8", IMAPCOPY_CA_FILE=str(bundle),
            )  # fmt: skip
            harness.manage(env, "migrate", "-v0")
            harness.manage(env, "collectstatic", "--noinput", "-v0")
            threads = ["--threads", str(args.web_threads)] if args.web_threads > 1 else []
            harness.start_gunicorn(procs, env, port, args.web_workers, work / "gunicorn.log", threads)
            if not args.backlog:
                harness.start_workers(procs, env, args.workers, work)
            harness.django_in_process(env)
            from django.utils import timezone

            from apps.sync.models import ACTIVE_STATUSES, JobEvent, SyncJob

            print(f"portal: gunicorn -w {args.web_workers} {' '.join(threads)} on 127.0.0.1:{port}, {args.workers} "
                  f"rqworker processes{' started once all jobs are queued' if args.backlog else ''}, "
                  f"{database.label}, Redis {redis_url}", flush=True)  # fmt: skip

            # --- all customers at once
            base = f"http://127.0.0.1:{port}"
            started_at = timezone.now()
            t_start = time.perf_counter()
            done_count = 0
            lock = threading.Lock()

            def one(c: Customer) -> Customer:
                nonlocal done_count
                submit(base, c, src_server, dst_server)
                with lock:
                    done_count += 1
                    if done_count % 50 == 0:
                        print(f"  {done_count} submitted after {time.perf_counter() - t_start:.1f} s", flush=True)
                return c

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(one, customers))
            submit_wall = time.perf_counter() - t_start
            failed_submissions = [c for c in customers if c.error]
            print(f"submissions: {len(customers) - len(failed_submissions)}/{len(customers)} accepted in "
                  f"{submit_wall:.1f} s", flush=True)  # fmt: skip
            for c in failed_submissions[:5]:
                print(f"  customer {c.number}: {c.error}")

            workers_at = started_at
            if args.backlog:
                workers_at = timezone.now()
                harness.start_workers(procs, env, args.workers, work)
            # --- wait for the workers
            deadline = time.perf_counter() + args.timeout
            last_print = 0.0
            while time.perf_counter() < deadline:
                active = SyncJob.objects.filter(status__in=ACTIVE_STATUSES).count()
                if active == 0:
                    break
                if time.perf_counter() - last_print > 15:
                    last_print = time.perf_counter()
                    print(f"  {active} jobs queued or running after {time.perf_counter() - t_start:.0f} s", flush=True)
                time.sleep(0.5)

            # --- figures
            jobs = list(SyncJob.objects.order_by("id"))
            statuses = Counter(j.status for j in jobs)
            ended = [j for j in jobs if j.finished_at and j.started_at]
            last_end = max((j.finished_at for j in ended), default=timezone.now())
            wall = seconds(last_end - started_at)
            drain = seconds(last_end - workers_at)  # == wall unless --backlog
            waits = [seconds(j.started_at - j.created_at) for j in jobs if j.started_at]
            durations = [seconds(j.finished_at - j.started_at) for j in ended]
            copied = sum(j.messages_copied for j in jobs)
            connected = Counter(
                (e.job_id, e.detail.get("side"))
                for e in JobEvent.objects.filter(kind="connected").only("job_id", "detail")
            )
            runs_twice = [j.pk for j in jobs if j.attempts != 1]
            reconnected = sorted({job for (job, side), n in connected.items() if n != 1})
            recovered = JobEvent.objects.filter(kind="recovered").count()
            import django_rq
            from django.conf import settings

            failed_rq = django_rq.get_queue(settings.COPY_QUEUE).failed_job_registry.count
            reports = len(list((work / "sent-mail").glob("*"))) if (work / "sent-mail").exists() else 0

            by_login = {c.source.login: c for c in customers}
            to_verify = [by_login[j.source.login] for j in SyncJob.objects.select_related("source")]
            if args.verify >= 0:
                to_verify = random.Random(0).sample(to_verify, min(args.verify, len(to_verify)))
            t = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                problems = list(pool.map(lambda c: verify(c, src_server, dst_server), to_verify))
            bad = [(c.number, p) for c, p in zip(to_verify, problems, strict=True) if p]
            verify_s = time.perf_counter() - t

            tests = [c.timings[k] for c in customers for k in ("source_test", "destination_test") if k in c.timings]
            figures = {
                "customers": len(customers), "messages": total_messages, "workers": args.workers,
                "web_workers": args.web_workers, "web_threads": args.web_threads, "backlog": args.backlog,
                "database": database.label,
                "submissions_accepted": len(customers) - len(failed_submissions),
                "submit_wall_s": round(submit_wall, 1),
                "connection_test_p50_s": round(harness.percentile(tests, 50), 2),
                "connection_test_p95_s": round(harness.percentile(tests, 95), 2),
                "jobs": len(jobs), "statuses": dict(statuses),
                "all_finished": statuses.get("finished", 0) == len(customers) == len(jobs),
                "jobs_with_attempts_not_1": runs_twice, "jobs_with_reconnects": reconnected,
                "recovered_events": recovered, "rq_failed": failed_rq, "reports_sent": reports,
                "verified": len(to_verify), "verify_problems": bad[:10], "verify_s": round(verify_s, 1),
                "wall_s": round(wall, 1), "workers_to_last_end_s": round(drain, 1),
                "jobs_per_min": round(len(ended) / drain * 60, 1) if drain else 0,
                "messages_copied": copied,
                "msgs_per_s_overall": round(copied / drain, 1) if drain else 0,
                "msgs_per_s_per_busy_worker": round(copied / sum(durations), 1) if durations else 0,
                "msgs_per_s_per_worker_over_wall": round(copied / drain / args.workers, 1) if drain else 0,
                "queue_wait_p50_s": round(harness.percentile(waits, 50), 1),
                "queue_wait_p95_s": round(harness.percentile(waits, 95), 1),
                "queue_wait_max_s": round(max(waits, default=float("nan")), 1),
                "copy_p50_s": round(harness.percentile(durations, 50), 2),
                "copy_p95_s": round(harness.percentile(durations, 95), 2),
                "copy_mean_s": round(statistics.mean(durations), 2) if durations else None,
                "load_after": harness.machine_load(),
            }  # fmt: skip
            print()
            print(
                f"all finished: {'yes' if figures['all_finished'] else 'NO'} ({dict(statuses)}); "
                f"reports sent: {reports}; RQ failed registry: {failed_rq}"
            )
            print(
                f"run twice: {'none' if not runs_twice else runs_twice} (attempts != 1); recovery events: "
                f"{recovered}; jobs that connected more than once per side: {reconnected or 'none'}"
            )
            print(
                f"destination == source, message by message: {len(to_verify) - len(bad)}/{len(to_verify)} "
                f"mailboxes{'' if not bad else ' PROBLEMS: ' + repr(bad[:3])}"
            )
            print(
                f"submissions: {figures['submissions_accepted']}/{len(customers)} in {submit_wall:.1f} s "
                f"(connection test p50 {figures['connection_test_p50_s']} s, p95 "
                f"{figures['connection_test_p95_s']} s)"
            )
            print(
                f"total wall time (first submission -> last job end): {wall:.1f} s"
                + (f"; workers started -> last job end: {drain:.1f} s" if args.backlog else "")
                + f"; {figures['jobs_per_min']} jobs/min; {copied} messages, {figures['msgs_per_s_overall']} msgs/s"
            )
            print(
                f"per worker: {figures['msgs_per_s_per_busy_worker']} msgs/s while copying, "
                f"{figures['msgs_per_s_per_worker_over_wall']} msgs/s averaged over the "
                + ("drain" if args.backlog else "wall time")
            )
            if waits:
                print(f"queue wait (created -> claimed): {fmt(waits)}")
            if durations:
                print(f"copy duration (claimed -> ended): p50 {figures['copy_p50_s']} s, p95 {figures['copy_p95_s']} s")
            print(json.dumps(figures))
            if args.json:
                Path(args.json).write_text(json.dumps(figures, indent=1))
            ok = figures["all_finished"] and not runs_twice and not bad and not failed_submissions
            return 0 if ok else 1
        finally:
            harness.tear_down(procs, database, redis, work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
