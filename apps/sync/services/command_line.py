"""Staff's command line copy (`manage.py copymailbox`): a rerun with the same two accounts resumes
the previous job, with its checkpoints, instead of starting a second one."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.services import account_create, account_set_password, account_update_connection
from apps.providers.models import Provider
from apps.sync.engine.urls import AccountURL
from apps.sync.models import JobStatus, SyncJob
from apps.sync.services.lifecycle import (
    JobAlreadyActive,
    job_create,
    job_requeue_lost_run,
    job_retry,
    normalize_address,
)


class JobStillRunning(JobAlreadyActive):
    """The previous job of these accounts is running, and its run is alive."""


@sensitive_variables()
def job_resume_or_create(
    *,
    source: AccountURL,
    destination: AccountURL,
    source_password: str,
    destination_password: str,
    run_is_dead: Callable[[SyncJob], bool],
) -> SyncJob:
    """The previous job of the same two accounts, queued again to resume, or a new job; either is
    left queued (not enqueued) for the caller to claim and run.

    A running previous job is taken over only when `run_is_dead` says its run is gone (a killed
    command line); else JobStillRunning. Raises JobAlreadyActive when another job of the source
    mailbox is active, SameMailbox when the destination is the source itself."""
    with transaction.atomic():
        previous = (
            SyncJob.objects.select_related("source", "destination")
            .filter(
                source_address=normalize_address(source.address),
                source__login=source.login,
                source__host=source.host,
                destination__login=destination.login,
                destination__host=destination.host,
            )
            .order_by("-created_at")
            .first()
        )
        if previous is not None and previous.status == JobStatus.RUNNING:
            if not run_is_dead(previous):
                raise JobStillRunning(previous.pk)
            job_requeue_lost_run(job_id=previous.pk, run=previous.attempts, silent_since=timezone.now(), enqueue=False)
            previous.refresh_from_db()
        if previous is not None and previous.status == JobStatus.QUEUED:
            account_set_password(account=previous.source, password=source_password)
            account_set_password(account=previous.destination, password=destination_password)
            return previous
        if previous is not None:
            for account, url, password in (
                (previous.source, source, source_password),
                (previous.destination, destination, destination_password),
            ):
                account_update_connection(account=account, port=url.port, security=url.security, password=password)
            return job_retry(job=previous, allow_finished=True, enqueue=False)
        other = Provider.objects.get(slug="other")
        accounts = [
            account_create(
                provider=other, email_address=url.address, login=url.login, host=url.host, port=url.port,
                security=url.security, password=password,
            )
            for url, password in ((source, source_password), (destination, destination_password))
        ]  # fmt: skip
    return job_create(source=accounts[0], destination=accounts[1], language=settings.LANGUAGE_CODE, enqueue=False)
