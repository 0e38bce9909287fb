r"""Throwaway Cyrus IMAP 3.6 servers for tests: a second IMAP implementation besides Dovecot.

Debian's Cyrus packages cannot be installed next to dovecot-imapd (both provide imap-server), so
the packages are never installed: `apt-get download` fetches cyrus-common, cyrus-imapd and
sasl2-bin (plus whichever of their library dependencies this machine lacks, e.g. libical3,
libxapian30, libpcre3) and `dpkg -x` unpacks them once into
`${IMAPCOPY_TEST_CACHE:-~/.cache/imapcopy-tests}/cyrus-3.6.1` (built in a temporary directory
and renamed into place, under a lock, so concurrent test processes neither clash nor see half a
tree).  The binaries run from there with LD_LIBRARY_PATH (and SASL_PATH when SASL plugins had to
be unpacked too); when the server's user cannot reach the cache (root's 0700 home), the tree is
hard-linked (or copied) into the server's directory instead.

Each `CyrusServer` runs Cyrus's own `master` in the foreground (it handles TLS, forking and
reaping of imapd, and SIGTERM stops it and its children), with a private cyrus.conf holding only
two services: `imap` (plain, offers STARTTLS) and `imaps` (implicit TLS), both on free loopback
ports; no START/EVENTS entries, no lmtp/pop/sieve/http.  Everything lives in the server's
temporary directory (imapd.conf, cyrus.conf, config dir with its databases, locks, proc and
sockets, the mail partition, the sieve dir, the sasldb, a self-signed certificate, master.log):
nothing in /etc, /var or /run is read or written.  As root it runs as the `dovecot` system user
(`nobody` if there is none) via setpriv, with `cyrus_user`/`cyrus_group` naming that user so
Cyrus does not try to switch to a `cyrus` user.  master is a session leader of its own, so stop()
and the watchdog (which stops the server and removes its directory when this process dies, even
by SIGKILL) signal exactly its process group.  Cyrus logs to syslog only, and no syslog runs
here: master.log holds what master writes to stderr, little else.

Authentication is real: SASL PLAIN/LOGIN checked against a private sasldb
(`sasl_pwcheck_method: auxprop`, `sasl_auxprop_plugin: sasldb`), users added with the unpacked
`saslpasswd2`; a wrong password fails.  `new_user()` adds the password and then, logged in as the
admin user `cyrus`, does `CREATE user.<login>` (`user/<login>` with unixhierarchysep), so the
INBOX exists at once (about 50 ms per user).

Namespace: Cyrus's compiled-in defaults are unixhierarchysep=1 and altnamespace=1, but Debian's
/etc/imapd.conf (what a Debian/Ubuntu Cyrus server shows its users) sets both to `no`; this
class defaults to Debian's: separator ".", personal prefix "INBOX.".  `separator` and `prefix`
say what a client sees: unixhierarchysep -> "/" (else "."), altnamespace -> "" (else "INBOX" +
separator).  NAMESPACE answers `(("INBOX." ".")) (("user." ".")) (("" "."))` by default and
`(("" "/")) (("Other Users/" "/")) (("Shared Folders/" "/"))` with both options on.

Measured on this Cyrus (3.6.1-4+deb12u5, Cyrus's defaults: munge8bit=1, reject8bit=0):

| what is APPENDed / asked                  | what Cyrus does                                                     |
|-------------------------------------------|---------------------------------------------------------------------|
| raw 8-bit (UTF-8) bytes in headers        | accepted, every 8-bit header byte replaced by "X" ("Grüße" ->       |
| (Subject, From, any header)               | "GrXXXXe", "Fröm:" -> "FrXXm:", folded lines too); same size        |
| 8-bit bytes in the body                   | accepted and kept as is                                             |
| a header line without a colon             | refused: NO "Message contains invalid header"                       |
| bare LF (or bare CR) line ends            | accepted, rewritten to CRLF (RFC822.SIZE then exceeds the bytes     |
|                                           | sent: 30 bytes appended -> RFC822.SIZE 34)                          |
| NUL byte (header or body), normal literal | refused: NO "Message contains NUL characters"                       |
| NUL byte in a literal8 (~{n}, BINARY)     | accepted                                                            |
| empty message (zero-length literal)       | refused: NO "Zero-length message literal"                           |
| message with no header / no blank line    | accepted                                                            |
| keywords                                  | PERMANENTFLAGS (\Answered \Flagged \Draft \Deleted \Seen \*):       |
|                                           | any keyword kept ($Forwarded, Junk, NonJunk, $MDNSent, MyKeyword);  |
|                                           | at most 100 distinct keywords per mailbox (then NO "Too many        |
|                                           | user flags in mailbox"); up to 1023 characters (longer: BAD)        |
| INTERNALDATE given in APPEND              | kept to the second but returned in UTC: 01-Jan-2001 12:34:56        |
|                                           | +0200 comes back as " 1-Jan-2001 10:34:56 +0000" (same instant)     |
| RFC822.SIZE                               | equals the bytes appended for CRLF messages (not after a rewrite    |
|                                           | of bare LF/CR, see above)                                           |
| CAPABILITY after login                    | MULTIAPPEND, LITERAL+, UIDPLUS, SPECIAL-USE, CREATE-SPECIAL-USE,    |
|                                           | STATUS=SIZE, OBJECTID, NAMESPACE, UNSELECT, MOVE, CONDSTORE,        |
|                                           | QRESYNC, BINARY, CATENATE, ID, ENABLE, IDLE, QUOTA, METADATA,       |
|                                           | LIST-EXTENDED, LIST-STATUS, ESEARCH, SORT, THREAD, WITHIN,          |
|                                           | COMPRESS=DEFLATE, SAVEDATE, PREVIEW, XLIST, APPENDLIMIT=4294967295  |
|                                           | (and, oddly, LOGINDISABLED); no LITERAL-, no UTF8=ACCEPT            |
| CAPABILITY before login                   | IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN AUTH=LOGIN SASL-IR |
| first FETCH FLAGS after SELECT            | includes \Recent                                                    |
| over quota (new_user(quota_bytes=...))    | APPEND: NO "Over quota" (no [OVERQUOTA] response code)              |
| options={"maxmessagesize": "1000"}        | CAPABILITY APPENDLIMIT=1000; bigger APPEND: NO [TOOBIG] ...         |
| folder names ("." separator)              | "/" and "%" refused (NO "Invalid mailbox name"), so are raw         |
|                                           | 8-bit names and a bare "&" (modified UTF-7 "Caf&AOk-" is fine);     |
|                                           | "*", "~", "#", spaces fine; "a..b" is "a.b", a trailing "." is      |
|                                           | dropped; CREATE INBOX.a.b also creates a selectable INBOX.a         |
| folder names ("/" separator)              | "." allowed in names; the rest as above                             |
| special folders                           | none exist; CREATE name (USE (\Sent)) works                         |

Deviations from Cyrus's defaults, for speed only: `failedloginpause: 0` (Cyrus waits 3 s after a
failed login).  Extra imapd.conf settings can be passed as `options`.

    with CyrusServer() as server:
        user = server.new_user()
        account = mail.Account(server.host, server.port, user.login, user.password,
                               server.prefix, server.separator)
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import grp
import imaplib
import itertools
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from apps.localmail.dovecot import User, free_port, generate_certificate

CYRUS_VERSION = "3.6.1"  # Debian bookworm's cyrus-imapd; the cache directory is named after it
PACKAGES = ("cyrus-common", "cyrus-imapd", "sasl2-bin")
# Library dependencies only some tools need (cyr_virusscan, notifyd): never fetched.
SKIPPED_DEPENDENCIES = {"libclamav12", "libzephyr4"}
ADMIN = "cyrus"
SERVERNAME = "cyrus-test"  # also the SASL realm of every sasldb entry


# ---------------------------------------------------------------------- packages (download once)
def cache_root() -> Path:
    return Path(os.environ.get("IMAPCOPY_TEST_CACHE") or Path.home() / ".cache" / "imapcopy-tests")


def cyrus_tree() -> Path:
    """The unpacked packages, downloading and unpacking them the first time."""
    target = cache_root() / f"cyrus-{CYRUS_VERSION}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"cyrus-{CYRUS_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download at a time; others wait, then reuse it
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a tree without its marker is unfinished
        work = Path(tempfile.mkdtemp(prefix=f".cyrus-{CYRUS_VERSION}-", dir=target.parent))
        try:
            _build_tree(work / "root", work / "debs")
            (work / "root" / ".complete").write_text(f"{CYRUS_VERSION}\n")
            try:
                os.rename(work / "root", target)  # atomic: readers see all of it or nothing
            except OSError:
                if not (target / ".complete").exists():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _build_tree(root: Path, debs: Path) -> None:
    root.mkdir(parents=True)
    debs.mkdir(parents=True)
    _download(debs, PACKAGES)
    version = _deb_field(next(debs.glob("cyrus-imapd_*.deb")), "Version")
    if not version.startswith(CYRUS_VERSION + "-"):
        raise RuntimeError(f"apt offers cyrus-imapd {version}, these tests expect {CYRUS_VERSION} (Debian bookworm)")
    # Library dependencies this machine lacks, and theirs in turn (libraries only: the servers
    # need no perl, debconf or MTA).
    seen: set[str] = set(PACKAGES)
    pending = list(debs.glob("*.deb"))
    while pending:
        wanted = []
        for deb in pending:
            for name in _library_dependencies(deb):
                if name not in seen:
                    seen.add(name)
                    wanted.append(name)
        missing = [name for name in wanted if not _installed(name)]
        before = set(debs.glob("*.deb"))
        if missing:
            _download(debs, missing)
        pending = sorted(set(debs.glob("*.deb")) - before)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/lintian", "etc", "var", "lib/systemd"):
        shutil.rmtree(root / junk, ignore_errors=True)
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    for libdir in _lib_dirs(root):
        subprocess.run([ldconfig, "-n", str(libdir)], check=True, capture_output=True)  # soname links
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(map(str, _lib_dirs(root)))}
    for binary in ("usr/lib/cyrus/bin/master", "usr/lib/cyrus/bin/imapd", "usr/sbin/saslpasswd2"):
        out = subprocess.run(["ldd", str(root / binary)], env=env, capture_output=True, text=True).stdout
        if "not found" in out:
            raise RuntimeError(f"{binary} lacks libraries after unpacking:\n{out}")


def _download(directory: Path, packages: list[str] | tuple[str, ...]) -> None:
    command = ["apt-get", "download", "-q"]
    if os.geteuid() == 0:
        command += ["-o", "APT::Sandbox::User=root"]  # _apt cannot write into our directory
    for attempt in (1, 2):
        result = subprocess.run([*command, *packages], cwd=directory, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if (
            attempt == 1
            and os.geteuid() == 0
            and re.search(r"Unable to locate|no installation candidate|Failed to fetch|404", result.stderr)
        ):
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)  # lists missing
            continue
        raise RuntimeError(f"apt-get download {' '.join(packages)} failed: {result.stderr.strip()}")


def _deb_field(deb: Path, field: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True, text=True
    ).stdout.strip()


def _library_dependencies(deb: Path) -> list[str]:
    names = []
    for clause in _deb_field(deb, "Depends").split(","):
        alternatives = [re.split(r"[\s:(]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
        installed = [name for name in alternatives if _installed(name)]
        name = (installed or alternatives)[0]
        if name.startswith("lib") and name not in SKIPPED_DEPENDENCIES:
            names.append(name)
    return names


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and result.stdout.startswith("ii")


def _lib_dirs(root: Path) -> list[Path]:
    return [
        Path(p)
        for p in sorted(glob.glob(str(root / "usr/lib/*-linux-gnu*")) + glob.glob(str(root / "lib/*-linux-gnu*")))
    ]


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether uid/gid may traverse every directory down to path (no ACLs here)."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if uid == 0:
            continue
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
        if not st.st_mode & bit:
            return False
    return True


# ---------------------------------------------------------------------- the server
class CyrusServer:
    """One private Cyrus instance; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        unixhierarchysep: bool = False,
        altnamespace: bool = False,
        options: Mapping[str, str] | None = None,
        directory: str | Path | None = None,
    ) -> None:
        """`options`: extra imapd.conf settings (e.g. {"reject8bit": "yes"})."""
        self.unixhierarchysep = unixhierarchysep
        self.altnamespace = altnamespace
        self.options = dict(options or {})
        self.separator = "/" if unixhierarchysep else "."
        self.prefix = "" if altnamespace else "INBOX" + self.separator
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="cyrus-"))
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._admin: imaplib.IMAP4 | None = None
        self._admin_password = secrets.token_urlsafe(16)
        self._users = itertools.count(1)
        self._lock = threading.Lock()
        self.tree: Path | None = None  # the unpacked packages this server runs from
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("dovecot")
            except KeyError:
                entry = pwd.getpwnam("nobody")
            self.run_uid, self.run_gid = entry.pw_uid, entry.pw_gid
            self._as_user = ["setpriv", f"--reuid={self.run_uid}", f"--regid={self.run_gid}", "--clear-groups"]
        else:
            self.run_uid, self.run_gid = os.getuid(), os.getgid()
            self._as_user = []
        self.run_user = pwd.getpwuid(self.run_uid).pw_name
        self.run_group = grp.getgrgid(self.run_gid).gr_name

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> CyrusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cert_file(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def config_file(self) -> Path:
        return self.dir / "imapd.conf"

    @property
    def log_file(self) -> Path:
        return self.dir / "master.log"

    @property
    def sasldb(self) -> Path:
        return self.dir / "sasldb2"

    def start(self, timeout: float = 15.0) -> None:
        tree = cyrus_tree()
        for sub in ("conf", "spool", "sieve"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.cert_file.exists():
            generate_certificate(self.dir)
        if not _reachable(tree, self.run_uid, self.run_gid) or re.search(r"\s", str(tree)):
            # root's home is private: give the server user its own links to the same files
            local = self.dir / "cyrus"
            if not local.exists():
                shutil.copytree(tree, local, symlinks=True, copy_function=_link_or_copy)
            tree = local
        self.tree = tree
        self.config_file.write_text(self._imapd_conf())
        (self.dir / "cyrus.conf").write_text(self._cyrus_conf())
        self._chown_tree()
        self._saslpasswd(ADMIN, self._admin_password)
        # A session leader of its own, so stop() and the watchdog signal exactly its process group.
        self._proc = subprocess.Popen(
            [
                *self._as_user,
                str(tree / "usr/lib/cyrus/bin/master"),
                *("-C", str(self.config_file), "-M", str(self.dir / "cyrus.conf")),
                *("-p", str(self.dir / "master.pid"), "-D", "-L", str(self.log_file)),
            ],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self._proc.pid), str(self.dir) if self._own_dir else ""],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            if self._greets(self.port) and self._greets(self.tls_port, tls=True):
                with self._lock:
                    self._admin_client()
                return
            time.sleep(0.05)
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"cyrus did not start: {log[-2000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.shutdown()
                self._admin = None
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # master stops its imapd children too
            # Wait for master without reaping it: while it is unreaped its pid (the group id)
            # cannot be reused, so the SIGKILL below reaches only what we started.
            deadline = time.monotonic() + min(timeout, 2.0)
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                        break
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers; a throwaway server need not exit gracefully
            proc.wait()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _greets(self, port: int, tls: bool = False) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=2) as sock:
                if tls:
                    import ssl

                    context = ssl.create_default_context(cafile=str(self.cert_file))
                    context.check_hostname = False
                    with context.wrap_socket(sock) as tls_sock:
                        return tls_sock.recv(100).startswith(b"* OK")
                return sock.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def _env(self) -> dict[str, str]:
        assert self.tree is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SASL_", "CYRUS_"))}
        env["LD_LIBRARY_PATH"] = ":".join(map(str, _lib_dirs(self.tree)))
        plugins = [str(p) for p in _lib_dirs(self.tree) if (p / "sasl2").is_dir()]
        if plugins:  # the SASL plugins had to be unpacked too: look there first, then system-wide
            system = glob.glob("/usr/lib/*-linux-gnu*/sasl2")
            env["SASL_PATH"] = ":".join([f"{p}/sasl2" for p in plugins] + system)
        return env

    # ------------------------------------------------------------------ users
    def new_user(
        self, password: str | None = None, *, login: str | None = None, quota_bytes: int | None = None
    ) -> User:
        """A fresh account with an empty INBOX.  `quota_bytes` sets a STORAGE quota on it
        (Cyrus counts in KiB: rounded up to whole KiB)."""
        password = password or secrets.token_urlsafe(12)
        with self._lock:
            login = login or f"u{next(self._users)}-{secrets.token_hex(3)}"
            self._saslpasswd(login, password)
            mailbox = f"user{self.separator}{login}"
            typ, data = self._admin_command("CREATE", mailbox)
            if typ != "OK":
                raise RuntimeError(f"CREATE {mailbox}: {typ} {data}")
            if quota_bytes is not None:
                typ, data = self._admin_command("SETQUOTA", mailbox, f"(STORAGE {math.ceil(quota_bytes / 1024)})")
                if typ != "OK":
                    raise RuntimeError(f"SETQUOTA {mailbox}: {typ} {data}")
        return User(login=login, password=password, home=self.dir / "spool")

    def _saslpasswd(self, login: str, password: str) -> None:
        assert self.tree is not None
        subprocess.run(
            [
                *self._as_user,
                str(self.tree / "usr/sbin/saslpasswd2"),
                *("-p", "-c", "-f", str(self.sasldb), "-u", SERVERNAME, login),
            ],
            input=password.encode(),
            env=self._env(),
            check=True,
            capture_output=True,
        )

    def _admin_client(self) -> imaplib.IMAP4:
        if self._admin is None:
            client = imaplib.IMAP4(self.host, self.port, timeout=20)
            client.login(ADMIN, self._admin_password)
            self._admin = client
        return self._admin

    def _admin_command(self, command: str, *args: str) -> tuple[str, list]:
        for attempt in (1, 2):
            try:
                return self._admin_client()._simple_command(command, *args)
            except (imaplib.IMAP4.abort, OSError):
                self._admin = None  # the server dropped the connection: log in again once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ config
    def _chown_tree(self) -> None:
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(self.dir):
            if root == str(self.dir) and "cyrus" in dirs:
                dirs.remove("cyrus")  # links to the cache's files: leave their owner alone
            os.chown(root, self.run_uid, self.run_gid)
            for name in files:
                os.chown(os.path.join(root, name), self.run_uid, self.run_gid)
        (self.dir / "key.pem").chmod(0o600)

    def _imapd_conf(self) -> str:
        d = self.dir
        settings = {
            "configdirectory": f"{d}/conf",
            "defaultpartition": "default",
            "partition-default": f"{d}/spool",
            "sievedir": f"{d}/sieve",
            "cyrus_user": self.run_user,
            "cyrus_group": self.run_group,
            "servername": SERVERNAME,
            "syslog_prefix": f"imapcopy-test-cyrus-{self.port}",
            "admins": ADMIN,
            "allowplaintext": "yes",
            "sasl_pwcheck_method": "auxprop",
            "sasl_auxprop_plugin": "sasldb",
            "sasl_sasldb_path": str(self.sasldb),
            "sasl_mech_list": "PLAIN LOGIN",
            "unixhierarchysep": "yes" if self.unixhierarchysep else "no",
            "altnamespace": "yes" if self.altnamespace else "no",
            "tls_server_cert": f"{d}/cert.pem",
            "tls_server_key": f"{d}/key.pem",
            "failedloginpause": "0",  # Cyrus waits 3 s after a failed login; tests need not
            **self.options,
        }
        return "# generated by tests/support/cyrus.py\n" + "".join(f"{k}: {v}\n" for k, v in settings.items())

    def _cyrus_conf(self) -> str:
        assert self.tree is not None
        imapd = f"{self.tree}/usr/lib/cyrus/bin/imapd -C {self.config_file}"
        return (
            "# generated by tests/support/cyrus.py: IMAP only\n"
            "SERVICES {\n"
            f'  imap cmd="{imapd}" listen="{self.host}:{self.port}" prefork=0\n'
            f'  imaps cmd="{imapd} -s" listen="{self.host}:{self.tls_port}" prefork=0\n'
            "}\n"
        )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# Runs in its own process: waits for our end of its stdin to close (we exited, however), then
# stops the master's process group and removes the server's directory.
_WATCHDOG = """
import os, shutil, signal, sys, time
pid, directory = int(sys.argv[1]), sys.argv[2]
sys.stdin.buffer.read()
try:
    os.killpg(pid, signal.SIGTERM)
    for _ in range(20):
        time.sleep(0.1)
        os.killpg(pid, 0)
    os.killpg(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
if directory:
    shutil.rmtree(directory, ignore_errors=True)
"""


if __name__ == "__main__":  # manual check: start a server and print how to reach it
    started = time.monotonic()
    with CyrusServer(unixhierarchysep="--slash" in sys.argv, altnamespace="--alt" in sys.argv) as srv:
        u = srv.new_user("secret", login="alice")
        print(
            f"cyrus {CYRUS_VERSION}: imap {srv.port} (STARTTLS) imaps {srv.tls_port} user alice/secret "
            f"prefix {srv.prefix!r} separator {srv.separator!r} dir {srv.dir} "
            f"(ready in {time.monotonic() - started:.1f} s)"
        )
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
