"""Every write to jobs goes through these functions: views, admin actions, commands and the
worker all call them, so the rules (one active job per source, atomic claims, credential
erasure) live in one place."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.models import MailAccount
from apps.sync import engine
from apps.sync.history import _without, personal_strings, scrub_admin_history
from apps.sync.models import ACTIVE_STATUSES, JobEvent, JobFailure, JobStatus, ReportProof, SyncJob

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


class ReportAddressNotProven(InvalidJobState):
    """The report address is neither the destination login nor confirmed by its owner yet."""


class ReportOutcome:
    SENT = "sent"
    WAITING_CONFIRMATION = "waiting_confirmation"  # nothing sent: the address is not proven yet
    ALREADY_SENT = "already_sent"  # this end of the job was reported already


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
    from apps.sync.reports import report_recipient

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
            credentials_erase(account=job.source)
            credentials_erase(account=job.destination)
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


def credentials_erase(*, account: MailAccount) -> None:
    MailAccount.objects.filter(pk=account.pk).exclude(password_ciphertext="").update(
        password_ciphertext="", password_erased_at=timezone.now()
    )
    account.password_ciphertext = ""


def job_send_report(*, job: SyncJob, again: bool = False) -> str:
    """Email the job's report, once per end of the job, to its proven report address only.

    An address not proven yet gets nothing: a `report_waiting_confirmation` event is recorded
    and the report goes out when its owner confirms it (job_confirm_report_address).
    `again` (staff's re-send) sends even if this end was reported already, and raises
    ReportAddressNotProven rather than waiting."""
    from apps.sync.reports import send_report

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
    from apps.sync.reports import send_confirmation

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
    from apps.sync.reports import send_status_link

    job.refresh_from_db()
    if not job.report_address_proven or job.destination.email_address == ERASED_ADDRESS:
        return False
    send_status_link(job)
    logger.info("status link of job %s sent", job.pk)
    return True


def job_erase_credentials(*, job: SyncJob) -> None:
    """Erase both passwords now (the job can no longer be retried).  Not while the job is queued
    or running: the copy needs them, and would fail with an internal error."""
    job.refresh_from_db()
    if job.is_active:
        raise InvalidJobState(job.status)
    credentials_erase(account=job.source)
    credentials_erase(account=job.destination)
    SyncJob.objects.filter(pk=job.pk).update(credentials_keep_until=None)
    job.credentials_keep_until = None
    logger.info("credentials of job %s erased", job.pk)


ERASED_ADDRESS = "erased@invalid"


def job_set_staff_note(*, job: SyncJob, note: str) -> bool:
    """Write staff's note on the job, and nothing else (a running copy keeps writing its progress
    meanwhile). Returns whether the note changed."""
    note = note.strip()
    changed = SyncJob.objects.filter(pk=job.pk).exclude(staff_note=note).update(staff_note=note)
    job.staff_note = note
    return bool(changed)


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
        for account in (job.source, job.destination):
            MailAccount.objects.filter(pk=account.pk).update(
                email_address=ERASED_ADDRESS,
                login="",
                host="",
                password_ciphertext="",
                password_erased_at=timezone.now(),
            )
        SyncJob.objects.filter(pk=job.pk).update(
            source_address="", source_mailbox="", report_address="", current_folder="", error_detail="",
            staff_note=note, credentials_keep_until=None,
        )  # fmt: skip
        job.folders.update(source_name=Cast("id", models.TextField()), destination_name="", extra={})
        job.events.update(folder="", detail={})
    job.refresh_from_db()
    logger.info("personal data of job %s erased", job.pk)


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


# --- Copy new mail again (the pass before the switch-over) ----------------------------------------

# The event that marks the start of a "copy new mail again": its detail holds the job's counters
# then, so that the pass's own figures (new, already there) can be told apart.
NEW_MAIL_EVENT = "copy_new_mail"
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
    from apps.mailboxes.services import account_request_check

    job.refresh_from_db()
    if job.status != JobStatus.FINISHED:
        raise InvalidJobState(job.status)
    with transaction.atomic():
        for side, password in passwords.items():
            if side not in JOB_SIDES:
                raise ValueError(side)
            account = MailAccount.objects.get(pk=getattr(job, f"{side}_id"))
            account.set_password(password)
            MailAccount.objects.filter(pk=account.pk).update(
                password_ciphertext=account.password_ciphertext,
                password_erased_at=None,
                verified_at=None,
                check_error_code="",
                check_requested_at=None,
            )
            account.refresh_from_db()
            account_request_check(account=account)  # raises before its test is queued: all rolled back
    logger.info("job %s: passwords typed again (%s), being tested", job.pk, ", ".join(sorted(passwords)))


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
    from apps.mailboxes.services import check_answer_deadline

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


@dataclass(frozen=True)
class NewMailFigures:
    """What the latest "copy new mail again" found: messages copied this time, and messages that
    were already in the destination (copied before, or found there)."""

    copied: int
    copied_bytes: int
    present: int


def _count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def job_new_mail_figures(job: SyncJob) -> NewMailFigures | None:
    """The figures of the job's latest "copy new mail again"; None when it never had one.

    The job's counters are cumulative (every run); the pass's start recorded them, and the
    messages its reconciliation found on the destination count as already there."""
    marker = JobEvent.objects.filter(job=job, kind=NEW_MAIL_EVENT).order_by("-id").values_list("id", "detail").first()
    if marker is None:
        return None
    marker_id, detail = marker
    detail = detail if isinstance(detail, dict) else {}
    found = found_bytes = 0
    for event in JobEvent.objects.filter(job=job, kind="already_present", id__gt=marker_id).values_list(
        "detail", flat=True
    ):
        if isinstance(event, dict):
            found += _count(event.get("messages"))
            found_bytes += _count(event.get("bytes"))
    copied = max(0, job.messages_copied - _count(detail.get("messages_copied")) - found)
    copied_bytes = max(0, job.bytes_copied - _count(detail.get("bytes_copied")) - found_bytes)
    return NewMailFigures(copied=copied, copied_bytes=copied_bytes, present=max(0, job.messages_copied - copied))
