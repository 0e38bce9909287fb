"""Jobs whose worker died or whose queue entry was lost get back to work; live runs are left alone."""

import datetime

import django_rq
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from apps.sync.recovery import recover_jobs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running_job(make_account, redis_connection):
    job = services.job_create(source=make_account("a@example.org"), destination=make_account("b@example.net"))
    django_rq.get_queue(settings.COPY_QUEUE).empty()
    run = services.job_claim(job_id=job.pk, worker_name="host:123")
    return job, run


def silence(job, seconds: int) -> None:
    SyncJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - datetime.timedelta(seconds=seconds))


def test_a_silent_run_is_queued_again_and_delivered(running_job):
    job, _run = running_job
    silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    report = recover_jobs()
    assert report.requeued_lost_runs == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert django_rq.get_queue(settings.COPY_QUEUE).job_ids == [job.rq_job_id]
    assert job.events.filter(kind="recovered").exists()


def test_a_live_run_is_left_alone(running_job):
    job, run = running_job
    assert services.job_heartbeat(job_id=job.pk, run=run)
    assert recover_jobs().requeued_lost_runs == []
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_a_replaced_run_can_no_longer_record_anything(running_job):
    job, old_run = running_job
    silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    recover_jobs()
    new_run = services.job_claim(job_id=job.pk, worker_name="host:456")
    assert new_run == old_run + 1
    assert not services.job_heartbeat(job_id=job.pk, run=old_run)
    assert not services.job_finish(job_id=job.pk, run=old_run, status=JobStatus.FAILED, counters=None)
    job.refresh_from_db()
    assert (job.status, job.worker_name) == (JobStatus.RUNNING, "host:456")


def test_a_job_that_keeps_dying_is_failed(running_job, settings):
    job, run = running_job
    settings.IMAPCOPY_MAX_RUNS = run
    silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    assert recover_jobs().failed_hopeless == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "worker_lost")


def test_a_queued_job_whose_delivery_was_lost_is_enqueued_again(make_account, redis_connection):
    job = services.job_create(source=make_account("c@example.org"), destination=make_account("d@example.net"))
    redis_connection.flushdb()  # Redis restarted without persistence
    SyncJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=5))
    call_command("recover_jobs")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert django_rq.get_queue(settings.COPY_QUEUE).job_ids == [job.rq_job_id]


def test_runs_killed_while_copying_do_not_count_toward_the_limit(running_job, settings):
    job, _run = running_job
    settings.IMAPCOPY_MAX_RUNS = 2
    for copied in (100, 200, 300):  # each run copied some mail before its worker was killed
        SyncJob.objects.filter(pk=job.pk).update(messages_copied=copied)
        silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
        assert recover_jobs().requeued_lost_runs == [job.pk]
        assert services.job_claim(job_id=job.pk, worker_name="host:1")
    # Then two runs in a row die without copying anything: a job that kills its worker.
    silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    assert recover_jobs().requeued_lost_runs == [job.pk]
    services.job_claim(job_id=job.pk, worker_name="host:1")
    silence(job, settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS + 10)
    assert recover_jobs().failed_hopeless == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == (JobStatus.FAILED, "worker_lost", 5)


def test_a_delivery_taken_off_the_queue_by_a_worker_killed_before_starting_it_is_enqueued_again(
    make_account, redis_connection
):
    # RQ takes the delivery off the queue, then marks it started: a worker killed in between
    # leaves it "queued" in Redis yet on no queue, where no worker will ever find it.
    job = services.job_create(source=make_account("g@example.org"), destination=make_account("h@example.net"))
    queue = django_rq.get_queue(settings.COPY_QUEUE)
    delivery, _queue = queue.dequeue_any([queue], None, connection=redis_connection)
    assert delivery.get_status() == "queued" and queue.job_ids == []
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert recover_jobs(now=later).requeued_lost_deliveries == [job.pk]
    job.refresh_from_db()
    assert queue.job_ids == [job.rq_job_id] and job.rq_job_id != delivery.id


def test_a_queued_delivery_still_on_its_queue_is_left_alone(make_account, redis_connection):
    job = services.job_create(source=make_account("i@example.org"), destination=make_account("j@example.net"))
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert recover_jobs(now=later).requeued_lost_deliveries == []
    assert django_rq.get_queue(settings.COPY_QUEUE).job_ids == [SyncJob.objects.get(pk=job.pk).rq_job_id]


def test_a_queued_job_whose_worker_died_before_claiming_it_is_enqueued_again(make_account, redis_connection):
    from rq import Worker

    job = services.job_create(source=make_account("e@example.org"), destination=make_account("f@example.net"))
    queue = django_rq.get_queue(settings.COPY_QUEUE)
    worker = Worker([queue], connection=redis_connection)
    delivery, _queue = queue.dequeue_any([queue], None, connection=redis_connection)
    worker.prepare_job_execution(delivery)  # taken and "started" by a worker that then died
    assert delivery.get_status() == "started"
    assert recover_jobs().requeued_lost_deliveries == [], "a delivery just started is left to its worker"
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert recover_jobs(now=later).requeued_lost_deliveries == [job.pk]
    job.refresh_from_db()
    assert queue.job_ids == [job.rq_job_id] and job.rq_job_id != delivery.id


def test_a_delivery_left_on_a_queue_of_another_name_is_enqueued_again(make_account, redis_connection):
    """After IMAPCOPY_INSTANCE changed (or the upgrade that named queues after it), deliveries wait
    on a queue no worker of this installation reads: the job gets a new one on its own queue."""
    from rq import Queue

    job = services.job_create(
        source=make_account("k@example.org"), destination=make_account("l@example.net"), enqueue=False
    )
    job.rq_job_id = "imapcopy-sync-before-the-rename"
    job.save(update_fields=["rq_job_id"])
    Queue("copies", connection=redis_connection).enqueue("apps.sync.jobs.run_copy_job", job.pk, job_id=job.rq_job_id)
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert recover_jobs(now=later).requeued_lost_deliveries == [job.pk]
    job.refresh_from_db()
    assert django_rq.get_queue(settings.COPY_QUEUE).job_ids == [job.rq_job_id] != ["imapcopy-sync-before-the-rename"]
