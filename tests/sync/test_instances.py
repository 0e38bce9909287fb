"""Two installations on one Redis (IMAPCOPY_INSTANCE): neither runs the other's jobs. Real Redis,
real `manage.py rqworker` processes; the worker is installation B, on the test database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rq import Queue
from rq.job import Job

from apps.sync import services
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.conftest import REPO, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def installation_settings(instance: str) -> dict:
    """What portal/settings.py makes of IMAPCOPY_INSTANCE, read by a fresh process."""
    code = (
        "from django.conf import settings as s; import json; from apps.sync.services import lifecycle;"
        "from apps.sync.models import SyncJob;"
        "print(json.dumps({'copy': s.COPY_QUEUE, 'check': s.CHECK_QUEUE,"
        " 'cache': s.CACHES['default']['KEY_PREFIX'], 'rq_id': lifecycle._new_rq_job_id(SyncJob(pk=7))}))"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "shell", "-c", code],
        env={**subprocess_env(), "IMAPCOPY_INSTANCE": instance},
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_worker_of(instance: str, *queues: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "rqworker", "--burst", *queues],
        env={**subprocess_env(), "IMAPCOPY_INSTANCE": instance},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture
def queued_job(make_account, redis_connection):
    """Job of installation B, queued in its database (not delivered yet)."""
    source = make_account("owner-b@example.org", host="127.0.0.1", port=1)
    destination = make_account("dest-b@example.net", host="127.0.0.1", port=1)
    job = services.job_create(source=source, destination=destination, enqueue=False)
    job.rq_job_id = "installation-b-sync-own-delivery"
    job.save(update_fields=["rq_job_id"])
    return job


def untouched(job: SyncJob) -> bool:
    fresh = SyncJob.objects.get(pk=job.pk)
    return (
        fresh.status == JobStatus.QUEUED
        and fresh.attempts == 0
        and fresh.worker_name == ""
        and fresh.started_at is None
        and fresh.rq_job_id == job.rq_job_id
        and not JobEvent.objects.filter(job=job).exists()
    )


def test_each_installation_names_its_queues_cache_and_job_ids(redis_connection):
    a, b = installation_settings("installation-a"), installation_settings("installation-b")
    assert a["copy"] != b["copy"] and a["check"] != b["check"] and a["cache"] != b["cache"]
    assert a["copy"].startswith("installation-a") and a["rq_id"].startswith("installation-a-sync-7-")
    assert b["copy"].startswith("installation-b") and b["rq_id"].startswith("installation-b-sync-7-")


def test_a_job_queued_by_one_installation_is_not_run_by_the_others_worker(queued_job, redis_connection):
    a, b = installation_settings("installation-a"), installation_settings("installation-b")
    # Installation A has its own job with the same number, and queues it.
    Queue(a["copy"], connection=redis_connection).enqueue(
        "apps.sync.jobs.run_copy_job", queued_job.pk, job_id=a["rq_id"]
    )
    worker = run_worker_of("installation-b", b["copy"], b["check"])
    assert worker.returncode == 0, worker.stderr
    assert untouched(queued_job)
    assert Queue(a["copy"], connection=redis_connection).job_ids == [a["rq_id"]], "still there for A's workers"


def test_a_stray_delivery_is_refused_without_touching_the_job(queued_job, redis_connection):
    b = installation_settings("installation-b")
    queue = Queue(b["copy"], connection=redis_connection)
    # Deliveries the database of B did not queue: A's delivery of its own job number ...
    foreign = queue.enqueue("apps.sync.jobs.run_copy_job", queued_job.pk, job_id="installation-a-sync-x")
    # ... and a job number B does not have.
    missing = queue.enqueue("apps.sync.jobs.run_copy_job", queued_job.pk + 1000, job_id="installation-a-sync-y")
    worker = run_worker_of("installation-b", b["copy"])
    assert worker.returncode == 0, worker.stderr
    assert untouched(queued_job)
    for delivery in (foreign, missing):
        assert Job.fetch(delivery.id, connection=redis_connection).return_value() == "not-ours"
