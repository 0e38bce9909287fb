"""Copy new mail again: a finished job runs once more with the same checkpoints, so it copies only
what arrived since (the pass before the customer's switch-over); its passwords are kept, or typed
again and tested first."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.models import MailAccount
from apps.mailboxes.oauth_tokens import OAuthTokens, tokens_to_secret
from apps.mailboxes.services import account_request_check, account_retype_password, check_answer_deadline
from apps.sync.models import ACTIVE_STATUSES, NEW_MAIL_EVENT, JobEvent, JobStatus, SyncJob
from apps.sync.services.lifecycle import CredentialsErased, InvalidJobState, TooManyActiveJobs, job_retry

logger = logging.getLogger("imapcopy.sync")

# Passwords typed again to copy new mail stay this long while their login is tested and the copy
# is queued (purge_credentials leaves them alone meanwhile; the copy's end erases them).
REENTERED_PASSWORD_MINUTES = 60
JOB_SIDES = ("source", "destination")


def _passwords_present(job: SyncJob) -> bool:
    accounts = MailAccount.objects.filter(pk__in=[job.source_id, job.destination_id])
    return accounts.exclude(password_ciphertext="").count() == 2


def job_copy_new_mail(*, job: SyncJob, client: str = "") -> SyncJob:
    """Run a finished job again with its passwords: the same checkpoints, so it copies only the
    mail that arrived since (the customer changed their domain's settings meanwhile).

    Raises InvalidJobState unless the job is finished; CredentialsErased when a password is gone
    (the customer types them again: job_reenter_passwords); TooManyActiveJobs when the client
    (`client`: its keyed hash) has its share of copies queued or running; JobAlreadyActive when
    another copy of the source mailbox is queued or running (the one-active-job rule decides)."""
    job.refresh_from_db()
    if job.status != JobStatus.FINISHED:
        raise InvalidJobState(job.status)
    if not _passwords_present(job):
        raise CredentialsErased(job.pk)
    if client and (
        SyncJob.objects.filter(source__created_from=client, status__in=ACTIVE_STATUSES).count()
        >= settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT
    ):
        raise TooManyActiveJobs(client)
    with transaction.atomic():  # a copy that cannot be queued leaves no mark
        JobEvent.objects.create(
            job=job,
            kind=NEW_MAIL_EVENT,
            detail={"messages_copied": job.messages_copied, "bytes_copied": job.bytes_copied},
        )
        job = job_retry(job=SyncJob.objects.select_related("source", "destination").get(pk=job.pk), allow_finished=True)
        # This pass's duration is its own (staff see the earlier runs in the job's event log).
        SyncJob.objects.filter(pk=job.pk).update(started_at=None)
    job.refresh_from_db()
    logger.info("job %s queued again to copy new mail", job.pk)
    return job


@sensitive_variables()
def job_reenter_passwords(*, job: SyncJob, passwords: dict[str, str]) -> None:
    """The customer typed again the passwords of a finished job (erased at its end) to copy the
    mail that arrived since. Each is stored encrypted and its login tested on the checks queue, as
    on the form's steps (a failed test erases it again); job_password_states tells the outcome.
    `passwords` maps "source" and/or "destination" to the password typed.

    Raises InvalidJobState unless the job is finished; TooManyChecks or ChecksBusy (from the
    checks queue) when the test cannot run now, and then nothing is kept."""
    job.refresh_from_db()
    if job.status != JobStatus.FINISHED:
        raise InvalidJobState(job.status)
    with transaction.atomic():
        for side, password in passwords.items():
            if side not in JOB_SIDES:
                raise ValueError(side)
            account = MailAccount.objects.get(pk=getattr(job, f"{side}_id"))
            account_retype_password(account=account, password=password)
            account_request_check(account=account)  # raises before its test is queued: all rolled back
    logger.info("job %s: passwords typed again (%s), being tested", job.pk, ", ".join(sorted(passwords)))


@sensitive_variables()
def job_reenter_tokens(*, job: SyncJob, side: str, tokens: OAuthTokens) -> None:
    """The customer of a finished job signed in again to one of its accounts (Google, Microsoft):
    its new tokens are stored and tested like a password typed again (job_reenter_passwords)."""
    job.refresh_from_db()
    if job.status != JobStatus.FINISHED:
        raise InvalidJobState(job.status)
    if side not in JOB_SIDES:
        raise ValueError(side)
    with transaction.atomic():
        account = MailAccount.objects.get(pk=getattr(job, f"{side}_id"))
        account_retype_password(account=account, password=tokens_to_secret(tokens))
        account_request_check(account=account)
    logger.info("job %s: %s signed in again, being tested", job.pk, side)


class PasswordState:
    KEPT = "kept"  # stored, not typed again since the job ended
    MISSING = "missing"  # erased: to be typed again
    TESTING = "testing"  # typed again, its login being tested
    VERIFIED = "verified"  # typed again, its login works
    FAILED = "failed"  # typed again, its login failed (the code says why); erased again


@dataclass(frozen=True)
class PasswordCheck:
    state: str
    error_code: str = ""


def job_password_states(job: SyncJob) -> dict[str, PasswordCheck]:
    """Where each password of a finished job stands, for "Copy new mail again"."""
    now = timezone.now()
    states = {}
    for side in JOB_SIDES:
        account = MailAccount.objects.get(pk=getattr(job, f"{side}_id"))
        requested = account.check_requested_at
        retyped = (
            requested is not None
            and job.finished_at is not None
            and requested > job.finished_at
            and now - requested <= datetime.timedelta(minutes=REENTERED_PASSWORD_MINUTES)
        )
        if not retyped:
            # Kept only as long as the customer asked (purge_credentials erases them after that).
            kept = account.has_password and job.keeps_credentials
            state = PasswordCheck(PasswordState.KEPT if kept else PasswordState.MISSING)
        elif account.verified_at is not None:
            state = PasswordCheck(PasswordState.VERIFIED if account.has_password else PasswordState.MISSING)
        elif account.check_error_code:
            state = PasswordCheck(PasswordState.FAILED, account.check_error_code)
        elif account.has_password and now <= check_answer_deadline(account):
            state = PasswordCheck(PasswordState.TESTING)
        else:  # no answer in time: the checks queue was too slow
            state = PasswordCheck(PasswordState.FAILED, "checks_busy")
        states[side] = state
    return states
