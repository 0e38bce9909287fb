"""RQ entry points. Thin on purpose: claim, call the engine, record the outcome."""

from __future__ import annotations

import logging
import os
import socket

from apps.sync import runner, services
from apps.sync.models import JobStatus, SyncJob

logger = logging.getLogger("imapcopy.sync")


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_copy_job(job_id: int) -> str:
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
