#!/usr/bin/env python3
"""Copy speed across an emulated wide-area link: `copymailbox` and mbsync, over implicit TLS.

Starts a source Dovecot and one Dovecot per destination kind (apps/localmail/dovecot.py: "full" is
Dovecot's own capabilities with the Courier/Cyrus-style Profile.dot, "exchange" Profile.exchange_like
(LITERAL+, no MULTIAPPEND), "gmail" Profile.gmail_like (LITERAL-, no MULTIAPPEND)), fills the source
with the shared harness's corpus (/work/shared/bench/corpus.py --messages N --seed 1), and puts each
server behind its own emulated access link (bench/wan_link.py: --rtt-ms round trip, --mbit Mbit/s
each way shared by all connections through it).  Every copier connects to the links' loopback ports
with imaps://, as customers do, into a fresh destination account.

Per copier and destination it prints the wall time, msgs/s, the ratio to the link's limit (the
source's bytes ÷ the link's rate: the least time any copier can take) and the speed ratio to mbsync
(mbsync's time ÷ the copier's), then verifies the copy: every source message exactly once in the
matching destination folder, by Message-ID + size (mbsync's added X-TUID header is discounted).
Folders the copier renamed (e.g. "Sent" -> "Sent Items") are matched by content and listed.

    .venv/bin/python bench/wan_bench.py --messages 500             # quick
    .venv/bin/python bench/wan_bench.py                            # 5,000 messages, 40 ms, 50 Mbit/s
    .venv/bin/python bench/wan_bench.py --destinations exchange --copiers imapcopy --rtt-ms 80
    .venv/bin/python bench/wan_bench.py --direct --repeat 3        # same machine, no link, medians

"imapcopy" is the staff command `manage.py copymailbox` (DEBUG off, its own SQLite database,
compiled bytecode), as in run_engine_bench.py.  Exit status 1 if any copy does not verify.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from imapclient import IMAPClient, imap_utf7  # noqa: E402
from wan_link import Link, WanProxy  # noqa: E402

from apps.localmail.dovecot import DovecotServer, Profile, User  # noqa: E402

CORPUS_PY = Path(os.environ.get("SHARED", "/work/shared/bench")) / "corpus.py"
DESTINATIONS = {
    "full": Profile.dot,
    "exchange": Profile.exchange_like,
    "gmail": Profile.gmail_like,
}
COPIERS = ("imapcopy", "mbsync")
Key = tuple[str | None, int]  # (Message-ID, size without mbsync's X-TUID header)


@dataclasses.dataclass
class Server:
    dovecot: DovecotServer
    link: Link
    proxy: WanProxy | None  # None with --direct: copiers talk to Dovecot's TLS port itself

    @property
    def port(self) -> int:
        return self.proxy.port if self.proxy else self.dovecot.tls_port

    def url(self, user: User) -> str:
        return f"imaps://{user.login}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
        self.dovecot.stop()


def start_server(profile: Profile, args: argparse.Namespace, pool: int) -> Server:
    # Benchmarks keep Dovecot's default fsync ("optimized"), as a real server would.
    dovecot = DovecotServer(dataclasses.replace(profile, fsync="optimized"), pool_size=pool)
    dovecot.start()
    link = Link(args.rtt_ms, args.mbit)
    proxy = None
    if not args.direct:
        proxy = WanProxy("127.0.0.1", dovecot.tls_port, link)
        proxy.start()
    return Server(dovecot, link, proxy)


# ---------------------------------------------------------------- corpus and verification
def fill_source(server: DovecotServer, user: User, messages: int, seed: int) -> None:
    cmd = [
        sys.executable, str(CORPUS_PY), "--mode", "maildir", "--wipe", "--maildir", str(server.maildir(user)),
        "--host", "127.0.0.1", "--port", str(server.port), f"--user={user.login}", f"--password={user.password}",
        "--messages", str(messages), "--seed", str(seed),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"corpus.py failed: {proc.stderr[-1000:]}")
    out = proc.stdout.strip().splitlines()
    print(f"corpus: {out[-1] if out else '?'}", flush=True)


def _list_path(name: str, separator: str, prefix: str) -> tuple[str, ...]:
    if name.upper() == "INBOX":
        return ("INBOX",)
    if prefix and name.startswith(prefix):
        name = name[len(prefix) :]
    return tuple(name.split(separator))


_MSGID = re.compile(rb"^message-id:\s*(.*?)\s*$", re.I | re.M)
_TUID = re.compile(rb"^X-TUID: [^\r\n]*\r\n", re.I | re.M)


def snapshot(server: DovecotServer, user: User) -> dict[tuple[str, ...], Counter[Key]]:
    """Folder path -> multiset of (Message-ID, size), read straight from the server (no link)."""
    c = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=120)
    c.login(user.login, user.password)
    try:
        ns = c.namespace().personal
        prefix = imap_utf7.decode(ns[0][0]) if ns and isinstance(ns[0][0], bytes) else (ns[0][0] if ns else "")
        folders: dict[tuple[str, ...], Counter[Key]] = {}
        for flags, sep, name in c.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            sep = sep.decode() if isinstance(sep, bytes) else sep
            exists = c.select_folder(name, readonly=True)[b"EXISTS"]
            seen: Counter[Key] = Counter()
            fetched = (
                {}
                if not exists
                else c.fetch(c.search("ALL"), ["RFC822.SIZE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID X-TUID)]"])
            )
            for item in fetched.values():
                header = item[b"BODY[HEADER.FIELDS (MESSAGE-ID X-TUID)]"]
                m = _MSGID.search(header)
                tuid = sum(len(t) for t in _TUID.findall(header))
                seen[(m.group(1).decode("ascii", "replace") if m else None, item[b"RFC822.SIZE"] - tuid)] += 1
            folders[_list_path(name, sep or "/", prefix)] = seen
        return folders
    finally:
        c.logout()


def verify(src: dict[tuple[str, ...], Counter[Key]], dst: dict[tuple[str, ...], Counter[Key]]) -> dict:
    """Every source folder must have a destination folder holding exactly its messages, each once:
    the folder of the same path, else (a folder the copier renamed) an unclaimed one with the
    same contents.  Destination folders with messages no source folder accounts for are errors."""
    problems: list[str] = []
    renamed: dict[str, str] = {}
    claimed: set[tuple[str, ...]] = set()
    pending = []
    for path, want in sorted(src.items()):
        if path in dst and dst[path] == want:
            claimed.add(path)
        else:
            pending.append(path)
    for path in pending:
        want = src[path]
        match = next(
            (p for p, got in sorted(dst.items()) if p not in claimed and p not in src and got == want and want), None
        )
        if match is not None:
            claimed.add(match)
            renamed["/".join(path)] = "/".join(match)
            continue
        got = dst.get(path, Counter())
        claimed.add(path)
        missing, extra = sum((want - got).values()), sum((got - want).values())
        where = "" if path in dst else " (no such destination folder)"
        problems.append(f"{'/'.join(path)}: {missing} missing, {extra} extra{where}")
    for path, got in sorted(dst.items()):
        if path not in claimed and got:
            problems.append(f"destination {'/'.join(path)}: {sum(got.values())} unexpected messages")
    messages = sum(sum(c.values()) for c in src.values())
    return {"ok": not problems, "messages": messages, "folders": len(src), "renamed": renamed, "problems": problems}


# ---------------------------------------------------------------- copiers
def compile_bytecode() -> None:
    """As an installed service has it (these machines set PYTHONDONTWRITEBYTECODE)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "apps", "portal"], cwd=REPO, check=True, stdout=subprocess.DEVNULL
    )


def imapcopy_cmd(src: Server, src_user: User, dst: Server, dst_user: User, work: Path, cafile: Path):
    """manage.py copymailbox as in production: DEBUG off, its own SQLite database migrated before the
    clock starts, explicit secrets."""
    from cryptography.fernet import Fernet

    env = dict(
        os.environ, IMAPCOPY_SOURCE_PASSWORD=src_user.password, IMAPCOPY_DEST_PASSWORD=dst_user.password,
        DATABASE_URL=f"sqlite:///{work}/db.sqlite3", IMAPCOPY_VAR_DIR=str(work), DEBUG="false",
        SECRET_KEY=os.urandom(32).hex(), CREDENTIAL_KEYS=Fernet.generate_key().decode(),
    )  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=REPO, check=True)
    cmd = [
        sys.executable, "manage.py", "copymailbox", "--json", "--cafile", str(cafile),
        src.url(src_user), dst.url(dst_user),
    ]  # fmt: skip
    return cmd, env


def mbsync_cmd(src: Server, src_user: User, dst: Server, dst_user: User, work: Path, cafile: Path):
    """mbsync as its manual suggests for a one-way copy; the destination's own folders (special
    folders the server creates, absent from the source) are excluded, else mbsync fails on them."""
    (work / "syncstate").mkdir(parents=True, exist_ok=True)
    source = snapshot(src.dovecot, src_user)
    own = [p for p in snapshot(dst.dovecot, dst_user) if p not in source]
    patterns = " ".join(["*", *(f'"!{"/".join(p)}"' for p in own)])
    rc = work / "mbsyncrc"
    accounts = "".join(
        f"IMAPAccount {n}\nHost localhost\nPort {s.port}\nUser {u.login}\nPass {u.password}\n"
        f"SSLType IMAPS\nCertificateFile {cafile}\nAuthMechs LOGIN\n\nIMAPStore {n}-store\nAccount {n}\n\n"
        for n, s, u in (("src", src, src_user), ("dst", dst, dst_user))
    )
    rc.write_text(
        accounts + f"Channel copy\nFar :src-store:\nNear :dst-store:\nPatterns {patterns}\nCreate Near\n"
        "Remove None\nExpunge None\nSync Pull\nCopyArrivalDate yes\n"
        f"SyncState {work}/syncstate/\n"
    )
    rc.chmod(0o600)
    return ["mbsync", "-q", "-c", str(rc), "copy"], dict(os.environ)


def run_copy(copier: str, src: Server, src_user: User, dst: Server, work: Path, cafile: Path, timeout: float):
    dst_user = dst.dovecot.new_user()
    work.mkdir(parents=True, exist_ok=True)
    make = imapcopy_cmd if copier == "imapcopy" else mbsync_cmd
    cmd, env = make(src, src_user, dst, dst_user, work, cafile)
    before = (src.link.down.bytes, src.link.up.bytes, dst.link.up.bytes, dst.link.down.bytes)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # reported as a failed copy (rc -1); the others still run
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        proc = subprocess.CompletedProcess(cmd, -1, "", f"timed out after {timeout:g} s\n{err}")
    wall = time.perf_counter() - started
    after = (src.link.down.bytes, src.link.up.bytes, dst.link.up.bytes, dst.link.down.bytes)
    wire = [a - b for a, b in zip(after, before, strict=True)]
    return wall, proc, dst_user, wire


# ---------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=40.0, help="round trip of each server's link (default 40)")
    ap.add_argument("--mbit", type=float, default=50.0, help="each link's rate, Mbit/s each way (default 50)")
    ap.add_argument("--messages", type=int, default=5000, help="corpus size (corpus.py --messages, default 5000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--destinations", default="full,exchange,gmail", help="comma-separated: full,exchange,gmail")
    ap.add_argument("--copiers", default="imapcopy,mbsync", help="comma-separated: imapcopy,mbsync")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before a copy is abandoned")
    ap.add_argument("--repeat", type=int, default=1, help="rounds per destination, copiers alternating (medians)")
    ap.add_argument(
        "--direct", action="store_true",
        help="no emulated link: copiers connect to each Dovecot's TLS port (same-machine speed)",
    )  # fmt: skip
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    destinations = [d for d in args.destinations.split(",") if d]
    copiers = [c for c in args.copiers.split(",") if c]
    for name, known in ((destinations, DESTINATIONS), (copiers, COPIERS)):
        if unknown := [n for n in name if n not in known]:
            ap.error(f"unknown: {', '.join(unknown)} (choose from {', '.join(known)})")
    if "mbsync" in copiers and not shutil.which("mbsync"):
        print("mbsync not found (apt-get install -y isync)", file=sys.stderr)
        return 2
    if "imapcopy" in copiers:
        compile_bytecode()

    results: list[dict] = []
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="imapcopy-wan-") as tmp:
        work = Path(tmp)
        try:
            src = start_server(Profile.bench(), args, pool=2)
            servers.append(src)
            pool = len(copiers) * args.repeat + 1
            dsts = {d: start_server(DESTINATIONS[d](), args, pool=pool) for d in destinations}
            servers.extend(dsts.values())
            cafile = work / "ca.pem"
            cafile.write_text("".join(s.dovecot.cert_file.read_text() for s in servers))
            src_user = src.dovecot.new_user()
            fill_source(src.dovecot, src_user, args.messages, args.seed)
            source = snapshot(src.dovecot, src_user)
            n = sum(sum(c.values()) for c in source.values())
            nbytes = sum(size * k for c in source.values() for (_, size), k in c.items())
            limit = None if args.direct else src.link.limit_seconds(nbytes)
            where = "direct to each server (no emulated link)" if args.direct else f"links: {src.link} per server"
            limit_text = "" if limit is None else f"; the link's limit: {limit:.2f} s"
            print(
                f"source: {n} messages, {nbytes / 1e6:.1f} MB, {len(source)} folders; {where}{limit_text}", flush=True
            )
            for dest in destinations:
                for round_no in range(args.repeat):
                    # Alternate who goes first, so neither always meets a warmer server.
                    order = copiers if round_no % 2 == 0 else copiers[::-1]
                    for copier in order:
                        label = f"{work}/{dest}-{copier}-{round_no}"
                        wall, proc, dst_user, wire = run_copy(
                            copier, src, src_user, dsts[dest], Path(label), cafile, args.timeout
                        )
                        check = verify(source, snapshot(dsts[dest].dovecot, dst_user))
                        r = {
                            "destination": dest, "copier": copier, "round": round_no, "seconds": round(wall, 2),
                            "rc": proc.returncode, "msgs_per_s": round(n / wall, 1),
                            "x_link_limit": round(wall / limit, 2) if limit else None,
                            "wire_mb": [round(w / 1e6, 1) for w in wire], "verify": check,
                        }  # fmt: skip
                        if proc.returncode != 0:
                            r["stderr"] = proc.stderr[-1500:]
                        results.append(r)
                        verdict = (
                            f"verified: {check['messages']} messages in {check['folders']} folders, each once"
                            if check["ok"]
                            else f"VERIFY FAILED: {'; '.join(check['problems'][:5])}"
                        )
                        renamed = ", ".join(f"{a} -> {b}" for a, b in check["renamed"].items())
                        vs_limit = "" if limit is None else f"{r['x_link_limit']}x the link's limit, "
                        print(
                            f"[{dest} #{round_no + 1}] {copier}: {wall:.2f} s, {n / wall:.0f} msgs/s, "
                            f"{vs_limit}rc {proc.returncode}; {verdict}"
                            + (f" (renamed: {renamed})" if renamed else ""),
                            flush=True,
                        )
                        if proc.returncode != 0:
                            print(proc.stderr[-800:], file=sys.stderr, flush=True)
        finally:
            for s in servers:
                s.stop()
    summary = summarize(results, destinations, copiers, n, limit)
    print(
        "summary, medians over rounds (destination, copier, seconds, msgs/s, x link limit, x mbsync speed, verified):"
    )
    for row in summary:
        print(
            f"  {row['destination']:9} {row['copier']:9} {row['seconds']:8.2f} {row['msgs_per_s']:8.1f} "
            f"{row['x_link_limit']!s:>6} {row.get('x_mbsync', '-')!s:>6} {'ok' if row['verified'] else 'FAILED'}"
        )
    if "full" in destinations:
        for row in summary:
            full = next((f for f in summary if f["destination"] == "full" and f["copier"] == row["copier"]), None)
            if row["destination"] != "full" and full and full["seconds"]:
                slower = (row["seconds"] or 0) / full["seconds"]
                print(f"  {row['copier']} into {row['destination']}: {slower:.2f}x its time into full")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "summary": summary}, indent=1))
    return 0 if all(r["verify"]["ok"] and r["rc"] == 0 for r in results) else 1


def summarize(results: list[dict], destinations: list[str], copiers: list[str], n: int, limit: float | None):
    """Per destination and copier: the median time of its successful rounds; the speed ratio to
    mbsync is the median of the per-round ratios (each round's copiers met the same conditions)."""
    rows = []
    for dest in destinations:
        for copier in copiers:
            mine = [r for r in results if r["destination"] == dest and r["copier"] == copier]
            ok = [r["seconds"] for r in mine if r["rc"] == 0]
            if not mine:
                continue
            median = statistics.median(ok) if ok else None
            row = {
                "destination": dest, "copier": copier, "rounds": len(mine), "seconds": median,
                "msgs_per_s": round(n / median, 1) if median else 0.0,
                "x_link_limit": round(median / limit, 2) if median and limit else None,
                "verified": all(r["verify"]["ok"] for r in mine),
            }  # fmt: skip
            if copier != "mbsync":
                ratios = []
                for r in mine:
                    other = next(
                        (o for o in results if o["destination"] == dest and o["copier"] == "mbsync"
                         and o["round"] == r["round"] and o["rc"] == 0),
                        None,
                    )  # fmt: skip
                    if other and r["rc"] == 0:
                        ratios.append(other["seconds"] / r["seconds"])
                if ratios:
                    row["x_mbsync"] = round(statistics.median(ratios), 2)
                    row["x_mbsync_rounds"] = [round(x, 2) for x in ratios]
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
