"""A full destination stops the job with a clear error and report; once the quota is raised,
a retry completes it without duplicates."""

import email
import time
from collections import Counter
from email import policy

import pytest

from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from tests.support import mail

pytestmark = pytest.mark.django_db(transaction=True)


def all_messages(account: mail.Account) -> Counter:
    total = Counter()
    for counter in mail.snapshot(account).values():
        total.update(counter)
    return total


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
    imap_trust, make_account, run_worker, monkeypatch, tmp_path
):
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    source_server, destination_server, _bundle = imap_trust
    source_user = source_server.new_user()
    destination_user = destination_server.new_user(quota_bytes=300_000)
    source = mail.Account(
        source_server.host, source_server.port, source_user.login, source_user.password, "INBOX.", "."
    )
    destination = mail.Account(
        destination_server.host, destination_server.port, destination_user.login, destination_user.password
    )
    mail.upload_fast(source, mail.build_corpus(seed=11, messages=300, sizes=[4000]))
    job = services.job_create(
        source=make_account(f"{source_user.login}@example.org", login=source_user.login,
                            password=source_user.password, host="localhost", port=source_server.tls_port),
        destination=make_account(f"{destination_user.login}@example.org", login=destination_user.login,
                                 password=destination_user.password, host="localhost",
                                 port=destination_server.tls_port),
    )  # fmt: skip

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
