import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.mailboxes.models import MailAccount


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Not started yet")
    RUNNING = "running", _("In progress")
    FINISHED = "finished", _("Finished")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class ReportProof(models.TextChoices):
    LOGIN = "login", _("the destination login")
    LINK = "link", _("a confirmation link")


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
# The event that marks the start of a "copy new mail again": its detail holds the job's counters
# then, so that the pass's own figures (new, already there) can be told apart.
NEW_MAIL_EVENT = "copy_new_mail"
ENDED_STATUSES = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED)


class SyncJob(models.Model):
    """One copy of a source mailbox into a destination mailbox, and its outcome."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.ForeignKey(
        MailAccount, on_delete=models.PROTECT, related_name="jobs_as_source", verbose_name=_("source account")
    )
    destination = models.ForeignKey(
        MailAccount, on_delete=models.PROTECT, related_name="jobs_as_destination", verbose_name=_("destination account")
    )
    # The normalized source address, kept on the job so that the one-active-job rule is a
    # database constraint and the public status lookup needs no join.
    source_address = models.CharField(_("source address"), max_length=254, db_index=True)
    # The source mailbox itself (login @ server, normalised): one active copy per mailbox, whatever
    # address was typed (anyone can type someone's address; only the login was verified).
    source_mailbox = models.CharField(_("source mailbox"), max_length=600, blank=True, default="")
    status = models.CharField(_("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    language = models.CharField(_("language"), max_length=10, default="en")

    folders_total = models.PositiveIntegerField(_("folders"), default=0)
    folders_done = models.PositiveIntegerField(_("folders done"), default=0)
    messages_total = models.PositiveIntegerField(_("messages"), default=0)
    messages_copied = models.PositiveIntegerField(_("messages copied"), default=0)
    messages_skipped = models.PositiveIntegerField(_("messages skipped"), default=0)
    messages_failed = models.PositiveIntegerField(_("messages failed"), default=0)
    bytes_total = models.PositiveBigIntegerField(_("bytes"), default=0)
    bytes_copied = models.PositiveBigIntegerField(_("bytes copied"), default=0)
    current_folder = models.CharField(_("current folder"), max_length=1000, blank=True)

    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    # When the job last went into the queue (created, retried, or given back by a dead run): how
    # long a queued job has been waiting is counted from here, not from its creation.
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    progress_at = models.DateTimeField(_("last progress"), null=True, blank=True)
    # Written by the running copy every few seconds; recovery treats a silent run as dead.
    heartbeat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True)

    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    error_side = models.CharField(
        _("account concerned"),
        max_length=12,
        blank=True,
        choices=[("source", _("source")), ("destination", _("destination"))],
    )
    error_detail = models.TextField(_("error detail"), blank=True)
    rq_job_id = models.CharField(_("queue job id"), max_length=64, blank=True)
    worker_name = models.CharField(_("worker"), max_length=200, blank=True)
    # Incremented by each claim; also the fencing token of the current run.
    attempts = models.PositiveIntegerField(_("runs"), default=0)
    cancel_requested = models.BooleanField(_("cancellation requested"), default=False)
    report_sent_at = models.DateTimeField(_("report sent"), null=True, blank=True)
    # Where the report goes, decided when the job is created. Only an address proven to belong to
    # the destination mailbox receives it: the login a provider's own server accepted, or an
    # address whose owner clicked the confirmation link (anyone can type anyone's address).
    report_address = models.EmailField(_("report address"), max_length=254, blank=True, default="")
    report_address_proof = models.CharField(
        _("report address proven by"), max_length=10, choices=ReportProof.choices, blank=True, default=""
    )
    report_address_confirmed_at = models.DateTimeField(_("report address proven"), null=True, blank=True)
    report_confirmation_sent_at = models.DateTimeField(_("confirmation link sent"), null=True, blank=True)
    # Gmail's All Mail: by default only its archived messages (in no label) are copied, into the
    # destination's Archive folder; staff may have it copied whole (every labelled message twice).
    copy_all_mail_as_folder = models.BooleanField(
        _("copy Gmail's All Mail as a folder"),
        default=False,
        help_text=_(
            "By default only the archived messages of All Mail (those without a label) are copied, into "
            "the destination's Archive folder. Tick to copy All Mail whole as a folder: every labelled "
            "message then arrives twice."
        ),
    )

    # The customer ticked "keep my passwords" on the Synchronize step: the job keeps them (encrypted)
    # until then, to copy the mail that arrived since ("Copy new mail again"); purge_credentials
    # erases them once it has passed. Empty: erased as soon as the copy ends.
    credentials_keep_until = models.DateTimeField(
        _("passwords kept until"),
        null=True,
        blank=True,
        help_text=_("The customer asked to keep the passwords to copy new mail again later."),
    )

    # Staff's own words about the job (a customer's call, what was tried); never shown to customers.
    staff_note = models.TextField(
        _("staff note"),
        blank=True,
        default="",
        help_text=_("Only staff see this note. Each change is kept in the job's history."),
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("synchronization job")
        verbose_name_plural = _("synchronization jobs")
        constraints = [
            models.UniqueConstraint(
                fields=["source_mailbox"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_source_mailbox",
                violation_error_message=_("A synchronization job already exists for this account."),
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="sync_job_status_created")]
        permissions = [
            ("cancel_syncjob", _("Can cancel synchronization jobs")),
            ("retry_syncjob", _("Can retry synchronization jobs")),
            ("resend_report_syncjob", _("Can re-send synchronization reports")),
            ("erase_syncjob", _("Can erase credentials and personal data of jobs")),
            ("export_syncjob", _("Can export synchronization jobs")),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.source_address}".rstrip()

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def keeps_credentials(self) -> bool:
        """Whether the customer asked to keep the passwords and that time has not passed."""
        return self.credentials_keep_until is not None and self.credentials_keep_until > timezone.now()

    @property
    def report_address_proven(self) -> bool:
        return bool(self.report_address) and self.report_address_confirmed_at is not None

    @property
    def percent_done(self) -> int:
        """Progress by bytes when sizes are known (copy time follows bytes), else by messages."""
        if self.status == JobStatus.FINISHED:
            return 100
        if self.bytes_total:
            return min(99, int(100 * self.bytes_copied / self.bytes_total))
        if self.messages_total:
            done = self.messages_copied + self.messages_skipped + self.messages_failed
            return min(99, int(100 * done / self.messages_total))
        return 0


class FolderProgress(models.Model):
    """Per-folder state of a job: what the engine needs to resume without duplicating."""

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="folders")
    source_name = models.TextField(_("source folder"))
    destination_name = models.TextField(_("destination folder"), blank=True)
    uidvalidity = models.PositiveBigIntegerField(null=True, blank=True)
    last_uid = models.PositiveBigIntegerField(_("highest UID copied"), default=0)
    dest_uidvalidity = models.PositiveBigIntegerField(null=True, blank=True)
    dest_uidnext = models.PositiveBigIntegerField(null=True, blank=True)
    messages_total = models.PositiveIntegerField(_("messages"), default=0)
    messages_copied = models.PositiveIntegerField(_("copied"), default=0)
    messages_skipped = models.PositiveIntegerField(_("skipped"), default=0)
    messages_failed = models.PositiveIntegerField(_("failed"), default=0)
    bytes_copied = models.PositiveBigIntegerField(_("bytes copied"), default=0)
    done = models.BooleanField(_("done"), default=False)
    # Engine state that has no column of its own; the engine owns its meaning.
    extra = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("folder progress")
        verbose_name_plural = _("folder progress")
        constraints = [models.UniqueConstraint(fields=["job", "source_name"], name="one_progress_row_per_folder")]

    def __str__(self) -> str:
        return self.source_name


class JobFailure(models.Model):
    """Each time a job failed, kept when the job is retried: the operations page counts failures
    by error code and provider from these, whatever the job's state is now."""

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="failures")
    failed_at = models.DateTimeField(_("time of failure"), db_index=True)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)

    class Meta:
        ordering = ["-failed_at"]
        verbose_name = _("job failure")
        verbose_name_plural = _("job failures")

    def __str__(self) -> str:
        return f"#{self.job_id} {self.error_code}"


class JobEvent(models.Model):
    """The job's log for staff: connections, folders, retries, skipped messages, errors."""

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=40)
    folder = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("job event")
        verbose_name_plural = _("job events")

    def __str__(self) -> str:
        return self.kind
