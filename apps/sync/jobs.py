"""RQ entry points. Thin on purpose: claim, call the engine, record the outcome."""

from __future__ import annotations

import logging
import os
import socket

from rq import get_current_job

from apps.sync import runner, services
from apps.sync.models import JobStatus, SyncJob

logger = logging.getLogger("imapcopy.sync")


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _delivery_is_ours(job_id: int) -> bool:
    """Whether the RQ delivery being run is the one this database queued for the job.

    Two installations on one Redis number their jobs alike: a delivery from another one (or a
    stray, stale one) must not claim a job here, let alone copy someone else's mailbox into it.
    Outside RQ (tests, commands) there is no delivery to check."""
    delivery = get_current_job()
    if delivery is None:
        return True
    return SyncJob.objects.filter(id=job_id, rq_job_id=delivery.id).exclude(rq_job_id="").exists()


def run_copy_job(job_id: int) -> str:
    if not _delivery_is_ours(job_id):
        # Nothing is written: not even an event, since the job may belong to someone else.
        logger.warning("job %s: delivery %s is not the one queued here; ignored", job_id, get_current_job().id)
        return "not-ours"
    run = services.job_claim(job_id=job_id, worker_name=_worker_name())
    if run is None:
        # Already running elsewhere, ended, or cancelled before it started: a duplicate
        # delivery must not copy a second time.
        logger.info("job %s not claimed; nothing to do", job_id)
        return "not-claimed"
    job = SyncJob.objects.select_related("source__provider", "destination__provider").get(id=job_id)
    try:
        result = runner.copy_job_mailbox(job, run=run)
    except Exception:
        logger.exception("job %s crashed", job_id)
        if services.job_finish(
            job_id=job_id, run=run, status=JobStatus.FAILED, counters=None, error_code="internal_error"
        ):
            _send_report(job_id)
        raise
    # A run that lost its job (recovery gave it to another run) records nothing and must not
    # report on a copy that goes on elsewhere.
    if runner.record_result(job_id, result, run=run):
        _send_report(job_id)
    return result.status


def _send_report(job_id: int) -> None:
    # The copy is done whatever happens to the email: a mail server outage must not turn a
    # finished job into a failed one. Staff can re-send the report from the admin.
    job = SyncJob.objects.select_related("destination").get(id=job_id)
    try:
        services.job_send_report(job=job)
    except Exception:
        logger.exception("report of job %s could not be sent", job_id)
        services.job_record_event(job_id=job_id, kind="report_failed")
