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
    if not services.job_claim(job_id=job_id, worker_name=_worker_name()):
        # Already running elsewhere, ended, or cancelled before it started: a duplicate
        # delivery must not copy a second time.
        logger.info("job %s not claimed; nothing to do", job_id)
        return "not-claimed"
    job = SyncJob.objects.select_related("source__provider", "destination__provider").get(id=job_id)
    try:
        result = runner.copy_job_mailbox(job)
    except Exception:
        logger.exception("job %s crashed", job_id)
        services.job_finish(
            job_id=job_id,
            status=JobStatus.FAILED,
            counters=None,
            error_code="internal_error",
            error_detail="",
        )
        raise
    runner.record_result(job_id, result)
    return result.status
