#!/usr/bin/env python3
"""One very large mailbox (200,000 small messages by default) copied by `manage.py copymailbox`,
the real code path with job records and checkpoints, while a sampler records the copier's memory
(RSS of the process and its children, psutil) and the messages copied (the job's row) every few
seconds; then the destination's counts are checked against the source.

The source is a real Dovecot account on a private server: its Maildir is written directly
(generated 1-2 kB messages, flags in the file names, INTERNALDATE as the file's mtime), which is
far faster than APPENDing 200,000 messages, and Dovecot indexes it on first access (timed).
Folders: INBOX 50 %, Archive 25 %, Sent 15 %, Lists 10 %.

    .venv/bin/python bench/big_mailbox.py                       # 200,000 messages
    .venv/bin/python bench/big_mailbox.py --messages 20000      # a quicker run
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import portal_harness as harness
import psutil

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile, User

FOLDERS = [("INBOX", 0.50), ("Archive", 0.25), ("Sent", 0.15), ("Lists", 0.10)]
FLAGS = [("S", 0.6), ("F", 0.05), ("R", 0.1)]  # Maildir info letters: Seen, Flagged, Replied


def write_maildir(server: DovecotServer, user: User, total: int, seed: int = 1) -> tuple[dict[str, int], int]:
    """Write the messages as Maildir files; returns (messages per folder, bytes)."""
    rng = random.Random(seed)
    root = server.maildir(user)
    counts, nbytes, number = {}, 0, 0
    base_time = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()
    for name, share in FOLDERS:
        count = total - sum(counts.values()) if name == FOLDERS[-1][0] else int(total * share)
        folder = root if name == "INBOX" else root / f".{name}"
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        if name != "INBOX":
            (folder / "maildirfolder").touch()
        cur = folder / "cur"
        for _ in range(count):
            body = mail.make_message(rng, number, rng.randrange(1000, 2000))
            flags = "".join(sorted(letter for letter, p in FLAGS if rng.random() < p))
            path = cur / f"{1_500_000_000 + number}.M{number}P1.bench,S={len(body)}:2,{flags}"
            path.write_bytes(body)
            stamp = base_time + rng.randrange(300_000_000)
            os.utime(path, (stamp, stamp))
            number += 1
            nbytes += len(body)
        counts[name] = count
    (root / "subscriptions").write_text("".join(f"{n}\n" for n, _ in FOLDERS if n != "INBOX"))
    if os.geteuid() == 0:  # Dovecot runs as the dovecot user
        subprocess.run(["chown", "-R", f"{server.run_uid}:{server.run_gid}", str(user.home)], check=True)
    return counts, nbytes


def folder_counts(account: mail.Account) -> dict[str, int]:
    with account.client() as client:
        client._imap.sock.settimeout(600)  # the first access to a big Maildir builds its index
        names = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
        return {name: client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] for name in names}


class Sampler(threading.Thread):
    """Every `interval` s: elapsed, RSS of the copier and its children, messages on the
    destination (IMAP STATUS, what has really arrived) and the job's messages_copied counter
    (what the portal shows; it moves when checkpoints are recorded, so in steps)."""

    def __init__(self, pid: int, interval: float, destination: mail.Account) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.destination = pid, interval, destination
        self.samples: list[tuple[float, float, int, int]] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 1e6

    def recorded(self) -> int:
        from apps.sync.models import SyncJob

        return SyncJob.objects.order_by("-id").values_list("messages_copied", flat=True).first() or 0

    @staticmethod
    def arrived(client) -> int:
        names = [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]
        return sum(client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"] for name in names)

    def run(self) -> None:
        print(f"{'time s':>7} {'RSS MB':>7} {'arrived':>8} {'msgs/s':>7} {'job row':>8}", flush=True)
        last_t, last_n = 0.0, 0
        with self.destination.client() as client:
            while not self.stop.is_set():
                elapsed, rss = time.monotonic() - self.started, self.rss_mb()
                n, recorded = self.arrived(client), self.recorded()
                if rss:
                    self.samples.append((elapsed, rss, n, recorded))
                    rate = (n - last_n) / (elapsed - last_t) if elapsed > last_t else 0.0
                    print(f"{elapsed:7.1f} {rss:7.1f} {n:8d} {rate:7.0f} {recorded:8d}", flush=True)
                    last_t, last_n = elapsed, n
                self.stop.wait(self.interval)


def copied_at(samples: list[tuple[float, float, int, int]], t: float) -> float:
    """Messages copied at time t, interpolated between samples."""
    previous = (0.0, 0.0, 0, 0)
    for sample in samples:
        if sample[0] >= t:
            span = sample[0] - previous[0]
            return previous[2] + (sample[2] - previous[2]) * ((t - previous[0]) / span if span else 1)
        previous = sample
    return samples[-1][2] if samples else 0


def time_at(samples: list[tuple[float, float, int, int]], n: float) -> float:
    """When the destination held n messages, interpolated between samples."""
    previous = (0.0, 0.0, 0, 0)
    for sample in samples:
        if sample[2] >= n:
            span = sample[2] - previous[2]
            return previous[0] + (sample[0] - previous[0]) * ((n - previous[2]) / span if span else 1)
        previous = sample
    return samples[-1][0] if samples else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="imapcopy-big-mailbox-"))
    redis = None
    try:
        with DovecotServer(Profile.bench(), pool_size=2) as src_server, \
                DovecotServer(Profile.bench(), pool_size=2) as dst_server:  # fmt: skip
            print(f"machine: {harness.machine_load()}", flush=True)
            src_user, dst_user = src_server.new_user(), dst_server.new_user()
            src = mail.Account("127.0.0.1", src_server.port, src_user.login, src_user.password)
            dst = mail.Account("127.0.0.1", dst_server.port, dst_user.login, dst_user.password)
            t = time.perf_counter()
            counts, nbytes = write_maildir(src_server, src_user, args.messages)
            print(f"source Maildir: {args.messages} messages, {nbytes / 1e6:.0f} MB, {counts}, written in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
            t = time.perf_counter()
            src_counts = folder_counts(src)
            print(f"Dovecot indexed it in {time.perf_counter() - t:.1f} s: {src_counts}", flush=True)
            if sum(src_counts.values()) != args.messages:
                raise RuntimeError(f"Dovecot sees {sum(src_counts.values())} messages, expected {args.messages}")

            redis, redis_url = harness.start_private_redis(work)
            env = harness.production_env(
                work, database_url=f"sqlite:///{work / 'big.sqlite3'}", redis_url=redis_url, site_port=8000,
                IMAPCOPY_SOURCE_PASSWORD=src_user.password, IMAPCOPY_DEST_PASSWORD=dst_user.password,
                LOG_LEVEL="WARNING",
            )  # fmt: skip
            harness.manage(env, "migrate", "-v0")
            harness.django_in_process(env)
            cmd = [
                "/usr/bin/time", "-f", "MAXRSS_KB %M", harness.PYTHON, "manage.py", "copymailbox", "--json",
                f"imap+plain://{src_user.login}@127.0.0.1:{src_server.port}",
                f"imap+plain://{dst_user.login}@127.0.0.1:{dst_server.port}",
            ]  # fmt: skip
            started = time.perf_counter()
            proc = subprocess.Popen(
                cmd, env=env, cwd=harness.REPO, stdout=subprocess.PIPE, stderr=open(work / "copy.log", "wb")
            )
            sampler = Sampler(proc.pid, args.interval, dst)
            sampler.start()
            out, _ = proc.communicate()
            wall = time.perf_counter() - started
            sampler.stop.set()
            sampler.join()
            log = (work / "copy.log").read_text()
            max_rss_kb = next((int(x.split()[1]) for x in log.splitlines() if x.startswith("MAXRSS_KB ")), 0)
            summary = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}

            samples = sampler.samples
            peak = max((s[1] for s in samples), default=0.0)
            q = wall / 4
            first = copied_at(samples, q) / q
            last = (args.messages - copied_at(samples, 3 * q)) / q
            # The same by messages: how fast the first and the last quarter of the messages went.
            quarter = args.messages / 4
            marks = [time_at(samples, k * quarter) if k else 0.0 for k in range(5)]
            if samples and samples[-1][2] < args.messages:
                marks[4] = wall
            by_messages = [quarter / (b - a) if b > a else float("nan") for a, b in itertools.pairwise(marks)]
            # Per-sample rates once messages flow (start-up and listing left out), and the last,
            # partial interval left out.
            flowing = [s for s in samples if s[2] > 0]
            rates = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in itertools.pairwise(flowing) if b[0] > a[0]]
            steady = rates[:-1] or rates
            first_message_s = flowing[0][0] if flowing else None

            t = time.perf_counter()
            dst_counts = folder_counts(dst)
            verify_s = time.perf_counter() - t
            same = dst_counts == src_counts
            figures = {
                "messages": args.messages, "mb": round(nbytes / 1e6), "exit_code": proc.returncode,
                "status": summary.get("status"), "messages_copied": summary.get("messages_copied"),
                "wall_s": round(wall, 1), "msgs_per_s": round(args.messages / wall, 1),
                "engine_s": summary.get("seconds"),
                "peak_rss_mb_sampled": round(peak, 1), "max_rss_mb_time": round(max_rss_kb / 1024, 1),
                "rss_mb_first_sample": round(samples[0][1], 1) if samples else None,
                "rate_first_quarter": round(first, 1), "rate_last_quarter": round(last, 1),
                "rate_by_message_quarter": [round(x, 1) for x in by_messages],
                "first_message_by_s": first_message_s,
                "rate_min_sample": round(min(steady), 1) if steady else None,
                "rate_max_sample": round(max(steady), 1) if steady else None,
                "source_counts": src_counts, "destination_counts": dst_counts, "counts_equal": same,
                "verify_s": round(verify_s, 1), "load_after": harness.machine_load(),
            }  # fmt: skip
            print()
            print(
                f"copymailbox exit {proc.returncode}, {summary.get('status')}: {summary.get('messages_copied')} "
                f"copied in {wall:.1f} s ({figures['msgs_per_s']} msgs/s, {nbytes / 1e6 / wall:.1f} MB/s)"
            )
            print(
                f"peak RSS {peak:.0f} MB sampled (process + children), {max_rss_kb / 1024:.0f} MB max by "
                f"/usr/bin/time; first sample {figures['rss_mb_first_sample']} MB"
            )
            print(
                f"rate: first quarter of the time {first:.0f} msgs/s, last quarter {last:.0f} msgs/s; per quarter of "
                f"the messages {' / '.join(f'{x:.0f}' for x in by_messages)} msgs/s; per sample "
                f"{figures['rate_min_sample']}-{figures['rate_max_sample']} msgs/s once messages flowed "
                f"(from {first_message_s or 0:.0f} s)"
            )
            print(f"destination counts {'equal the source' if same else 'DIFFER'}: {dst_counts}")
            print(json.dumps(figures))
            if args.json:
                Path(args.json).write_text(json.dumps(figures, indent=1))
            if proc.returncode != 0:
                print(log[-3000:])
            return 0 if proc.returncode == 0 and same else 1
    finally:
        if redis is not None:
            harness.stop_redis(redis)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
