"""Erasing what a job keeps about its customer: its passwords, its personal data, and the
whole job once IMAPCOPY_RETENTION_DAYS have passed."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Cast
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import (
    account_erase_password,
    account_erase_personal_data,
    accounts_delete_unused,
)
from apps.sync.history import _without, personal_strings, scrub_admin_history
from apps.sync.models import ACTIVE_STATUSES, ENDED_STATUSES, JobStatus, SyncJob
from apps.sync.services.lifecycle import InvalidJobState
from apps.sync.services.new_mail import REENTERED_PASSWORD_MINUTES

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


@dataclass(frozen=True)
class CredentialsPurged:
    abandoned_accounts: int
    erased_secrets: int


def credentials_purge_expired() -> CredentialsPurged:
    """Delete accounts entered in the form but never synchronized, and erase the secrets
    (passwords, sign-in tokens) of failed or cancelled jobs once their grace period for a retry is
    over, and of finished jobs whose customer asked to keep them once that time is over."""
    now = timezone.now()
    abandoned_before = now - datetime.timedelta(minutes=settings.IMAPCOPY_ABANDONED_ACCOUNT_MINUTES)
    abandoned, _detail = MailAccount.objects.filter(
        created_at__lt=abandoned_before, jobs_as_source=None, jobs_as_destination=None
    ).delete()
    grace_before = now - datetime.timedelta(hours=settings.IMAPCOPY_CREDENTIAL_GRACE_HOURS)
    retyped_since = now - datetime.timedelta(minutes=REENTERED_PASSWORD_MINUTES)

    def accounts_of(**job_filter) -> set[int]:
        """The accounts (either side) of the jobs that match `job_filter`."""
        pks = set()
        for side in ("jobs_as_source", "jobs_as_destination"):
            lookups = {f"{side}__{name}": value for name, value in job_filter.items()}
            matching = MailAccount.objects.filter(**lookups)
            pks.update(matching.values_list("pk", flat=True))
        return pks

    keep = (
        accounts_of(status__in=ACTIVE_STATUSES)
        # A failed or cancelled job keeps them for staff's retry; a finished one erased them at
        # its end, unless its customer asked to keep them to copy new mail again.
        | accounts_of(status__in=[JobStatus.FAILED, JobStatus.CANCELLED], finished_at__gte=grace_before)
        | accounts_of(credentials_keep_until__gt=now)
    )
    erased = (
        MailAccount.objects.exclude(password_ciphertext="")
        .exclude(pk__in=keep)
        .filter(created_at__lt=grace_before)
        # Typed again on a finished job's page to copy new mail: being tested, about to be used.
        .exclude(check_requested_at__gte=retyped_since)
        .update(password_ciphertext="", password_erased_at=now)
    )
    return CredentialsPurged(abandoned_accounts=abandoned, erased_secrets=erased)
