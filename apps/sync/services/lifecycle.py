"""A job's life: created, claimed by a run, its progress and outcome recorded, cancelled, queued
again. Every write to a job's state goes through here (views, admin actions, commands and the
worker all call these), so the rules (one active job per source, atomic claims, fenced runs)
live in one place."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import account_erase_password
from apps.sync import engine
from apps.sync.models import ACTIVE_STATUSES, JobEvent, JobFailure, JobStatus, ReportProof, SyncJob
from apps.sync.reports import report_recipient

logger = logging.getLogger("imapcopy.sync")


class JobAlreadyActive(Exception):
    """The source account already has a queued or running job."""


class SameMailbox(Exception):
    """The destination is the source mailbox itself."""


class InvalidJobState(Exception):
    """The job is not in a state that allows this operation."""


class CredentialsErased(Exception):
    """The job cannot run again: its passwords have been erased."""


class TooManyActiveJobs(Exception):
    """The client already has as many copies queued or running as it may."""


def normalize_address(address: str) -> str:
    return address.strip().lower()


def _new_rq_job_id(job: SyncJob) -> str:
    return f"{settings.IMAPCOPY_INSTANCE}-sync-{job.pk}-{uuid.uuid4().hex[:12]}"


def _enqueue_after_commit(job: SyncJob) -> None:
    job_id, rq_job_id = job.pk, job.rq_job_id

    def enqueue() -> None:
        # The database is the source of truth: if Redis is down now, the job stays queued
        # and `manage.py recover_jobs` enqueues it again later.
        try:
            django_rq.get_queue(settings.COPY_QUEUE).enqueue(
                "apps.sync.jobs.run_copy_job", job_id, job_id=rq_job_id, job_timeout=settings.COPY_JOB_TIMEOUT
            )
        except Exception:
            logger.exception("could not enqueue job %s; it stays queued for recovery", job_id)

    transaction.on_commit(enqueue)


def job_create(
    *,
    source: MailAccount,
    destination: MailAccount,
    language: str = "en",
    enqueue: bool = True,
    keep_credentials_days: int = 0,
) -> SyncJob:
    """Create a queued job and enqueue it once the transaction commits.

    `keep_credentials_days`: the customer asked to keep the (encrypted) passwords that long, to
    copy new mail again later (job_copy_new_mail); 0 erases them as soon as the copy ends.

    Raises JobAlreadyActive when the source mailbox (its login on its server, whatever address
    was typed) has a queued or running job, also when two requests race: the database's partial
    unique index decides; SameMailbox when the destination is the source itself.
    """

    address = normalize_address(source.email_address)
    mailbox = source.mailbox_identity
    keep_until = timezone.now() + datetime.timedelta(days=keep_credentials_days) if keep_credentials_days > 0 else None
    if mailbox == destination.mailbox_identity:
        raise SameMailbox(mailbox)
    # The report goes to the destination login when it proves an address, whatever was typed;
    # a typed address receives a confirmation link first (job_send_report_confirmation).
    report_address, proven = report_recipient(destination)
    try:
        with transaction.atomic():
            job = SyncJob(
                source=source, destination=destination, source_address=address, source_mailbox=mailbox,
                language=language, report_address=report_address,
                report_address_proof=ReportProof.LOGIN if proven else ReportProof.LINK,
                report_address_confirmed_at=timezone.now() if proven else None, queued_at=timezone.now(),
                credentials_keep_until=keep_until,
            )  # fmt: skip
            job.save()
            if enqueue:
                job.rq_job_id = _new_rq_job_id(job)
                job.save(update_fields=["rq_job_id"])
                _enqueue_after_commit(job)
    except IntegrityError:
        if SyncJob.objects.filter(source_mailbox=mailbox, status__in=ACTIVE_STATUSES).exists():
            raise JobAlreadyActive(address) from None
        raise
    logger.info("job %s created", job.pk)
    return job


def job_claim(*, job_id: int, worker_name: str) -> int | None:
    """Move a queued job to running and return its run number, or None if another caller won.

    The run number fences the run: progress, heartbeats and the outcome are recorded only
    while the job is still running under that number, so a copy that lost its job (a worker
    presumed dead and replaced) can no longer write anything."""
    now = timezone.now()
    claimed = SyncJob.objects.filter(id=job_id, status=JobStatus.QUEUED, cancel_requested=False).update(
        status=JobStatus.RUNNING,
        started_at=Coalesce(F("started_at"), Value(now)),
        progress_at=now,
        heartbeat_at=now,
        worker_name=worker_name[:200],
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return None
    return SyncJob.objects.values_list("attempts", flat=True).get(id=job_id)


def job_heartbeat(*, job_id: int, run: int) -> bool:
    """Tell recovery this run is alive; False when the run no longer owns the job."""
    return bool(
        SyncJob.objects.filter(id=job_id, status=JobStatus.RUNNING, attempts=run).update(heartbeat_at=timezone.now())
    )


@dataclass(frozen=True)
class JobCounters(engine.Counters):
    bytes_total: int | None = 0  # None: leave the recorded value as it is
    current_folder: str = ""


def job_record_progress(*, job_id: int, run: int | None = None, counters: JobCounters) -> None:
    running = SyncJob.objects.filter(id=job_id, status=JobStatus.RUNNING)
    if run is not None:
        running = running.filter(attempts=run)
    now = timezone.now()
    recorded = {name: value for name, value in dataclasses.asdict(counters).items() if value is not None}
    running.update(progress_at=now, heartbeat_at=now, **{**recorded, "current_folder": counters.current_folder[:1000]})


def job_record_event(*, job_id: int, kind: str, folder: str = "", detail: dict | None = None) -> None:
    JobEvent.objects.create(job_id=job_id, kind=kind[:40], folder=folder or "", detail=detail or {})


def job_finish(
    *,
    job_id: int,
    run: int | None = None,
    status: JobStatus,
    counters: JobCounters | None,
    error_code: str = "",
    error_side: str = "",
    error_detail: str = "",
) -> bool:
    """Record a run's outcome. Only a running job can end; returns False otherwise.

    `counters` None keeps the last recorded progress (a crash knows no final figures);
    `run` (from job_claim) makes sure a run that lost the job records nothing."""
    if status not in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValueError(f"{status!r} is not an end state")
    values = dict(
        status=status,
        finished_at=timezone.now(),
        progress_at=timezone.now(),
        error_code=error_code[:40],
        error_side=error_side,
        error_detail=error_detail,
        cancel_requested=False,
        current_folder="",
    )
    if counters is not None:
        recorded = {name: value for name, value in dataclasses.asdict(counters).items() if value is not None}
        values.update(recorded, current_folder="")
    with transaction.atomic():
        running = SyncJob.objects.filter(id=job_id, status=JobStatus.RUNNING)
        if run is not None:
            running = running.filter(attempts=run)
        updated = running.update(**values)
        if not updated:
            return False
        if status == JobStatus.FAILED:  # kept when the job is retried: the operations page counts it
            JobFailure.objects.create(job_id=job_id, failed_at=values["finished_at"], error_code=values["error_code"])
        job = SyncJob.objects.select_related("source", "destination").get(id=job_id)
        # Kept when the customer asked to copy new mail again later (purge_credentials erases
        # them once that time has passed).
        if status == JobStatus.FINISHED and not job.keeps_credentials:
            account_erase_password(account=job.source)
            account_erase_password(account=job.destination)
    logger.info("job %s ended: %s %s", job_id, status, error_code)
    return True


def job_cancel(*, job: SyncJob) -> SyncJob:
    """A queued job is cancelled at once and never starts; a running one is asked to stop and
    stops between two batches, leaving checkpoints to resume from."""
    now = timezone.now()
    if SyncJob.objects.filter(id=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=now, error_code="cancelled"
    ):
        logger.info("queued job %s cancelled", job.pk)
    elif SyncJob.objects.filter(id=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True):
        logger.info("running job %s asked to stop", job.pk)
    else:
        job.refresh_from_db()
        raise InvalidJobState(job.status)
    job.refresh_from_db()
    return job


def job_retry(*, job: SyncJob, allow_finished: bool = False, enqueue: bool = True) -> SyncJob:
    """Queue a failed or cancelled job again; it resumes from its folder checkpoints.

    `allow_finished` reruns a finished job too (staff's command line: it copies only what
    arrived since); `enqueue=False` leaves it to the caller to claim and run it."""
    job.refresh_from_db()
    rerunnable = [JobStatus.FAILED, JobStatus.CANCELLED] + ([JobStatus.FINISHED] if allow_finished else [])
    if job.status not in rerunnable:
        raise InvalidJobState(job.status)
    if not (job.source.has_password and job.destination.has_password):
        raise CredentialsErased(job.pk)
    try:
        with transaction.atomic():
            updated = SyncJob.objects.filter(id=job.pk, status__in=rerunnable).update(
                status=JobStatus.QUEUED,
                cancel_requested=False,
                error_code="",
                error_side="",
                error_detail="",
                finished_at=None,
                queued_at=timezone.now(),
                rq_job_id=_new_rq_job_id(job),
            )
            if not updated:
                raise InvalidJobState("changed meanwhile")
            job.refresh_from_db()
            if enqueue:
                _enqueue_after_commit(job)
    except IntegrityError:
        raise JobAlreadyActive(job.source_address) from None
    logger.info("job %s queued again", job.pk)
    return job


def job_copy_all_mail_whole(*, job: SyncJob) -> SyncJob:
    """Have Gmail's All Mail copied whole, as a folder of its own (every labelled message then
    arrives twice), instead of only its archived messages; the job runs again to do it."""
    if job.status in ACTIVE_STATUSES:
        raise InvalidJobState(job.status)
    with transaction.atomic():  # a job that cannot run again keeps its setting
        SyncJob.objects.filter(id=job.pk).update(copy_all_mail_as_folder=True)
        return job_retry(job=job, allow_finished=True)


def job_requeue(*, job: SyncJob) -> SyncJob:
    """Put a queued job on the queue again (its first enqueue was lost with Redis).

    Safe to repeat: the claim lets only one delivery run it."""
    if job.status != JobStatus.QUEUED:
        raise InvalidJobState(job.status)
    with transaction.atomic():
        job.rq_job_id = _new_rq_job_id(job)
        job.save(update_fields=["rq_job_id"])
        _enqueue_after_commit(job)
    return job


def job_set_staff_note(*, job: SyncJob, note: str) -> bool:
    """Write staff's note on the job, and nothing else (a running copy keeps writing its progress
    meanwhile). Returns whether the note changed."""
    note = note.strip()
    changed = SyncJob.objects.filter(pk=job.pk).exclude(staff_note=note).update(staff_note=note)
    job.staff_note = note
    return bool(changed)


# What a run that moved the copy on changes (see recovery.runs_lost_without_progress).
PROGRESS_FIELDS = ("messages_copied", "messages_skipped", "messages_failed", "folders_done")


def progress_mark(job: SyncJob) -> list[int]:
    return [getattr(job, name) for name in PROGRESS_FIELDS]


def job_requeue_lost_run(*, job_id: int, run: int, silent_since, enqueue: bool = True) -> bool:
    """Queue a running job again whose run stopped beating (its worker died).

    Only if it is still that run and still silent: a run that woke up keeps its job.
    `enqueue=False` leaves the job queued for the caller to claim (the command line)."""
    with transaction.atomic():
        updated = SyncJob.objects.filter(
            id=job_id, status=JobStatus.RUNNING, attempts=run, heartbeat_at__lt=silent_since
        ).update(
            status=JobStatus.QUEUED,
            worker_name="",
            queued_at=timezone.now(),
            rq_job_id=_new_rq_job_id(SyncJob(pk=job_id)),
        )
        if updated:
            job = SyncJob.objects.get(id=job_id)
            if enqueue:
                _enqueue_after_commit(job)
            JobEvent.objects.create(
                job_id=job_id, kind="recovered", detail={"lost_run": run, "progress": progress_mark(job)}
            )
    if updated:
        logger.warning("job %s: run %s stopped beating; queued again", job_id, run)
    return bool(updated)
