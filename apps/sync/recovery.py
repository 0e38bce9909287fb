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

from apps.sync import services
from apps.sync.models import JobStatus, SyncJob

logger = logging.getLogger("imapcopy.recovery")

LIVE_RQ_STATES = {"queued", "started", "deferred", "scheduled"}
QUEUED_GRACE = datetime.timedelta(minutes=2)


@dataclass
class RecoveryReport:
    requeued_lost_runs: list[int] = field(default_factory=list)
    failed_hopeless: list[int] = field(default_factory=list)
    requeued_lost_deliveries: list[int] = field(default_factory=list)


def _delivery_alive(connection, rq_job_id: str) -> bool:
    if not rq_job_id:
        return False
    try:
        return Job.fetch(rq_job_id, connection=connection).get_status(refresh=False) in LIVE_RQ_STATES
    except NoSuchJobError:
        return False


def stale_running_jobs(now: datetime.datetime | None = None):
    now = now or timezone.now()
    silent_since = now - datetime.timedelta(seconds=settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS)
    return SyncJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=silent_since), silent_since


def recover_jobs(now: datetime.datetime | None = None) -> RecoveryReport:
    now = now or timezone.now()
    report = RecoveryReport()
    stale, silent_since = stale_running_jobs(now)
    for job in stale.only("id", "attempts"):
        if job.attempts >= settings.IMAPCOPY_MAX_RUNS:
            if services.job_finish(
                job_id=job.id, run=job.attempts, status=JobStatus.FAILED, counters=None, error_code="worker_lost"
            ):
                report.failed_hopeless.append(job.id)
        elif services.job_requeue_lost_run(job_id=job.id, run=job.attempts, silent_since=silent_since):
            report.requeued_lost_runs.append(job.id)

    connection = django_rq.get_connection(settings.COPY_QUEUE)
    waiting = SyncJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=now - QUEUED_GRACE)
    for job in waiting.only("id", "rq_job_id", "status"):
        if not _delivery_alive(connection, job.rq_job_id):
            try:
                services.job_requeue(job=job)
            except services.InvalidJobState:
                continue
            report.requeued_lost_deliveries.append(job.id)
    return report
