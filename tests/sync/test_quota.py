"""A full destination stops the job with a clear error and report; once the quota is raised,
a retry completes it without duplicates."""

import email
import time
from email import policy

import pytest

from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from tests.sync.conftest import all_messages

pytestmark = pytest.mark.django_db(transaction=True)


def set_quota(server, login: str, quota_bytes: int) -> None:
    lines = server.passwd_file.read_text().splitlines(keepends=True)
    changed = [
        line.split("userdb_quota_rule=")[0] + f"userdb_quota_rule=*:storage={quota_bytes}B\n"
        if line.startswith(f"{login}:")
        else line
        for line in lines
    ]
    server.passwd_file.write_text("".join(changed))
    time.sleep(1.2)  # Dovecot re-reads the passwd-file at most once a second


def test_full_destination_fails_clearly_then_a_retry_completes_without_duplicates(
    filled_accounts, job_between, run_worker, monkeypatch, tmp_path
):
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    source_side, destination_side = filled_accounts(seed=11, messages=300, sizes=[4000], quota_bytes=300_000)
    job = job_between(source_side, destination_side)
    destination_server, destination_user, destination = destination_side
    source = source_side[2]

    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert (job.status, job.error_code, job.error_side) == (JobStatus.FAILED, "over_quota", "destination")
    assert 0 < job.messages_copied < job.messages_total
    (report,) = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in tmp_path.iterdir()]
    assert report["Subject"] == "Your mailbox copy failed"
    assert "The destination mailbox is full." in report.get_body(("plain",)).get_content()

    set_quota(destination_server, destination_user.login, 50_000_000)
    services.job_retry(job=job)
    assert run_worker().returncode == 0
    job = SyncJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.FINISHED, job.error_code
    assert all_messages(destination) == all_messages(source)
