"""Throwaway Dovecot IMAP servers for tests and benchmarks.

Each `DovecotServer` lives in its own temporary directory (config, self-signed certificate,
passwd-file, maildirs, logs), listens on free loopback ports (implicit TLS and a plain port that
offers STARTTLS) and is stopped by signalling only the master pid it started.  Users are added on
the fly (`new_user()`): Dovecot re-reads the passwd-file when it changes, so every test can get a
fresh, empty account from one long-running server.

When running as root the instance runs as the `dovecot` system user via setpriv, because Dovecot
refuses to run its login and mail processes as root.

    with DovecotServer(Profile.slash()) as server:
        user = server.new_user()
        print(server.port, user.login, user.password)
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT_BINARY = shutil.which("dovecot") or "/usr/sbin/dovecot"


# What the providers advertise after login, restricted to what Dovecot 2.3 implements.  Dovecot
# still accepts every command it knows, advertised or not: put tests/support/imap_proxy.py in front
# (Quirks(refuse_unadvertised=True)) to have unadvertised ones refused.
GMAIL_CAPABILITY = (
    "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID CHILDREN UIDPLUS ENABLE MOVE CONDSTORE ESEARCH "
    "LIST-EXTENDED LIST-STATUS LITERAL- SPECIAL-USE"
)
EXCHANGE_CAPABILITY = "IMAP4 IMAP4rev1 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"
YAHOO_CAPABILITY = "IMAP4rev1 ID MOVE NAMESPACE UIDPLUS LITERAL+ CHILDREN UNSELECT SPECIAL-USE"
BARE_CAPABILITY = "IMAP4rev1"


@dataclass(frozen=True)
class Profile:
    """What kind of server to imitate."""

    name: str
    separator: str = "/"
    prefix: str = ""  # personal namespace prefix, e.g. "INBOX."
    # special folders auto-created for every user: name -> SPECIAL-USE attribute ("" = none)
    special_folders: dict[str, str] = field(default_factory=dict)
    quota: bool = False  # load the quota plugin (per-user limits via new_user(quota_bytes=...))
    max_keyword_length: int = 50
    layout: str = ""  # "fs" allows '.' in folder names (Maildir++ refuses them)
    max_connections_per_user: int = 100
    fsync: str = "never"  # tests do not need durability; benchmarks use "optimized" (Dovecot's default)
    append_limit: int | None = None  # enforce a message size limit (quota_max_mail_size) ...
    advertise_append_limit: bool = True  # ... and announce it as APPENDLIMIT=n (RFC 7889)
    # Post-login CAPABILITY list (Dovecot's imap_capability): None = Dovecot's own list; "+X Y" adds
    # to it; anything else replaces it outright.  An explicit list also replaces the pre-login list
    # (Dovecot still appends STARTTLS and the AUTH= mechanisms there, so LOGIN keeps working) and
    # then Dovecot adds no LITERAL+/LITERAL- by itself: name it in the list.
    capability: str | None = None
    # imap_literal_minus: the parser accepts {n+} only up to 4096 bytes; beyond that Dovecot sends
    # "* BYE [TOOBIG] Non-synchronizing literal size too large" and disconnects (RFC 7888).
    literal_minus: bool = False
    extra_config: str = ""

    @classmethod
    def dot(cls) -> Profile:
        """Courier/Cyrus style: 'INBOX.' prefix, '.' separator, RFC 6154 attributes."""
        return cls(
            name="dot",
            separator=".",
            prefix="INBOX.",
            special_folders={
                "Sent": "\\Sent",
                "Drafts": "\\Drafts",
                "Trash": "\\Trash",
                "Junk": "\\Junk",
                "Archive": "\\Archive",
            },
            quota=True,
        )

    @classmethod
    def slash(cls) -> Profile:
        """Exchange-like names without SPECIAL-USE: only localized-name mapping finds them."""
        return cls(
            name="slash",
            separator="/",
            special_folders={"Sent Items": "", "Deleted Items": "", "Junk E-mail": ""},
            quota=True,
            max_keyword_length=200,
        )

    @classmethod
    def plain(cls) -> Profile:
        """A bare server: '/' separator, no special folders, lenient folder names (LAYOUT=fs)."""
        return cls(name="plain", separator="/", max_keyword_length=200, layout="fs")

    @classmethod
    def bench(cls) -> Profile:
        """Like /work/shared/bench/imapd.sh: '/' separator, no special folders, default fsync."""
        return cls(name="bench", separator="/", max_keyword_length=200, fsync="optimized")

    @classmethod
    def gmail_like(cls) -> Profile:
        """Gmail: its capability list (LITERAL-, no MULTIAPPEND), "[Gmail]/..." special folders.

        Labels are folders; fill an account the way Gmail shows it with tests/support/gmail.py, and
        put an ImapProxy(Quirks(gmail=True, objectid=...)) in front for X-GM-EXT-1 / X-GM-MSGID."""
        return cls(
            name="gmail",
            separator="/",
            special_folders={
                "[Gmail]/All Mail": "\\All",
                "[Gmail]/Sent Mail": "\\Sent",
                "[Gmail]/Drafts": "\\Drafts",
                "[Gmail]/Trash": "\\Trash",
                "[Gmail]/Spam": "\\Junk",
                "[Gmail]/Starred": "\\Flagged",
                "[Gmail]/Important": "\\Important",
            },
            quota=True,  # QUOTA is advertised: GETQUOTAROOT must work
            max_keyword_length=200,
            layout="fs",  # labels may contain '.'
            capability=GMAIL_CAPABILITY,
            literal_minus=True,
            extra_config="plugin {\n  quota_rule = *:storage=15G\n}\n",  # a quota root, like Gmail's 15 GB
        )

    @classmethod
    def exchange_like(cls) -> Profile:
        """Microsoft 365 / Exchange: its capability list, localized folders without SPECIAL-USE.

        Size estimates and keywords that are not kept need ImapProxy(Quirks(size_shift=...,
        no_keywords=True)) in front."""
        return cls(
            name="exchange",
            separator="/",
            special_folders={"Sent Items": "", "Deleted Items": "", "Junk Email": "", "Drafts": "", "Archive": ""},
            max_keyword_length=200,
            layout="fs",
            capability=EXCHANGE_CAPABILITY,
        )

    @classmethod
    def yahoo_like(cls) -> Profile:
        """Yahoo: its capability list (OBJECTID only through ImapProxy(Quirks(objectid=True)))."""
        return cls(
            name="yahoo",
            separator="/",
            special_folders={
                "Sent": "\\Sent",
                "Trash": "\\Trash",
                "Bulk Mail": "\\Junk",
                "Draft": "\\Drafts",
                "Archive": "\\Archive",
            },
            max_keyword_length=200,
            layout="fs",
            capability=YAHOO_CAPABILITY,
        )

    @classmethod
    def bare(cls) -> Profile:
        """Plain RFC 3501: CAPABILITY is "IMAP4rev1" after login (plus STARTTLS/AUTH= before)."""
        return cls(name="bare", separator="/", max_keyword_length=200, capability=BARE_CAPABILITY)

    @classmethod
    def limited(cls, append_limit: int = 100_000) -> Profile:
        """Advertises APPENDLIMIT (RFC 7889) and rejects bigger messages; quota plugin loaded."""
        return cls(name="limited", separator="/", quota=True, append_limit=append_limit)


@dataclass(frozen=True)
class User:
    login: str
    password: str = field(repr=False)
    home: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class DovecotServer:
    """One private Dovecot instance; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        profile: Profile,
        directory: str | Path | None = None,
        pool_size: int = 60,
        oauth2_introspection_url: str | None = None,
        oauth2_mechanisms: tuple[str, ...] = ("oauthbearer", "xoauth2"),
    ) -> None:
        self.profile = profile
        # OAuth2 accounts: AUTHENTICATE OAUTHBEARER / XOAUTH2, each bearer token checked by RFC 7662
        # introspection at this URL (http://client:secret@host:port/...); passwords still work.
        self.oauth2_introspection_url = oauth2_introspection_url
        self.oauth2_mechanisms = oauth2_mechanisms  # Microsoft 365 offers XOAUTH2 alone
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix=f"dovecot-{profile.name}-"))
        self.port = free_port()
        self.tls_port = free_port()
        self.host = "127.0.0.1"
        self._pid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._users = itertools.count(1)
        self._lock = threading.Lock()
        self._pool: list[User] = []
        self.pool_size = pool_size
        if os.geteuid() == 0:
            entry = pwd.getpwnam("dovecot")
            self.run_uid, self.run_gid, self.run_user = entry.pw_uid, entry.pw_gid, "dovecot"
            self._as_user = [
                "setpriv",
                f"--reuid={self.run_uid}",
                f"--regid={self.run_gid}",
                "--clear-groups",
            ]
        else:
            self.run_uid, self.run_gid = os.getuid(), os.getgid()
            self.run_user = pwd.getpwuid(self.run_uid).pw_name
            self._as_user = ["setpriv"]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cert_file(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def log_file(self) -> Path:
        return self.dir / "dovecot.log"

    @property
    def config_file(self) -> Path:
        return self.dir / "dovecot.conf"

    @property
    def passwd_file(self) -> Path:
        return self.dir / "passwd"

    def start(self, timeout: float = 10.0) -> None:
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.cert_file.exists():
            generate_certificate(self.dir)
        self.passwd_file.touch()
        self._pool = [self._write_user(None, []) for _ in range(self.pool_size)]
        self.config_file.write_text(self._config())
        if self.oauth2_introspection_url:
            (self.dir / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.oauth2_introspection_url}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                "force_introspection = yes\n"
            )
        self._chown_tree()
        # Foreground master (-F) as our child, plus a watchdog that stops it if this process dies
        # without calling stop() (even by SIGKILL), so no orphan instances pile up.
        self._proc = subprocess.Popen(
            [*self._as_user, DOVECOT_BINARY, "-F", "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._pid = self._proc.pid  # setpriv execs dovecot: same pid
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self._pid), str(self.dir) if self._own_dir else ""],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            if self._answers(self.port) and self._answers(self.tls_port):
                return
            time.sleep(0.05)
        log = self.log_file.read_text() if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"dovecot did not start: {log[-2000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc, self._pid = self._proc, None, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                # A throwaway server need not shut down gracefully; its children exit with it.
                proc.wait(min(timeout, 1.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill_sessions(self, login: str) -> None:
        """Drop every IMAP session of one user (like a server restart would)."""
        subprocess.run(
            [*self._as_user, "doveadm", "-c", str(self.config_file), "kick", login],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    # ------------------------------------------------------------------ users
    def new_user(
        self,
        password: str | None = None,
        *,
        login: str | None = None,
        quota_bytes: int | None = None,
        max_mail_size: int | None = None,
    ) -> User:
        """A fresh, empty account.

        Dovecot re-reads the passwd-file at most once a second, so plain accounts come from a
        pool written before the server started; an account with options (or once the pool is
        used up) is appended and we wait until Dovecot can have noticed.
        """
        if password is None and login is None and quota_bytes is None and max_mail_size is None:
            with self._lock:
                if self._pool:
                    return self._pool.pop()
        extra = []
        if quota_bytes is not None:
            extra.append(f"userdb_quota_rule=*:storage={quota_bytes}B")
        if max_mail_size is not None:
            extra.append(f"userdb_quota_max_mail_size={max_mail_size}B")
        user = self._write_user(password, extra, login)
        time.sleep(1.1)
        return user

    def _write_user(self, password: str | None, extra: list[str], login: str | None = None) -> User:
        """`login` must be unique on this server (a non-ASCII one needs `auth_username_chars =`)."""
        with self._lock:
            login = login or f"u{next(self._users)}-{secrets.token_hex(3)}"
            password = password or secrets.token_urlsafe(12)
            home = self.dir / "mail" / login
            line = f"{login}:{{PLAIN}}{password}:{self.run_uid}:{self.run_gid}::{home}::{' '.join(extra)}\n"
            with self.passwd_file.open("a", encoding="utf-8") as f:
                f.write(line)
        return User(login=login, password=password, home=home)

    def maildir(self, user: User) -> Path:
        return user.home / "Maildir"

    # ------------------------------------------------------------------ config
    def _chown_tree(self) -> None:
        if os.geteuid() != 0:
            return
        for root, _dirs, files in os.walk(self.dir):
            os.chown(root, self.run_uid, self.run_gid)
            for name in files:
                os.chown(os.path.join(root, name), self.run_uid, self.run_gid)
        key = self.dir / "key.pem"
        key.chmod(0o600)

    def _oauth2_passdb(self) -> str:
        if not self.oauth2_introspection_url:
            return ""
        return (
            f"passdb {{\n  driver = oauth2\n  mechanisms = {' '.join(self.oauth2_mechanisms)}\n"
            f"  args = {self.dir}/oauth2.conf.ext\n}}\n"
        )

    def _config(self) -> str:
        p = self.profile
        d = self.dir
        mailboxes = "\n".join(
            textwrap.dedent(
                f"""\
                  mailbox "{name}" {{
                    auto = subscribe
                    {f"special_use = {attr}" if attr else ""}
                  }}"""
            )
            for name, attr in p.special_folders.items()
        )
        quota_plugins = "quota imap_quota" if p.quota else ""
        # With OAuth2 on, passwords are checked for PLAIN and LOGIN only, tokens by the oauth2 passdb.
        password_mechanisms = "\n  mechanisms = plain login" if self.oauth2_introspection_url else ""
        quota_settings = (
            "plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n  quota_rule = *:storage=0\n"
            + (f"  quota_max_mail_size = {p.append_limit}B\n" if p.append_limit else "")
            + "}\n"
            if p.quota
            else ""
        )
        # One imap_capability line: an explicit list (or "+additions") combined with APPENDLIMIT.
        advertised = [p.capability] if p.capability else []
        if p.append_limit and p.advertise_append_limit:
            advertised.append(f"APPENDLIMIT={p.append_limit}")
        capability = ""
        if advertised:
            capability = f"imap_capability = {'' if p.capability else '+'}{' '.join(advertised)}"
        if p.literal_minus:
            capability += "\nimap_literal_minus = yes"
        return f"""\
# generated by apps/localmail/dovecot.py ({p.name})
instance_name = dovecot-test-{p.name}-{self.port}
base_dir = {d}/run
state_dir = {d}/state
listen = 127.0.0.1
protocols = imap
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
default_internal_user = {self.run_user}
default_internal_group = {self.run_user}
default_login_user = {self.run_user}
first_valid_uid = {self.run_uid}
last_valid_uid = {self.run_uid}
first_valid_gid = {self.run_gid}
last_valid_gid = {self.run_gid}
disable_plaintext_auth = no
auth_mechanisms = plain login{" " + " ".join(self.oauth2_mechanisms) if self.oauth2_introspection_url else ""}
auth_cache_size = 0
auth_failure_delay = 0
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
mail_location = maildir:~/Maildir{":LAYOUT=" + p.layout if p.layout else ""}
{capability}
mail_fsync = {p.fsync}
mail_max_keyword_length = {p.max_keyword_length}
mail_plugins = $mail_plugins {quota_plugins.split(" ")[0] if p.quota else ""}
namespace inbox {{
  inbox = yes
  separator = {p.separator}
  prefix = {p.prefix}
{mailboxes}
}}
{quota_settings}
{self._oauth2_passdb()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd{password_mechanisms}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
}}
protocol imap {{
  mail_max_userip_connections = {p.max_connections_per_user}
  mail_plugins = $mail_plugins {"imap_quota" if p.quota else ""}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
  chroot =
  user = $default_login_user
}}
service imap {{
  process_limit = 256
}}
service anvil {{
  chroot =
}}
service auth {{
  user = $default_internal_user
}}
service auth-worker {{
  user = $default_internal_user
}}
service doveadm {{
  user = $default_internal_user
}}
{p.extra_config}
"""


# Runs in its own process: waits for our end of its stdin to close (we exited, however), then
# stops the server it guards and removes its directory.
_WATCHDOG = """
import os, shutil, signal, sys, time
pid, directory = int(sys.argv[1]), sys.argv[2]
sys.stdin.buffer.read()
try:
    os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
if directory:
    shutil.rmtree(directory, ignore_errors=True)
"""


if __name__ == "__main__":  # manual check: start a server and print how to reach it
    import sys

    profile = getattr(Profile, sys.argv[1] if len(sys.argv) > 1 else "slash")()
    with DovecotServer(profile) as srv:
        u = srv.new_user("secret")
        print(f"{profile.name}: imap {srv.port} imaps {srv.tls_port} user {u.login}/secret dir {srv.dir}")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
