"""Staff's back office for copies: list, inspect, cancel, retry, re-send, erase, export."""

from __future__ import annotations

import csv

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape, format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.sync import services
from apps.sync.admin_display import (
    CANCELLED_BY,
    EXPORT_IDS_LOGGED,
    REFUSED_CANCEL,
    REFUSED_ERASE_CREDENTIALS,
    REFUSED_ERASE_PERSONAL_DATA,
    REFUSED_REPORT_ACTIVE,
    REFUSED_RETRY,
    REFUSED_STILL_ACTIVE,
    STOP_REQUESTED,
    STOP_REQUESTED_BY,
    ErrorCodeFilter,
    FolderProgressInline,
    HasErrorsFilter,
    JobEventInline,
    ProviderFilter,
    _duration,
    _refusal,
    _size,
    _when,
    _when_text,
)
from apps.sync.error_messages import error_message
from apps.sync.models import JobStatus, ReportProof, SyncJob


@admin.register(SyncJob)
class SyncJobAdmin(admin.ModelAdmin):
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
    list_filter = ["status", ProviderFilter, HasErrorsFilter, ErrorCodeFilter, "created_at"]
    search_fields = ["source_address", "destination__email_address", "source__login", "destination__login"]
    list_select_related = ["source__provider", "destination__provider"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # counting 100,000 rows on every page view is slow
    inlines = [FolderProgressInline, JobEventInline]

    class Media:
        css = {"all": ["css/admin-jobs.css"]}

    actions = [
        "cancel_jobs",
        "retry_jobs",
        "copy_all_mail_whole",
        "resend_reports",
        "erase_credentials",
        "erase_personal_data",
        "export_csv",
    ]
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
        (_("Times"), {"fields": ["created", "started", "last_progress", "finished", "duration"]}),
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
        # Jobs change only through the actions below (services), never through a form.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def _has(self, request, codename: str) -> bool:
        return request.user.has_perm(f"sync.{codename}_syncjob")

    def has_cancel_permission(self, request) -> bool:
        return self._has(request, "cancel")

    def has_retry_permission(self, request) -> bool:
        return self._has(request, "retry")

    def has_resend_report_permission(self, request) -> bool:
        return self._has(request, "resend_report")

    def has_erase_permission(self, request) -> bool:
        return self._has(request, "erase")

    def has_export_permission(self, request) -> bool:
        return self._has(request, "export")

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
        from apps.sync.reports import job_losses

        sections = job_losses(job)
        if not sections:
            return "—"
        # The template escapes every subject and folder name; its output is safe HTML.
        return render_to_string("sync/email/_losses.html", {"losses": sections})

    # --- actions ---------------------------------------------------------------------------
    def _apply(self, request, queryset, operation, done_message, errors: tuple, change_message: str, refused):
        done = 0
        for job in queryset.select_related("source", "destination"):
            try:
                operation(job)
            except errors as exc:
                self.message_user(request, _refusal(job, exc, refused), messages.WARNING)
                continue
            done += 1
            self.log_change(request, job, change_message)
        if done:
            self.message_user(request, done_message(done) % {"count": done}, messages.SUCCESS)

    @admin.action(description=_("Cancel the selected jobs"), permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_cancel(job=job),
            lambda n: ngettext("%(count)d job cancelled.", "%(count)d jobs cancelled.", n),
            (services.InvalidJobState,),
            "Cancelled",
            REFUSED_CANCEL,
        )

    @admin.action(description=_("Retry the selected jobs"), permissions=["retry"])
    def retry_jobs(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_retry(job=job),
            lambda n: ngettext("%(count)d job queued again.", "%(count)d jobs queued again.", n),
            (services.InvalidJobState, services.JobAlreadyActive, services.CredentialsErased),
            "Retried",
            REFUSED_RETRY,
        )

    @admin.action(description=_("Copy Gmail's All Mail whole as a folder, then run again"), permissions=["retry"])
    def copy_all_mail_whole(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_copy_all_mail_whole(job=job),
            lambda n: ngettext(
                "%(count)d job queued again to copy All Mail whole.",
                "%(count)d jobs queued again to copy All Mail whole.",
                n,
            ),
            (services.InvalidJobState, services.JobAlreadyActive, services.CredentialsErased),
            "All Mail copied whole",
            REFUSED_STILL_ACTIVE,
        )

    @admin.action(description=_("Re-send the report"), permissions=["resend_report"])
    def resend_reports(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_send_report(job=job, again=True),
            lambda n: ngettext("%(count)d report sent.", "%(count)d reports sent.", n),
            (services.InvalidJobState, OSError),
            "Report re-sent",
            REFUSED_REPORT_ACTIVE,
        )

    @admin.action(description=_("Erase the credentials now"), permissions=["erase"])
    def erase_credentials(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_erase_credentials(job=job),
            lambda n: ngettext("Credentials of %(count)d job erased.", "Credentials of %(count)d jobs erased.", n),
            (services.InvalidJobState,),
            "Credentials erased",
            REFUSED_ERASE_CREDENTIALS,
        )

    @admin.action(description=_("Erase personal data (keep the counts)"), permissions=["erase"])
    def erase_personal_data(self, request, queryset):
        self._apply(
            request,
            queryset,
            lambda job: services.job_erase_personal_data(job=job),
            lambda n: ngettext("Personal data of %(count)d job erased.", "Personal data of %(count)d jobs erased.", n),
            (services.InvalidJobState,),
            "Personal data erased",
            REFUSED_ERASE_PERSONAL_DATA,
        )

    @admin.action(description=_("Export as CSV"), permissions=["export"])
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="imapcopy-jobs.csv"'
        writer = csv.writer(response)
        writer.writerow(
            [
                "id",
                "status",
                "source",
                "destination",
                "source_provider",
                "destination_provider",
                "messages_total",
                "messages_copied",
                "messages_skipped",
                "messages_failed",
                "bytes_copied",
                "created_at",
                "started_at",
                "finished_at",
                "error_code",
            ]
        )
        exported = []
        for job in queryset.select_related("source__provider", "destination__provider").iterator(chunk_size=2000):
            exported.append(job.pk)
            writer.writerow(
                _spreadsheet_safe(
                    job.pk,
                    job.status,
                    job.source_address,
                    job.destination.email_address,
                    job.source.provider.name,
                    job.destination.provider.name,
                    job.messages_total,
                    job.messages_copied,
                    job.messages_skipped,
                    job.messages_failed,
                    job.bytes_copied,
                    job.created_at.isoformat(),
                    job.started_at.isoformat() if job.started_at else "",
                    job.finished_at.isoformat() if job.finished_at else "",
                    job.error_code,
                )
            )
        _log_export(request, exported)
        return response

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "operations_url": reverse("admin:sync_operations")}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        from django.urls import path

        from apps.sync.operations import operations_view

        return [
            path("operations/", self.admin_site.admin_view(operations_view), name="sync_operations"),
            *super().get_urls(),
        ]


def _log_export(request, job_ids: list[int]) -> None:
    """One entry in the admin's history per export: who took which jobs' data out, and when."""
    shown = ", ".join(f"#{pk}" for pk in job_ids[:EXPORT_IDS_LOGGED])
    more = len(job_ids) - EXPORT_IDS_LOGGED
    LogEntry.objects.create(
        user_id=request.user.pk,
        content_type_id=ContentType.objects.get_for_model(SyncJob).pk,
        object_id="",
        object_repr=f"CSV export of {len(job_ids)} job(s)",
        action_flag=CHANGE,
        change_message=f"Exported as CSV: {shown}" + (f" and {more} more" if more > 0 else ""),
    )


def _spreadsheet_safe(*cells) -> list:
    """Cells a spreadsheet would run as a formula (customers type the addresses) start with a
    quote, which spreadsheets show as text."""
    return [
        f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell for cell in cells
    ]


from apps.sync import queue_admin  # noqa: E402,F401  (registers the operators-only queue dashboard)
