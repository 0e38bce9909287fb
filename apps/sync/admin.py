"""Staff's back office for copies: the jobs list and the job page (what they show).

What staff do to jobs (actions, buttons, the staff note, the CSV export) is in admin_actions.py;
times, sizes, inlines and filters in admin_display.py; the operations page in operations.py."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import translation
from django.utils.html import escape, format_html
from django.utils.translation import gettext_lazy as _

from apps.sync.admin_actions import JobActionsMixin
from apps.sync.admin_display import (
    CANCELLED_BY,
    STOP_REQUESTED,
    STOP_REQUESTED_BY,
    ErrorCodeFilter,
    FailedWithinFilter,
    FailureCodeFilter,
    FolderProgressInline,
    HasErrorsFilter,
    JobEventInline,
    ProviderFilter,
    _duration,
    _size,
    _when,
    _when_text,
)
from apps.sync.error_messages import error_message
from apps.sync.links import status_url
from apps.sync.models import JobStatus, ReportProof, SyncJob
from portal.admin_history import TranslatedHistory


def status_page_url(job: SyncJob) -> str:
    """The customer's private status page: the signed link of the job's emails, in its language."""
    with translation.override(job.language):
        return status_url(job)


@admin.register(SyncJob)
class SyncJobAdmin(TranslatedHistory, JobActionsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "coloured_status",
        "accounts",
        "providers",
        "progress",
        "messages",
        "size",
        "created",
        "finished",
        "duration",
        "problems",
        "error",
    ]
    list_display_links = ["id", "coloured_status"]
    list_filter = [
        "status",
        ProviderFilter,
        HasErrorsFilter,
        ErrorCodeFilter,
        FailedWithinFilter,
        FailureCodeFilter,
        "created_at",
    ]
    search_fields = ["source_address", "destination__email_address", "source__login", "destination__login"]
    list_select_related = ["source__provider", "destination__provider"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # counting 100,000 rows on every page view is slow
    inlines = [FolderProgressInline, JobEventInline]

    class Media:
        css = {"all": ["css/admin-jobs.css"]}

    fieldsets = [
        (
            None,
            {
                "fields": [
                    "public_id",
                    "status",
                    "source_address",
                    "source_summary",
                    "destination_summary",
                    "language",
                    "cancellation",
                    "copy_all_mail_as_folder",
                ]
            },
        ),
        (
            _("Progress"),
            {
                "fields": [
                    "folders_total",
                    "folders_done",
                    "messages_total",
                    "messages_copied",
                    "messages_skipped",
                    "messages_failed",
                    "size_total",
                    "size_copied",
                    "current_folder",
                ]
            },
        ),
        (_("Times"), {"fields": ["created", "queued", "started", "last_progress", "finished", "duration"]}),
        (
            _("Outcome"),
            {
                "fields": [
                    "error_code",
                    "error_text",
                    "error_side",
                    "error_detail",
                    "report_recipient",
                    "report_sent",
                    "report",
                ]
            },
        ),
        (_("Losses"), {"fields": ["losses"]}),
        (_("Queue"), {"fields": ["rq_job_id", "worker_name", "attempts"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        names = [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]
        return names

    def get_fieldsets(self, request, obj=None):
        if obj is None or obj.cancel_requested or obj.status == JobStatus.CANCELLED:
            return self.fieldsets
        # "Cancellation requested: no" on every job says nothing.
        return [
            (name, {**options, "fields": [field for field in options["fields"] if field != "cancellation"]})
            for name, options in self.fieldsets
        ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Jobs change only through the actions and the staff note (admin_actions.py, through the
        # services), never through the job's form.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    # --- columns -------------------------------------------------------------------------
    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, job: SyncJob):
        return format_html('<span class="job-status job-status-{}">{}</span>', job.status, JobStatus(job.status).label)

    @admin.display(description=_("source → destination"))
    def accounts(self, job: SyncJob):
        return format_html("{} → {}", job.source_address, job.destination.email_address)

    @admin.display(description=_("providers"))
    def providers(self, job: SyncJob):
        return format_html("{} → {}", job.source.provider.name, job.destination.provider.name)

    @admin.display(description=_("progress"))
    def progress(self, job: SyncJob):
        return format_html('<progress max="100" value="{}"></progress> {}%', job.percent_done, job.percent_done)

    @admin.display(description=_("messages"))
    def messages(self, job: SyncJob):
        return f"{job.messages_copied} / {job.messages_total}"

    @admin.display(description=_("size"), ordering="bytes_copied")
    def size(self, job: SyncJob):
        return _size(job.bytes_copied)

    @admin.display(description=_("size"))
    def size_total(self, job: SyncJob):
        return _size(job.bytes_total)

    @admin.display(description=_("size copied"))
    def size_copied(self, job: SyncJob):
        return _size(job.bytes_copied)

    @admin.display(description=SyncJob._meta.get_field("created_at").verbose_name, ordering="created_at")
    def created(self, job: SyncJob):
        return _when(job.created_at)

    @admin.display(description=SyncJob._meta.get_field("queued_at").verbose_name)
    def queued(self, job: SyncJob):
        return _when(job.queued_at)

    @admin.display(description=SyncJob._meta.get_field("started_at").verbose_name, ordering="started_at")
    def started(self, job: SyncJob):
        return _when(job.started_at)

    @admin.display(description=SyncJob._meta.get_field("progress_at").verbose_name)
    def last_progress(self, job: SyncJob):
        return _when(job.progress_at)

    @admin.display(description=SyncJob._meta.get_field("finished_at").verbose_name, ordering="finished_at")
    def finished(self, job: SyncJob):
        return _when(job.finished_at)

    @admin.display(description=SyncJob._meta.get_field("report_sent_at").verbose_name)
    def report_sent(self, job: SyncJob):
        return _when(job.report_sent_at)

    @admin.display(description=_("duration"))
    def duration(self, job: SyncJob):
        return _duration(job)

    @admin.display(description=_("error"), ordering="error_code")
    def error(self, job: SyncJob):
        if not job.error_code:
            return "—"
        message = error_message(job.error_code)
        return format_html('<span class="job-error" title="{}">{}</span>', message, job.error_code)

    @admin.display(description=_("cancellation"))
    def cancellation(self, job: SyncJob):
        """Who cancelled the job and when, as the admin's history recorded it."""
        entry = (
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(SyncJob),
                object_id=str(job.pk),
                change_message="Cancelled",
            )
            .select_related("user")
            .order_by("-action_time")
            .first()
        )
        if entry:
            values = {
                "user": entry.user.get_username(),
                "time": _when_text(entry.action_time, "DATE_FORMAT"),
            }
        if job.status == JobStatus.CANCELLED:
            return CANCELLED_BY % values if entry else JobStatus.CANCELLED.label
        if job.cancel_requested:
            return STOP_REQUESTED_BY % values if entry else STOP_REQUESTED
        return "—"

    @admin.display(description=_("skipped / failed"))
    def problems(self, job: SyncJob):
        return f"{job.messages_skipped} / {job.messages_failed}"

    @admin.display(description=_("source account"))
    def source_summary(self, job: SyncJob):
        account = job.source
        return f"{account.email_address} · {account.login} @ {account.host}:{account.port} ({account.provider.name})"

    @admin.display(description=_("destination account"))
    def destination_summary(self, job: SyncJob):
        account = job.destination
        return f"{account.email_address} · {account.login} @ {account.host}:{account.port} ({account.provider.name})"

    @admin.display(description=_("error message"))
    def error_text(self, job: SyncJob):
        return error_message(job.error_code) if job.error_code else "—"

    @admin.display(description=_("report sent to"))
    def report_recipient(self, job: SyncJob):
        """Whom the report goes to, and why that address may receive it."""
        if not job.report_address:
            return "—"
        if job.report_address_proven and job.report_address_proof == ReportProof.LOGIN:
            proof = _("proven: it is the destination login")
        elif job.report_address_proven:
            proof = _("confirmed by its owner on %(date)s") % {
                "date": _when_text(job.report_address_confirmed_at, "DATE_FORMAT")
            }
        elif job.report_confirmation_sent_at:
            proof = _("not confirmed yet (confirmation link sent on %(date)s): no report is sent to it") % {
                "date": _when_text(job.report_confirmation_sent_at, "DATE_FORMAT")
            }
        else:
            proof = _("not confirmed yet (no confirmation link sent): no report is sent to it")
        return format_html("{} — {}", job.report_address, proof)

    @admin.display(description=_("report"))
    def report(self, job: SyncJob):
        if job.is_active:
            return "—"
        from apps.sync.reports import report_context

        with translation.override(job.language):
            text = render_to_string("sync/email/report.txt", report_context(job))
        # The plain-text report is not HTML (subjects are in it as they are) but render_to_string
        # marks it safe: escape() escapes it all the same.
        return format_html('<pre class="job-report">{}</pre>', escape(text))

    @admin.display(description=_("not copied or not exact"))
    def losses(self, job: SyncJob):
        """The report's losses, in the staff's language (the report above is in the customer's)."""
        from apps.sync.losses import job_losses

        sections = job_losses(job)
        if not sections:
            return "—"
        # The template escapes every subject and folder name; its output is safe HTML.
        return render_to_string("sync/email/_losses.html", {"losses": sections})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context = {
                **context,
                "job_panel": self.job_panel(request, obj),
                "status_page_url": status_page_url(obj),
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "operations_url": reverse("admin:sync_operations")}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        from apps.sync.operations import operations_view

        return [
            path("operations/", self.admin_site.admin_view(operations_view), name="sync_operations"),
            *self.action_urls(),
            *super().get_urls(),
        ]


from apps.sync import queue_admin  # noqa: E402,F401  (registers the operators-only queue dashboard)
