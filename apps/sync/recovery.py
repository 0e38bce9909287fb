"""Find jobs whose worker died or whose queue entry was lost, and put them back to work.

The database is the source of truth; Redis only carries deliveries. Safe to run every
minute, from several machines at once: every change is a conditional update."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field

import django_rq
from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue

from apps.sync import services
from apps.sync.models import JobEvent, JobStatus, SyncJob

logger = logging.getLogger("imapcopy.recovery")

LIVE_RQ_STATES = {"queued", "started", "deferred", "scheduled"}
QUEUED_GRACE = datetime.timedelta(minutes=2)


@dataclass
class RecoveryReport:
    requeued_lost_runs: list[int] = field(default_factory=list)
    failed_hopeless: list[int] = field(default_factory=list)
    requeued_lost_deliveries: list[int] = field(default_factory=list)


def _delivery_alive(connection, rq_job_id: str, now: datetime.datetime) -> bool:
    if not rq_job_id:
        return False
    try:
        delivery = Job.fetch(rq_job_id, connection=connection)
    except NoSuchJobError:
        return False
    status = delivery.get_status(refresh=False)
    if status == "queued":
        # RQ takes a delivery off its queue, then marks it started: a worker killed in between
        # leaves it "queued" on no queue, where no worker will ever find it. (One taken a moment
        # ago and about to start is delivered twice at worst; only one delivery can claim the job.)
        # On another queue (its name changed with IMAPCOPY_INSTANCE), no worker of ours takes it.
        if delivery.origin != settings.COPY_QUEUE:
            return False
        return connection.lpos(Queue.redis_queue_namespace_prefix + delivery.origin, rq_job_id) is not None
    if status == "started":
        # A worker claims its job the moment it starts it. Started long ago while the job is
        # still queued in the database: the worker died (kill -9) between taking the delivery
        # and claiming the job, and RQ keeps calling it started until its 48-hour timeout.
        started = delivery.started_at
        if started is not None and timezone.is_naive(started):
            started = timezone.make_aware(started, datetime.UTC)
        return started is None or started > now - QUEUED_GRACE
    return status in LIVE_RQ_STATES


def stale_running_jobs(now: datetime.datetime | None = None):
    now = now or timezone.now()
    silent_since = now - datetime.timedelta(seconds=settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS)
    return SyncJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=silent_since), silent_since


def runs_lost_without_progress(job: SyncJob) -> int:
    """How many runs in a row, the silent one included, died without moving the copy on.

    Workers are killed for reasons of their own (a deploy, scaling down, a lost machine): a run
    that copied something before it died says nothing bad about its job and does not count
    toward IMAPCOPY_MAX_RUNS. Runs that keep dying at the same point (a message that crashes
    the worker every time) do, and fail the job."""
    recovered = JobEvent.objects.filter(job_id=job.id, kind="recovered").order_by("id")
    # Where each run started: nothing done for the first, then the progress at each recovery.
    marks = [[0] * len(services.PROGRESS_FIELDS)]
    marks += [detail.get("progress") for detail in recovered.values_list("detail", flat=True)]
    now = services.progress_mark(job)
    lost = 0
    for mark in reversed(marks):
        if mark != now:
            break
        lost += 1
    return lost


def recover_jobs(now: datetime.datetime | None = None) -> RecoveryReport:
    now = now or timezone.now()
    report = RecoveryReport()
    stale, silent_since = stale_running_jobs(now)
    for job in stale.only("id", "attempts", *services.PROGRESS_FIELDS):
        if runs_lost_without_progress(job) >= settings.IMAPCOPY_MAX_RUNS:
            if services.job_finish(
                job_id=job.id, run=job.attempts, status=JobStatus.FAILED, counters=None, error_code="worker_lost"
            ):
                report.failed_hopeless.append(job.id)
        elif services.job_requeue_lost_run(job_id=job.id, run=job.attempts, silent_since=silent_since):
            report.requeued_lost_runs.append(job.id)

    connection = django_rq.get_connection(settings.COPY_QUEUE)
    waiting = SyncJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=now - QUEUED_GRACE)
    for job in waiting.only("id", "rq_job_id", "status"):
        if not _delivery_alive(connection, job.rq_job_id, now):
            try:
                services.job_requeue(job=job)
            except services.InvalidJobState:
                continue
            report.requeued_lost_deliveries.append(job.id)
    return report
