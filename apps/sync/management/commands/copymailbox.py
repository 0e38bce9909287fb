"""Staff's command line copy: the same engine, job records and checkpoints as the worker.

    python manage.py copymailbox imaps://alice%40example.org@imap.example.org imap://bob@mail.example.net

A rerun with the same two accounts resumes the previous job (only what is missing is copied).

An account that takes no password (Gmail, Microsoft 365) logs in with an OAuth2 access token kept
in a file, `--oauth-token-file source=PATH` (or destination=PATH): the file is read again at each
connection, so a script of the operator's can keep it fresh during a copy of hours."""

from __future__ import annotations

import getpass
import ipaddress
import json
import os
import socket
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from apps.providers.models import Security
from apps.sync import engine, runner, services
from apps.sync.engine.errors import EngineError, ErrorCode
from apps.sync.engine.urls import AccountURL, URLError, parse_imap_url
from apps.sync.models import JobStatus, SyncJob
from apps.sync.options import copy_options_from_settings

SCHEMES = ("imaps", "imap", "imap+plain")
EXIT_OK, EXIT_INCOMPLETE, EXIT_FATAL = 0, 1, 2


class FatalError(CommandError):
    def __init__(self, message: str):
        super().__init__(message, returncode=EXIT_FATAL)


def _is_loopback(host: str) -> bool:
    try:
        return all(
            ipaddress.ip_address(info[4][0]).is_loopback
            for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        )
    except (socket.gaierror, ValueError):
        return False


def parse_account_url(value: str, what: str) -> AccountURL:
    try:
        url = parse_imap_url(value, SCHEMES, require_login=True)
    except URLError as exc:
        raise FatalError(
            what
            + ": "
            + {
                "scheme": f"the URL must start with imaps://, imap:// or imap+plain:// ({value!r})",
                "incomplete": "the URL must name a login and a host, as in imaps://LOGIN@HOST[:PORT]",
                "password": "put no password in the URL; use the environment variable or the prompt",
                "port": "the port is not a number between 1 and 65535",
            }[exc.reason]
        ) from None
    if url.security == Security.NONE and not _is_loopback(url.host):
        raise FatalError(f"{what}: imap+plain:// sends the password in clear and is allowed only to a loopback host")
    return url


def _run_is_dead(job: SyncJob) -> bool:
    """Whether a running job's run is gone: a command line process on this machine that no
    longer exists, or any run silent for longer than the recovery threshold."""
    silent_for = (timezone.now() - (job.heartbeat_at or job.started_at or timezone.now())).total_seconds()
    if silent_for > settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS:
        return True
    prefix = f"copymailbox:{socket.gethostname()}:"
    if job.worker_name.startswith(prefix):
        pid = job.worker_name[len(prefix) :]
        try:
            # A killed process its parent has not reaped yet is a zombie: dead all the same.
            state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        except (ValueError, IndexError, OSError):
            return False
        return state in ("Z", "X")
    return False


@sensitive_variables()
def read_password(variable: str, what: str) -> str:
    password = os.environ.get(variable)
    if password:
        return password
    if sys.stdin.isatty():
        return getpass.getpass(f"Password of the {what} account: ")
    raise FatalError(f"Set {variable} (stdin is not a terminal, so there is no prompt)")


SIDES = ("source", "destination")
# A script that rewrites the token file in place (truncate, then write) leaves it empty for an
# instant: a connection that reads it then waits this long for the new token before giving up.
TOKEN_FILE_PATIENCE_SECONDS = 2.0


class TokenFile:
    """The engine's `oauth_token` for a side whose access token an operator's script keeps in a
    file: read at every (re)connection, so a token renewed meanwhile is the one presented.
    Never holds the token longer than a call, and never shows it (repr, messages)."""

    def __init__(self, path: str, side: str) -> None:
        self.path, self.side = path, side

    def __repr__(self) -> str:
        return f"<TokenFile {self.side} {self.path}>"

    @method_decorator(sensitive_variables())
    def __call__(self) -> str:
        deadline = time.monotonic() + TOKEN_FILE_PATIENCE_SECONDS
        while True:
            try:
                token = Path(self.path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                detail = f"the OAuth token file {self.path} could not be read ({reason})"
                raise EngineError(ErrorCode.OAUTH_REJECTED, detail, self.side) from None
            if token or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not token:
            raise EngineError(ErrorCode.OAUTH_REJECTED, f"the OAuth token file {self.path} is empty", self.side)
        return token


def parse_token_files(values: list[str] | None) -> dict[str, TokenFile]:
    """`--oauth-token-file SIDE=PATH` options, checked now so that a typo fails before any job."""
    token_files: dict[str, TokenFile] = {}
    for value in values or []:
        side, equals, path = value.partition("=")
        side = side.strip().lower()
        if not equals or side not in SIDES or not path:
            raise FatalError(f"--oauth-token-file: expected source=PATH or destination=PATH, not {value!r}")
        if side in token_files:
            raise FatalError(f"--oauth-token-file: the {side} is given twice")
        token_file = TokenFile(path, side)
        try:
            token_file()
        except EngineError as exc:
            raise FatalError(f"--oauth-token-file: {exc.detail}") from None
        token_files[side] = token_file
    return token_files


class ProgressPrinter:
    """A bar on a terminal, a line every few seconds otherwise; always on stderr."""

    def __init__(self, stream, interactive: bool):
        self.stream, self.interactive = stream, interactive
        self.last_line = 0.0

    def __call__(self, progress: engine.Progress) -> None:
        total = progress.messages_total or 1
        handled = progress.messages_copied + progress.messages_skipped + progress.messages_failed
        fraction = min(1.0, handled / total)
        text = (
            f"{handled}/{progress.messages_total} messages, {progress.bytes_copied / 1e6:.1f} MB, "
            f"folder {progress.folders_done}/{progress.folders_total} {progress.current_folder or ''}"
        )
        if self.interactive:
            bar = "#" * int(30 * fraction)
            self.stream.write(f"\r[{bar:<30}] {fraction:4.0%} {text[:80]:<80}")
            self.stream.flush()
        elif time.monotonic() - self.last_line >= 5:
            self.last_line = time.monotonic()
            self.stream.write(f"{fraction:4.0%} {text}\n")
            self.stream.flush()

    def done(self) -> None:
        if self.interactive:
            self.stream.write("\n")


class Command(BaseCommand):
    help = (
        "Copy a whole mailbox from SOURCE_URL to DEST_URL (imaps://LOGIN@HOST[:PORT], imap://…, imap+plain://…). "
        "Passwords come from IMAPCOPY_SOURCE_PASSWORD and IMAPCOPY_DEST_PASSWORD (or a prompt); an account "
        "that signs in with OAuth2 instead takes --oauth-token-file."
    )
    # The system checks (admin, URLconf, templates…) say nothing about a copy and cost ~70 ms of
    # every start; `manage.py check` and the deploy run them.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("source_url")
        parser.add_argument("destination_url")
        parser.add_argument("--cafile", help="trust this extra CA certificate (PEM)")
        parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
        parser.add_argument(
            "--oauth-token-file",
            action="append",
            metavar="SIDE=PATH",
            help=(
                "log the source (source=PATH) or the destination (destination=PATH) in with the OAuth2 access "
                "token in this file (AUTHENTICATE OAUTHBEARER or XOAUTH2) instead of a password; the file is read "
                "again at every connection, so a script may keep it fresh while the copy runs (the command never "
                "renews a token itself). Repeat the option for both sides"
            ),
        )
        parser.add_argument("--dry-run", action="store_true", help="list what would be copied, copy nothing")
        parser.add_argument("--json", action="store_true", help="print one final JSON object on stdout")
        parser.add_argument(
            "--all-mail-as-folder",
            action="store_true",
            help="copy Gmail's All Mail whole as a folder (default: only its archived messages, into Archive)",
        )

    def execute(self, *args, **options):
        # CommandError's returncode is honoured only when run from the command line.
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            if options.get("traceback") or not getattr(exc, "returncode", None):
                raise
            self.stderr.write(f"copymailbox: {exc}")
            sys.exit(exc.returncode)

    @method_decorator(sensitive_variables())
    def handle(
        self, *args, source_url, destination_url, cafile, insecure, dry_run, all_mail_as_folder, oauth_token_file,
        **options,
    ):  # fmt: skip
        source_url_ = parse_account_url(source_url, "source")
        destination_url_ = parse_account_url(destination_url, "destination")
        token_files = parse_token_files(oauth_token_file)
        # A side signed in with a token has no password: the job keeps an empty one, and a rerun
        # without the token file asks for the password as usual.
        source_password = "" if "source" in token_files else read_password("IMAPCOPY_SOURCE_PASSWORD", "source")
        destination_password = (
            "" if "destination" in token_files else read_password("IMAPCOPY_DEST_PASSWORD", "destination")
        )
        if cafile and not os.path.isfile(cafile):
            raise FatalError(f"--cafile: no such file {cafile!r}")

        job = self._job_for(source_url_, destination_url_, source_password, destination_password)
        run = services.job_claim(job_id=job.pk, worker_name=f"copymailbox:{socket.gethostname()}:{os.getpid()}")
        if run is None:
            raise FatalError("the job was claimed by a worker meanwhile")
        printer = ProgressPrinter(sys.stderr, sys.stderr.isatty())
        listed = []

        def on_event(event: engine.Event) -> None:
            if dry_run and event.kind in ("folder_started", "folder_done", "folder_created"):
                listed.append(event)

        options_ = copy_options_from_settings(
            dry_run=dry_run, copy_all_mail_as_folder=all_mail_as_folder or job.copy_all_mail_as_folder
        )
        started = time.monotonic()
        try:
            result = runner.copy_job_mailbox(
                job,
                run=run,
                options=options_,
                check_hosts=False,  # staff name the hosts themselves
                oauth_tokens=token_files,
                ca_file=cafile,
                verify_tls=not insecure,
                progress_listener=printer,
                event_listener=on_event,
            )
        except BaseException:
            services.job_finish(
                job_id=job.pk,
                run=run,
                status=JobStatus.FAILED,
                counters=None,
                error_code="internal_error",
                error_detail="",
            )
            raise
        finally:
            printer.done()
        runner.record_result(job.pk, result, run=run)
        seconds = time.monotonic() - started

        if dry_run:
            for event in listed:
                sys.stderr.write(f"{event.kind}: {event.folder} {event.detail}\n")
        summary = {
            "job": job.pk,
            "status": result.status,
            "error_code": str(result.error_code or "") or None,
            "error_side": result.error_side,
            "folders": result.folders_total,
            "folders_done": result.folders_done,
            "messages_total": result.messages_total,
            "messages_copied": result.messages_copied,
            "messages_skipped": result.messages_skipped,
            "messages_failed": result.messages_failed,
            "bytes_copied": result.bytes_copied,
            "seconds": round(seconds, 3),
            "not_copied": [_message_json(m) for m in result.not_copied],
            "flags_dropped": result.flags_dropped,
            "dropped_keywords": result.dropped_keywords,
            "altered": result.altered_total,
            "altered_messages": [_message_json(m) for m in result.altered],
            "renamed_folders": result.renamed_folders,
            "archived": result.archived,
            "exact": result.exact,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, ensure_ascii=False))
        else:
            self.stderr.write(
                f"{result.status}: {result.messages_copied} copied, {result.messages_skipped} skipped, "
                f"{result.messages_failed} failed, {result.bytes_copied / 1e6:.1f} MB in {seconds:.1f} s"
                + (f" ({result.error_code}: {result.error_detail})" if result.error_code else "")
            )
            for m in result.not_copied:
                self.stderr.write(f"not copied: {m.folder} UID {m.uid} “{m.subject or ''}”: {m.reason} {m.detail}")
            for m in result.altered:
                self.stderr.write(f"changed by the destination: {m.folder} UID {m.uid} “{m.subject or ''}”: {m.reason}")
            if result.flags_dropped:
                self.stderr.write(
                    f"{result.flags_dropped} messages stored without some of their flags or keywords "
                    f"({', '.join(result.dropped_keywords)}): the destination cannot store them"
                )
            if result.archived:
                self.stderr.write(
                    f"{result.archived.get('found', 0)} archived messages (in All Mail only) "
                    f"copied into {result.archived.get('folder')}"
                )
        if result.status == "failed":
            sys.exit(EXIT_FATAL)
        # Anything not copied exactly (left behind, stored without its flags, changed by the destination).
        if not result.exact or result.messages_skipped or result.messages_failed:
            sys.exit(EXIT_INCOMPLETE)

    @method_decorator(sensitive_variables())
    def _job_for(
        self, source: AccountURL, destination: AccountURL, source_password: str, destination_password: str
    ) -> SyncJob:
        """The previous job of the same two accounts (to resume it), or a new one."""
        try:
            return services.job_resume_or_create(
                source=source,
                destination=destination,
                source_password=source_password,
                destination_password=destination_password,
                run_is_dead=_run_is_dead,
            )
        except services.JobStillRunning as exc:
            raise FatalError(f"job {exc.args[0]} for this source is running; a second copy may not run") from None
        except services.JobAlreadyActive:
            raise FatalError("a synchronization job already exists for this source account") from None
        except services.SameMailbox:
            raise FatalError("the destination is the source mailbox itself") from None


def _message_json(message) -> dict:
    return {
        "folder": message.folder,
        "uid": message.uid,
        "date": message.date,
        "subject": message.subject,
        "size": message.size,
        "reason": message.reason,
        "detail": message.detail,
    }
