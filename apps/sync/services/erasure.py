"""Erasing what a job keeps about its customer: its passwords, its personal data, and the
whole job once IMAPCOPY_RETENTION_DAYS have passed."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db import models, transaction
from django.db.models.functions import Cast

from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import (
    account_erase_password,
    account_erase_personal_data,
    accounts_delete_unused,
)
from apps.sync.history import _without, personal_strings, scrub_admin_history
from apps.sync.models import ENDED_STATUSES, SyncJob
from apps.sync.services.lifecycle import InvalidJobState

logger = logging.getLogger("imapcopy.sync")


def job_erase_credentials(*, job: SyncJob) -> None:
    """Erase both passwords now (the job can no longer be retried).  Not while the job is queued
    or running: the copy needs them, and would fail with an internal error."""
    job.refresh_from_db()
    if job.is_active:
        raise InvalidJobState(job.status)
    account_erase_password(account=job.source)
    account_erase_password(account=job.destination)
    SyncJob.objects.filter(pk=job.pk).update(credentials_keep_until=None)
    job.credentials_keep_until = None
    logger.info("credentials of job %s erased", job.pk)


def job_erase_personal_data(*, job: SyncJob) -> None:
    """Drop addresses, logins, hosts, folder names and message details, in the admin's history
    too; keep the counts.

    Only for ended jobs: a running copy still needs its accounts. `job` is left as erased, so that
    the admin's own entry for this action names no one."""
    job.refresh_from_db()
    if job.is_active:
        raise InvalidJobState(job.status)
    note = _without(job.staff_note, personal_strings(job))  # as in the history: no addresses
    with transaction.atomic():
        scrub_admin_history([job])
        account_erase_personal_data(account=job.source)
        account_erase_personal_data(account=job.destination)
        SyncJob.objects.filter(pk=job.pk).update(
            source_address="", source_mailbox="", report_address="", current_folder="", error_detail="",
            staff_note=note, credentials_keep_until=None,
        )  # fmt: skip
        job.folders.update(source_name=Cast("id", models.TextField()), destination_name="", extra={})
        job.events.update(folder="", detail={})
    job.refresh_from_db()
    logger.info("personal data of job %s erased", job.pk)


@dataclass(frozen=True)
class Purged:
    jobs: int
    accounts: int


def jobs_purge_ended(*, ended_before: datetime.datetime, dry_run: bool = False) -> Purged:
    """Delete the jobs that ended before then (their folders and events go with them), and the
    accounts no other job uses; `dry_run` only counts them."""
    with transaction.atomic():
        old = SyncJob.objects.filter(status__in=ENDED_STATUSES, finished_at__lt=ended_before)
        account_ids = set(old.values_list("source_id", flat=True)) | set(old.values_list("destination_id", flat=True))
        if dry_run:
            kept = SyncJob.objects.exclude(pk__in=old.values("pk"))
            unused = (
                MailAccount.objects.filter(pk__in=account_ids)
                .exclude(jobs_as_source__in=kept)
                .exclude(jobs_as_destination__in=kept)
            )
            return Purged(jobs=old.count(), accounts=unused.count())
        # The admin's history keeps who did what to these jobs, but not whose they were.
        scrub_admin_history(old.select_related("source", "destination").iterator(chunk_size=500))
        _total, per_model = old.delete()
        jobs = per_model.get(SyncJob._meta.label, 0)
        accounts = accounts_delete_unused(account_ids=account_ids)
    logger.info("%s ended jobs and %s accounts purged", jobs, accounts)
    return Purged(jobs=jobs, accounts=accounts)
