"""A real worker copying from a hostile IMAP server: the job fails with the code that names the
misbehaviour, in bounded time and memory, and the passwords follow the usual rules."""

import datetime
import email
import email.policy
import threading
import time

import psutil
import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync import services
from apps.sync.error_messages import error_message
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.support.hostile_imap import LOGIN, PASSWORD, HostileImapServer, Scenario
from tests.support.report_address import confirmed_report_address

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# The worker's peak memory, its work horse's included (sampled every 20 ms: ru_maxrss would not do,
# a child started with vfork inherits the test process's). Django + RQ + the engine need ~80 MB;
# the hostile server offers 2 GB literals and endless answers.
MAX_WORKER_RSS_MB = 300


class PeakRss(threading.Thread):
    """Samples the RSS of the processes this test starts (and theirs) until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.before = {p.pid for p in self.me.children(recursive=True)}  # e.g. the test Redis
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for process in self.me.children(recursive=True):
                if process.pid in self.before:
                    continue
                try:
                    self.peak = max(self.peak, process.memory_info().rss)
                except psutil.Error:
                    continue

    def __enter__(self) -> "PeakRss":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()


@pytest.fixture
def hostile_job(imap_trust, make_account, redis_connection):
    _source_server, destination_server, _bundle = imap_trust
    destination_user = destination_server.new_user()

    def make(server: HostileImapServer) -> SyncJob:
        source = make_account("hostile@example.org", login=LOGIN, password=PASSWORD, host="127.0.0.1",
                              port=server.port, security="none")  # fmt: skip
        destination = make_account(
            f"{destination_user.login}@example.org", login=destination_user.login, password=destination_user.password,
            host="localhost", port=destination_server.tls_port,
        )  # fmt: skip
        return confirmed_report_address(services.job_create(source=source, destination=destination))

    return make


@pytest.mark.parametrize(
    "scenario, code",
    [
        (Scenario.LOGIN_ENDLESS_LITERAL, "response_too_large"),
        (Scenario.LIST_20000, "too_many_folders"),
        (Scenario.FETCH_ENDLESS_LITERAL, "response_too_large"),
        (Scenario.SMTP_GREETING, "not_imap"),
    ],
)
def test_a_job_from_a_hostile_source_fails_with_a_clear_code(hostile_job, run_worker, scenario, code):
    with HostileImapServer(scenario) as server:
        job = hostile_job(server)
        started = time.monotonic()
        with PeakRss() as memory:
            worker = run_worker(timeout=120)
        elapsed = time.monotonic() - started
    assert worker.returncode == 0, worker.stderr[-3000:]
    job.refresh_from_db()
    assert (job.status, job.error_code, job.error_side) == (JobStatus.FAILED, code, "source")
    assert elapsed < 60, "the worker gives up at once instead of retrying a server that misbehaves"
    assert 20 < memory.peak / 2**20 < MAX_WORKER_RSS_MB, "the worker was measured, and stayed small"
    assert server.bytes_sent < 64 * 1024 * 1024
    assert error_message(job.error_code) != error_message("internal_error"), "the customer reads what went wrong"
    assert JobEvent.objects.filter(job=job, kind="error", detail__code=code).exists()

    # Passwords: never in the worker's output; kept for a retry during the grace period, then erased.
    assert PASSWORD not in worker.stdout + worker.stderr + job.error_detail
    job.source.refresh_from_db()
    assert job.source.has_password
    long_ago = timezone.now() - datetime.timedelta(days=3)
    SyncJob.objects.filter(pk=job.pk).update(finished_at=long_ago)
    MailAccount.objects.filter(pk__in=[job.source_id, job.destination_id]).update(created_at=long_ago)
    call_command("purge_credentials")
    job.source.refresh_from_db()
    job.destination.refresh_from_db()
    assert not job.source.has_password and not job.destination.has_password


def test_hostile_folder_names_are_copied_safely_and_the_refused_ones_reported(
    hostile_job, run_worker, monkeypatch, tmp_path
):
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    with HostileImapServer(Scenario.HOSTILE_NAMES) as server:
        job = hostile_job(server)
        worker = run_worker(timeout=120)
    assert worker.returncode == 0, worker.stderr[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert job.messages_copied == 8  # INBOX and seven of the nine hostile folders
    sources = set(job.folders.values_list("source_name", flat=True))
    assert "../../etc" in sources and not any(ord(c) < 32 for name in sources for c in name)
    assert set(job.folders.values_list("destination_name", flat=True)) >= {"__/__/etc", "__", "ctl___x"}
    refused = JobEvent.objects.filter(job=job, kind="folder_refused").values_list("folder", flat=True)
    assert sorted(refused) == ["a__X1 DELETE INBOX", "nul_name"]

    (path,) = tmp_path.iterdir()
    report = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = report.get_body(("plain",)).get_content()
    assert "The folder “nul_name” was not copied: its name contains control characters" in text
    assert "The folder “a__X1 DELETE INBOX” was not copied" in text
    assert "The folder “../../etc” was copied as “__/__/etc”, because the destination refused its name." in text
