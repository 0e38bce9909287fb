"""Real RQ workers run real jobs against real Dovecot servers."""

import django_rq
import pytest
from django.conf import settings

from apps.sync import services
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.selfservice.conftest import seed_mailbox

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_between_dovecots(imap_trust, make_account, redis_connection):
    source_server, destination_server, _bundle = imap_trust
    source_user, destination_user = source_server.new_user(), destination_server.new_user()
    seed_mailbox(source_server, source_user)
    source = make_account(
        f"{source_user.login}@example.org", login=source_user.login, password=source_user.password,
        host="localhost", port=source_server.tls_port,
    )  # fmt: skip
    destination = make_account(
        f"{destination_user.login}@example.org", login=destination_user.login, password=destination_user.password,
        host="localhost", port=destination_server.tls_port,
    )  # fmt: skip
    return services.job_create(source=source, destination=destination)


def test_enqueued_job_is_run_by_a_real_worker_and_finishes(job_between_dovecots, run_worker):
    queue = django_rq.get_queue(settings.COPY_QUEUE)
    assert queue.count == 1, "the job is on the queue once its transaction committed"
    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job = SyncJob.objects.get(pk=job_between_dovecots.pk)
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert (job.messages_total, job.messages_copied, job.messages_failed) == (5, 5, 0)
    assert job.bytes_total >= job.bytes_copied > 0, "the mailbox size stays known once the copy ends"
    assert job.folders.filter(done=True).count() == job.folders_total >= 2
    assert job.finished_at >= job.started_at


def test_a_job_delivered_twice_runs_once(job_between_dovecots, run_worker):
    job = job_between_dovecots
    queue = django_rq.get_queue(settings.COPY_QUEUE)
    queue.enqueue("apps.sync.jobs.run_copy_job", job.pk, job_id=job.rq_job_id)  # a duplicate delivery
    assert queue.count == 2
    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert job.attempts == 1
    assert job.messages_copied == 5
    assert JobEvent.objects.filter(job=job, kind="folder_started").count() == job.folders_total


def test_a_job_cancelled_before_it_starts_never_runs(job_between_dovecots, run_worker):
    services.job_cancel(job=job_between_dovecots)
    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job = SyncJob.objects.get(pk=job_between_dovecots.pk)
    assert (job.status, job.attempts, job.messages_copied) == (JobStatus.CANCELLED, 0, 0)


def test_worker_output_never_contains_the_passwords(job_between_dovecots, run_worker):
    job = job_between_dovecots
    passwords = [job.source.decrypt_password(), job.destination.decrypt_password()]
    worker = run_worker()
    # The job really ran: logins, folders and messages all went through the logged code paths.
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert (job.status, job.messages_copied) == (JobStatus.FINISHED, 5), (job.error_code, job.error_detail)
    assert f"job {job.pk}" in worker.stderr, "the worker logged the job it ran"
    for password in passwords:
        assert password not in worker.stdout
        assert password not in worker.stderr
