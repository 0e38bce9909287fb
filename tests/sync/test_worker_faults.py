"""Staff steer running copies: cancel and retry, and a killed worker's job is recovered.
Each ends with every source message on the destination exactly once."""

import datetime
import signal
import subprocess
import sys
import time

import psutil
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from apps.providers.models import Provider
from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO, subprocess_env
from tests.sync.conftest import all_messages

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = 800


@pytest.fixture
def slow_copy(filled_accounts, job_between, redis_connection):
    """A job big enough, and throttled enough, to be interrupted while it runs."""
    source_side, destination_side = filled_accounts(seed=5, messages=MESSAGES)
    Provider.objects.filter(slug="other").update(max_messages_per_second=120)
    return job_between(source_side, destination_side), source_side[2], destination_side[2]


def start_worker(**env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "rqworker", "--burst", django_settings.COPY_QUEUE],
        env={**subprocess_env(), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def copying(job_id: int) -> bool:
    job = SyncJob.objects.get(pk=job_id)
    return job.status == JobStatus.RUNNING and 50 < job.messages_copied < MESSAGES - 100


def test_cancel_a_running_copy_then_retry_it_to_completion(slow_copy, run_worker):
    job, source, destination = slow_copy
    worker = start_worker()
    wait_until(lambda: copying(job.pk))
    services.job_cancel(job=job)
    assert worker.wait(timeout=30) == 0, "the copy stops within seconds"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert 0 < job.messages_copied < MESSAGES
    assert job.source.has_password, "a cancelled job can be retried"

    services.job_retry(job=job)
    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error_code
    assert all_messages(destination) == all_messages(source)


def test_a_job_whose_worker_is_killed_is_recovered_and_completes_without_duplicates(slow_copy, run_worker):
    job, source, destination = slow_copy
    worker = start_worker()
    wait_until(lambda: copying(job.pk))
    # The worker and the work-horse it forked for the job (RQ puts the horse in a session of
    # its own), both at once, as a machine that loses power would.
    processes = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    assert len(processes) >= 2
    for process in processes:
        process.send_signal(signal.SIGKILL)
    worker.wait()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING, "nobody told the database"

    # The dead run's last heartbeat, moved back past the stale threshold (rather than waiting it out).
    stale = datetime.timedelta(seconds=django_settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    SyncJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - stale)
    call_command("recover_jobs")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED

    assert run_worker().returncode == 0
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error_code
    assert job.attempts == 2
    assert all_messages(destination) == all_messages(source)


def test_two_workers_given_the_same_job_copy_it_once(slow_copy):
    job, source, destination = slow_copy
    import django_rq

    # The same delivery twice (a worker may deliver it again after a Redis failover); a delivery
    # with another RQ id is refused before any claim (tests/sync/test_instances.py).
    django_rq.get_queue(django_settings.COPY_QUEUE).enqueue("apps.sync.jobs.run_copy_job", job.pk, job_id=job.rq_job_id)
    workers = [start_worker(), start_worker()]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error_code
    assert job.attempts == 1, "only one delivery claimed the job"
    assert all_messages(destination) == all_messages(source)
