#!/usr/bin/env python3
"""Benchmark IMAPCopy's engine against mbsync on the same machine, in the same run.

Starts two private Dovecot servers (apps/localmail/dovecot.py), uploads a seeded corpus to a
source account, then for each copier: copies into a fresh destination account, timed, with its
peak RSS (/usr/bin/time), verifies the copy (apps/localmail/mail.py: per-folder multisets of
bytes hash + flags + INTERNALDATE) and times a no-op rerun. Copiers alternate over --repeat
rounds (default 3) on fresh destination accounts; medians and per-round ratios are printed.

Copiers: mbsync; "imapcopy", the engine's own command line (python -m apps.sync.engine.cli: the
copy engine with a JSON checkpoint file, no Django); "copymailbox", the staff command
(manage.py copymailbox: the same engine plus Django start-up and the job's database records).

Copiers connect over implicit TLS (imaps, port 993 style), as customers' copies do; --plain
measures plain-text IMAP instead (the figures of sessions 2-4).

    .venv/bin/python bench/run_engine_bench.py                 # both corpora
    .venv/bin/python bench/run_engine_bench.py --corpus big    # 5,000 msgs / ~160 MB only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apps.localmail import mail  # noqa: E402
from apps.localmail.dovecot import DovecotServer, Profile, User  # noqa: E402

CORPORA = {
    # ~5,000 messages / ~160 MB: mostly 1-20 kB text, 2% with 200 kB - 1.6 MB attachments
    "big": dict(seed=1, messages=5000, sizes=range(1000, 20000, 500), attachments=(0.02, 200_000, 1_600_000),
                duplicate_every=100),
    # 20,000 small messages
    "small": dict(seed=2, messages=20000, sizes=range(500, 4000, 250), duplicate_every=100),
}  # fmt: skip


def account(server: DovecotServer, user: User) -> mail.Account:
    return mail.Account("127.0.0.1", server.port, user.login, user.password)


def timed(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """-> (wall seconds, peak RSS MB, process)"""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    lines = proc.stderr.strip().splitlines()
    rss = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
    return wall, rss, proc


class Transport:
    """How the copiers reach the servers: implicit TLS on each server's TLS port (the default), or
    plain text. The test's own reads and checks always use the plain port."""

    tls = True
    cafile = ""
    tls_ports: dict[int, int] = {}

    @classmethod
    def url(cls, a: mail.Account) -> str:
        if cls.tls:
            return f"imaps://{a.login}@localhost:{cls.tls_ports[a.port]}"
        return f"imap+plain://{a.login}@{a.host}:{a.port}"

    @classmethod
    def ca_args(cls, flag: str) -> list[str]:
        return [flag, cls.cafile] if cls.tls else []


def engine_cmd(src: mail.Account, dst: mail.Account, state: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, IMAPCOPY_SOURCE_PASSWORD=src.password, IMAPCOPY_DEST_PASSWORD=dst.password)
    return [
        sys.executable, "-m", "apps.sync.engine.cli", "-q", Transport.url(src), Transport.url(dst),
        "--state", str(state), *Transport.ca_args("--ca-file"),
    ], env  # fmt: skip


def copymailbox_cmd(src: mail.Account, dst: mail.Account, state_dir: Path) -> tuple[list[str], dict]:
    """The staff command (Django start-up, job records, a checkpoint row per batch), on its own
    SQLite database, migrated before the clock starts, configured as in production (DEBUG off,
    so explicit secrets; with DEBUG on, Django also keeps a copy of every SQL query)."""
    secrets_file = state_dir / "secrets.json"
    if not secrets_file.exists():
        secrets_file.write_text(json.dumps({"SECRET_KEY": os.urandom(32).hex(), "CREDENTIAL_KEYS": _fernet_key()}))
    env = dict(
        os.environ, IMAPCOPY_SOURCE_PASSWORD=src.password, IMAPCOPY_DEST_PASSWORD=dst.password,
        DATABASE_URL=f"sqlite:///{state_dir}/db.sqlite3", IMAPCOPY_VAR_DIR=str(state_dir), DEBUG="false",
        **json.loads(secrets_file.read_text()),
    )  # fmt: skip
    if not (state_dir / "db.sqlite3").exists():
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=REPO, check=True)
    return [
        sys.executable, "manage.py", "copymailbox", "--json", Transport.url(src), Transport.url(dst),
        *Transport.ca_args("--cafile"),
    ], env  # fmt: skip


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def compile_bytecode() -> None:
    """Compile the project's modules once, as an installed service has them (pip does the same
    for site-packages): with PYTHONDONTWRITEBYTECODE set, as on these machines, every timed run
    would otherwise compile apps/ and portal/ from source again (~0.1 s per start-up)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "apps", "portal"], cwd=REPO, check=True, stdout=subprocess.DEVNULL
    )


def mbsync_cmd(src: mail.Account, dst: mail.Account, workdir: Path) -> tuple[list[str], dict]:
    (workdir / "syncstate").mkdir(parents=True, exist_ok=True)
    rc = workdir / "mbsyncrc"
    if Transport.tls:  # mbsync checks the certificate's name: localhost, not 127.0.0.1
        link = "Host localhost\nPort {port}\nSSLType IMAPS\nCertificateFile " + Transport.cafile + "\n"
    else:
        link = "Host {host}\nPort {port}\nSSLType None\n"
    accounts = "".join(
        f"IMAPAccount {n}\n"
        + link.format(host=a.host, port=Transport.tls_ports.get(a.port, a.port) if Transport.tls else a.port)
        + f"User {a.login}\nPass {a.password}\nAuthMechs LOGIN\n\nIMAPStore {n}-store\nAccount {n}\n\n"
        for n, a in (("src", src), ("dst", dst))
    )
    rc.write_text(
        accounts + "Channel copy\nFar :src-store:\nNear :dst-store:\nPatterns *\nCreate Near\n"
        "Remove None\nExpunge None\nSync Pull\nCopyArrivalDate yes\n"
        f"SyncState {workdir}/syncstate/\n"
    )
    rc.chmod(0o600)
    return ["mbsync", "-q", "-c", str(rc), "copy"], dict(os.environ)


def verify(src_snapshot, dst: mail.Account) -> list[str]:
    return mail.compare(src_snapshot, mail.snapshot(dst))


def bench_corpus(
    name: str, src_server: DovecotServer, dst_server: DovecotServer, work: Path, repeat: int, copiers: list[str]
) -> dict:
    spec = CORPORA[name]
    src = account(src_server, src_server.new_user())
    t0 = time.perf_counter()
    mails = mail.build_corpus(folders=mail.DEFAULT_FOLDERS, **spec)
    mail.upload_fast(src, mails, mail.DEFAULT_FOLDERS)
    n, nbytes = len(mails), sum(len(m.body) for m in mails)
    del mails
    print(f"[{name}] corpus: {n} messages, {nbytes / 1e6:.1f} MB, uploaded in {time.perf_counter() - t0:.1f}s",
          flush=True)  # fmt: skip
    src_snapshot = mail.snapshot(src)
    results: dict = {"corpus": name, "messages": n, "mb": round(nbytes / 1e6, 1), "repeat": repeat}
    runs: dict[str, list[dict]] = {copier: [] for copier in copiers}
    # Alternate the copiers so that a noisy neighbour slows both alike; report medians.
    for round_no in range(repeat):
        for copier in copiers:
            dst = account(dst_server, dst_server.new_user())
            state_dir = work / f"{name}-{copier}-{round_no}"
            state_dir.mkdir(parents=True, exist_ok=True)
            if copier == "mbsync":
                cmd, env = mbsync_cmd(src, dst, state_dir)
            elif copier == "copymailbox":
                cmd, env = copymailbox_cmd(src, dst, state_dir)
            else:
                cmd, env = engine_cmd(src, dst, state_dir / "state.json")
            wall, rss, proc = timed(cmd, env)
            problems = verify(src_snapshot, dst)
            rerun_wall, _, rerun = timed(cmd, env)
            problems_after = verify(src_snapshot, dst)
            r = {
                "wall_s": round(wall, 2), "msgs_per_s": round(n / wall, 1), "mb_per_s": round(nbytes / 1e6 / wall, 2),
                "peak_rss_mb": round(rss, 1), "rc": proc.returncode, "verify_ok": not problems,
                "problems": problems[:3], "rerun_s": round(rerun_wall, 2), "rerun_rc": rerun.returncode,
                "rerun_verify_ok": not problems_after,
            }  # fmt: skip
            if proc.returncode != 0 and copier != "mbsync":
                r["stderr"] = proc.stderr[-2000:]
            runs[copier].append(r)
            print(f"[{name} #{round_no + 1}] {copier}: {r['msgs_per_s']} msgs/s, {r['mb_per_s']} MB/s, "
                  f"peak RSS {r['peak_rss_mb']} MB, verify {'ok' if r['verify_ok'] else problems[:2]}, "
                  f"no-op rerun {r['rerun_s']}s (verify {'ok' if r['rerun_verify_ok'] else 'FAILED'})",
                  flush=True)  # fmt: skip
    for copier, rs in runs.items():
        results[copier] = {
            "runs": rs,
            "median_msgs_per_s": statistics.median(r["msgs_per_s"] for r in rs),
            "median_mb_per_s": statistics.median(r["mb_per_s"] for r in rs),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "max_rerun_s": max(r["rerun_s"] for r in rs),
            "verify_ok": all(r["verify_ok"] and r["rerun_verify_ok"] for r in rs),
        }
    m = results["mbsync"]
    for copier in copiers[1:]:
        ratios = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(runs[copier], runs["mbsync"], strict=True)]
        e = results[copier]
        e["ratio_median"] = round(statistics.median(ratios), 2)
        e["ratios"] = [round(x, 2) for x in ratios]
        verdict = "ok" if e["verify_ok"] else "FAILED"
        print(f"[{name}] median: {copier} {e['median_msgs_per_s']} msgs/s ({e['median_mb_per_s']} MB/s), "
              f"mbsync {m['median_msgs_per_s']} msgs/s; ratio median {e['ratio_median']}x "
              f"(per round {e['ratios']}); peak RSS {e['max_peak_rss_mb']} MB, "
              f"no-op rerun <= {e['max_rerun_s']}s, verify {verdict}", flush=True)  # fmt: skip
    results["ratio_median"] = results["imapcopy"]["ratio_median"]
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=[*CORPORA, "all"], default="all")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per corpus (medians are reported)")
    ap.add_argument(
        "--no-django", action="store_true",
        help="skip 'manage.py copymailbox' (the engine's own command line, imapcopy, always runs)",
    )  # fmt: skip
    ap.add_argument("--plain", action="store_true", help="plain-text IMAP instead of implicit TLS")
    args = ap.parse_args()
    if not shutil.which("mbsync"):
        print("mbsync not found (apt-get install isync)", file=sys.stderr)
        return 2
    names = list(CORPORA) if args.corpus == "all" else [args.corpus]
    compile_bytecode()
    copiers = ["mbsync", "imapcopy"] + ([] if args.no_django else ["copymailbox"])
    all_results = []
    with tempfile.TemporaryDirectory(prefix="imapcopy-bench-") as tmp, \
            DovecotServer(Profile.bench(), pool_size=4) as src_server, \
            DovecotServer(Profile.bench(), pool_size=2 * 3 * args.repeat + 2) as dst_server:  # fmt: skip
        Transport.tls = not args.plain
        bundle = Path(tmp) / "ca.pem"
        bundle.write_text(src_server.cert_file.read_text() + dst_server.cert_file.read_text())
        Transport.cafile = str(bundle)
        Transport.tls_ports = {src_server.port: src_server.tls_port, dst_server.port: dst_server.tls_port}
        print(f"transport: {'implicit TLS (imaps)' if Transport.tls else 'plain text'}", flush=True)
        for name in names:
            all_results.append(bench_corpus(name, src_server, dst_server, Path(tmp), args.repeat, copiers))
    print(json.dumps(all_results))
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))
    ok = all(r[c]["verify_ok"] for r in all_results for c in copiers[1:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
