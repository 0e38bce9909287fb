"""The report's delivery: emailed once per end of a job, only to an address proven to belong to
the destination mailbox; a typed address first receives a confirmation link."""

from __future__ import annotations

import logging

from django.db import models
from django.db.models import F
from django.utils import timezone

from apps.mailboxes.services import ERASED_ADDRESS
from apps.sync.models import SyncJob
from apps.sync.reports import send_confirmation, send_report, send_status_link
from apps.sync.services.lifecycle import InvalidJobState, job_record_event

logger = logging.getLogger("imapcopy.sync")


class ReportAddressNotProven(InvalidJobState):
    """The report address is neither the destination login nor confirmed by its owner yet."""


class ReportOutcome:
    SENT = "sent"
    WAITING_CONFIRMATION = "waiting_confirmation"  # nothing sent: the address is not proven yet
    ALREADY_SENT = "already_sent"  # this end of the job was reported already


def job_send_report(*, job: SyncJob, again: bool = False) -> str:
    """Email the job's report, once per end of the job, to its proven report address only.

    An address not proven yet gets nothing: a `report_waiting_confirmation` event is recorded
    and the report goes out when its owner confirms it (job_confirm_report_address).
    `again` (staff's re-send) sends even if this end was reported already, and raises
    ReportAddressNotProven rather than waiting."""
    job.refresh_from_db()
    if job.is_active:
        raise InvalidJobState(job.status)
    if not job.report_address or job.destination.email_address == ERASED_ADDRESS:
        raise InvalidJobState("personal data erased")  # nobody to send it to any more
    if not job.report_address_proven:
        if again:
            raise ReportAddressNotProven(job.pk)
        job_record_event(job_id=job.pk, kind="report_waiting_confirmation")
        logger.info("report of job %s waits for its address to be confirmed", job.pk)
        return ReportOutcome.WAITING_CONFIRMATION
    previous = job.report_sent_at
    if again:
        SyncJob.objects.filter(pk=job.pk).update(report_sent_at=timezone.now())
    # The worker (at the end of the job) and the confirmation link (when its owner clicks it) may
    # both get here at once: the first to stamp this end of the job sends, the other does not.
    elif not SyncJob.objects.filter(
        models.Q(report_sent_at__isnull=True) | models.Q(report_sent_at__lt=F("finished_at")), pk=job.pk
    ).update(report_sent_at=timezone.now()):
        return ReportOutcome.ALREADY_SENT
    try:
        send_report(job)
    except BaseException:
        SyncJob.objects.filter(pk=job.pk).update(report_sent_at=previous)
        raise
    logger.info("report of job %s sent", job.pk)
    return ReportOutcome.SENT


def job_send_report_confirmation(*, job: SyncJob) -> bool:
    """Email the link that confirms the job's report address; False when there is nothing to
    confirm (proven already, or erased). The caller rate-limits it."""
    job.refresh_from_db()
    if job.report_address_proven or not job.report_address or job.destination.email_address == ERASED_ADDRESS:
        return False
    send_confirmation(job)
    SyncJob.objects.filter(pk=job.pk).update(report_confirmation_sent_at=timezone.now())
    logger.info("confirmation link of job %s sent", job.pk)
    return True


def job_confirm_report_address(*, job: SyncJob, address: str) -> str | None:
    """Its owner confirmed the report address (the link names it: a link sent to an address the
    job no longer has confirms nothing). A job that ended meanwhile gets its report now.

    Returns the report outcome when the job has ended, None while it runs."""
    SyncJob.objects.filter(pk=job.pk, report_address=address, report_address_confirmed_at__isnull=True).update(
        report_address_confirmed_at=timezone.now()
    )
    job.refresh_from_db()
    if not job.report_address_proven or job.report_address != address:
        raise ReportAddressNotProven(job.pk)
    logger.info("report address of job %s confirmed", job.pk)
    if job.is_active:
        return None
    return job_send_report(job=job)


def job_send_status_link(*, job: SyncJob) -> bool:
    """Email the private status link to the job's proven report address; False (nothing sent)
    when the address is not proven. The caller rate-limits it and tells nobody which it was."""
    job.refresh_from_db()
    if not job.report_address_proven or job.destination.email_address == ERASED_ADDRESS:
        return False
    send_status_link(job)
    logger.info("status link of job %s sent", job.pk)
    return True
