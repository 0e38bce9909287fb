"""Every problem line a customer reads, rendered from events the engine really emits.

Real copies between real servers produce each kind of loss: a Dovecot that refuses long keywords,
big messages and dots in folder names, with a proxy in front that rewrites one message and
empties another (which Dovecot then refuses); a server whose folder names no IMAP command can
carry; a Gmail-like account with archived mail.  The report email (text and HTML) and the status
page are then rendered in every language: each line names its folder, keyword or new name, and no
value is left as a bare placeholder ("cannot store the label —")."""

from __future__ import annotations

import email.utils
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.core import mail as django_mail
from django.test import Client
from django.utils import translation

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.sync import jobs, losses, services
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.support import gmail
from tests.support.hostile_imap import LOGIN, PASSWORD, HostileImapServer, Scenario
from tests.support.imap_proxy import ImapProxy, Quirks
from tests.support.report_address import confirmed_report_address

pytestmark = pytest.mark.django_db

LANGUAGES = ["en", "fr", "de", "es", "it", "pt"]
APPEND_LIMIT = 100_000
LONG_KEYWORD = "Project-" + "x" * 52  # 60 characters: the source keeps it, the destination's limit is 50
DOTTED_FOLDER = "Releases v1.2"  # a Maildir++ destination refuses the dot: the folder is renamed
REFUSED_SUBJECT = "Refused by the proxy"
REWRITTEN_SUBJECT = "Rewritten by the proxy"
BIG_SUBJECT = "Scanned contract"


# --- the servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenient_server() -> Iterator[DovecotServer]:
    """Keywords up to 200 characters, dots allowed in folder names."""
    with DovecotServer(Profile.plain()) as server:
        yield server


@pytest.fixture(scope="module")
def strict_server() -> Iterator[DovecotServer]:
    """Keywords up to 50 characters, no dot in folder names, messages up to 100 kB (APPENDLIMIT)."""
    with DovecotServer(Profile.limited(append_limit=APPEND_LIMIT)) as server:
        yield server


@pytest.fixture(scope="module")
def gmail_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.gmail_like()) as server:
        yield server


def message(subject: str, *, folder: str = "INBOX", size: int = 2000, flags: tuple = ("\\Seen",)) -> mail.Mail:
    date = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
    header = (
        f"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.format_datetime(date)}\r\nMessage-ID: <{len(subject)}.{size}@example.org>\r\n\r\n"
    )
    return mail.Mail((folder,), header.encode() + b"x" * size + b"\r\n", flags, date)


def proxy_quirks(body: bytes) -> bytes:
    """The destination's proxy: one message arrives empty (refused), one with its 8-bit header
    bytes replaced, as Cyrus stores them (read back and found changed)."""
    if REFUSED_SUBJECT.encode() in body:
        return b""  # Dovecot: "Can't save a zero byte message"
    if REWRITTEN_SUBJECT.encode() in body:
        header, _, rest = body.partition(b"\r\n\r\n")
        return re.sub(rb"[\x80-\xff]", b"X", header) + b"\r\n\r\n" + rest
    return body


def account(make_account, address: str, login: str, password: str, port: int):
    return make_account(address, login=login, password=password, host="127.0.0.1", port=port, security="none")


def run_job(make_account, source: tuple, destination: tuple) -> SyncJob:
    job = services.job_create(
        source=account(make_account, "alice@example.org", *source),
        destination=account(make_account, "alice@example.net", *destination),
    )
    confirmed_report_address(job)
    jobs.run_copy_job(job.pk)
    job = SyncJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    return job


# --- the jobs ---------------------------------------------------------------------------------


@pytest.fixture
def job_with_losses(make_account, lenient_server, strict_server) -> SyncJob:
    """Keywords dropped, a message too large, one refused, one rewritten, a folder renamed."""
    source_user, destination_user = lenient_server.new_user(), strict_server.new_user()
    source = mail.Account("127.0.0.1", lenient_server.port, source_user.login, source_user.password, "", "/")
    mail.upload(
        source,
        [
            message("Weekly report", flags=("\\Seen", LONG_KEYWORD)),
            message(BIG_SUBJECT, size=APPEND_LIMIT + 5000),
            message(REFUSED_SUBJECT),
            message(f"{REWRITTEN_SUBJECT}: réunion", folder=DOTTED_FOLDER),
        ],
    )
    with ImapProxy(strict_server.port, Quirks(rewrite_message=proxy_quirks)) as proxy:
        return run_job(
            make_account,
            (source_user.login, source_user.password, lenient_server.port),
            (destination_user.login, destination_user.password, proxy.port),
        )


@pytest.fixture
def job_with_hostile_folders(make_account, strict_server) -> SyncJob:
    """Folder names no command can carry (refused), and a path escape (renamed)."""
    destination_user = strict_server.new_user()
    with HostileImapServer(Scenario.HOSTILE_NAMES) as server:
        return run_job(
            make_account,
            (LOGIN, PASSWORD, server.port),
            (destination_user.login, destination_user.password, strict_server.port),
        )


@pytest.fixture
def job_with_archived_mail(make_account, gmail_server, strict_server) -> SyncJob:
    """Gmail's archived mail (in All Mail only) copied into Archive."""
    source_user, destination_user = gmail_server.new_user(), strict_server.new_user()
    source = mail.Account("127.0.0.1", gmail_server.port, source_user.login, source_user.password, "", "/")
    gmail.build_gmail_mailbox(source)
    with ImapProxy(gmail_server.port, Quirks(gmail=True, refuse_unadvertised=True)) as proxy:
        return run_job(
            make_account,
            (source_user.login, source_user.password, proxy.port),
            (destination_user.login, destination_user.password, strict_server.port),
        )


# --- what the customer reads -----------------------------------------------------------------

# A value left empty where the sentence needs one: the fallback dash alone in quotes or brackets,
# a line ending on it, two in a row, or a placeholder never filled.
BARE_PLACEHOLDER = re.compile(
    r"[“«„\"]\s*—\s*[”»“\"]|\(\s*—|\s—\s?[,.;:)]|—[ \t]*$|—\s+—|%\(\w+\)|\{\{|\}\}", re.MULTILINE
)


@dataclass
class Rendered:
    """One report, in one language, as its reader sees it."""

    language: str
    email_text: str
    email_html: str  # its visible text
    status_page: str  # its visible text

    def each(self) -> dict[str, str]:
        return {"email text": self.email_text, "email HTML": self.email_html, "status page": self.status_page}


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"[ \t]+", " ", re.sub(r"<[^>]+>", " ", page)))


def status_path(report_text: str) -> str:
    """The report's link to the status page, as a path on the site."""
    (path,) = set(re.findall(r"https?://[^/\s]+(/(?:[a-z]{2}/)?status/\S+/)", report_text))
    return path


def rendered(job: SyncJob, language: str) -> Rendered:
    SyncJob.objects.filter(pk=job.pk).update(language=language)
    django_mail.outbox.clear()
    services.job_send_report(job=job, again=True)
    (report,) = django_mail.outbox
    (report_html, _type) = report.alternatives[0]
    page = Client().get(status_path(report.body))
    assert page.status_code == 200
    return Rendered(language, report.body, visible_text(report_html), visible_text(page.content.decode()))


def losses_in_every_language(job: SyncJob, *, on_both: list[str], on_page_only: list[str]) -> None:
    """Each rendering names what it must, in every language, with no value left empty and no
    English sentence left in another language."""
    with translation.override("en"):
        english = [section.heading for section in losses.job_losses(job)]
        english += [section.heading for section in losses.job_losses(job, for_email=True)]
    assert english, "the job has losses to report"
    for language in LANGUAGES:
        report = rendered(job, language)
        for where, text in report.each().items():
            bare = [match.group(0) for match in BARE_PLACEHOLDER.finditer(text)]
            assert bare == [], f"{language} {where}: a value is missing in {bare}"
            if language != "en":
                untranslated = [heading for heading in english if heading.split(":")[0] in text]
                assert untranslated == [], f"{language} {where}"
            for name in on_both + (on_page_only if where == "status page" else []):
                assert name in text, f"{language} {where} does not name {name!r}"
        for name in on_page_only:  # subjects, keywords and server answers stay off the email
            assert name not in report.email_text + report.email_html, f"{language} email names {name!r}"
        assert f'lang="{language}"' in Client().get(status_path(report.email_text)).content.decode()


def test_keywords_sizes_refusals_rewrites_and_renamed_folders_are_named(job_with_losses):
    kinds = set(JobEvent.objects.filter(job=job_with_losses).values_list("kind", flat=True))
    assert {"keyword_dropped", "message_skipped", "message_failed", "message_altered", "folder_renamed"} <= kinds
    losses_in_every_language(
        job_with_losses,
        on_both=["INBOX", DOTTED_FOLDER, DOTTED_FOLDER.replace(".", "_")],
        on_page_only=[LONG_KEYWORD, BIG_SUBJECT, REFUSED_SUBJECT, "Can't save a zero byte message", REWRITTEN_SUBJECT],
    )


def test_folders_refused_or_renamed_for_their_names_are_named(job_with_hostile_folders):
    kinds = set(JobEvent.objects.filter(job=job_with_hostile_folders).values_list("kind", flat=True))
    assert {"folder_refused", "folder_renamed"} <= kinds
    losses_in_every_language(
        job_with_hostile_folders,
        on_both=["nul_name", "a__X1 DELETE INBOX", "../../etc", "__/__/etc"],
        on_page_only=[],
    )


def test_archived_gmail_messages_name_the_folder_they_went_to(job_with_archived_mail):
    assert JobEvent.objects.filter(job=job_with_archived_mail, kind="archived_found").exists()
    losses_in_every_language(job_with_archived_mail, on_both=["Archive", "4 "], on_page_only=[])
