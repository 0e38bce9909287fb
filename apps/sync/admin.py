"""Staff's back office for copies: list, inspect, cancel, retry, re-send, erase, export."""

from __future__ import annotations

import csv
import datetime

from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.html import escape, format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.providers.models import Provider
from apps.sync import services
from apps.sync.error_messages import error_message
from apps.sync.models import FolderProgress, JobEvent, JobStatus, ReportProof, SyncJob

MAX_EVENTS_SHOWN = 500


class FolderProgressInline(admin.TabularInline):
    model = FolderProgress
    fields = [
        "source_name",
        "destination_name",
        "messages_total",
        "messages_copied",
        "messages_skipped",
        "messages_failed",
        "bytes_copied",
        "last_uid",
        "uidvalidity",
        "done",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Folders")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ["created_at", "kind", "folder", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Event log")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # A huge log would make the page unusable; the first events and the errors matter most.
        ids = list(queryset.values_list("id", flat=True)[:MAX_EVENTS_SHOWN])
        return queryset.filter(id__in=ids)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class HasErrorsFilter(admin.SimpleListFilter):
    title = _("errors")
    parameter_name = "has_errors"

    def lookups(self, request, model_admin):
        return [("yes", _("With skipped or failed messages, or failed")), ("no", _("Without"))]

    def queryset(self, request, queryset):
        problems = Q(messages_skipped__gt=0) | Q(messages_failed__gt=0) | Q(status=JobStatus.FAILED)
        if self.value() == "yes":
            return queryset.filter(problems)
        if self.value() == "no":
            return queryset.exclude(problems)
        return queryset


class ProviderFilter(admin.SimpleListFilter):
    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(provider.pk, provider.name) for provider in Provider.objects.all()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(Q(source__provider_id=self.value()) | Q(destination__provider_id=self.value()))
        return queryset


def _duration(job: SyncJob) -> str:
    if not job.started_at:
        return "—"
    end = job.finished_at or timezone.now()
    seconds = int((end - job.started_at).total_seconds())
    return str(datetime.timedelta(seconds=seconds))


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
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "problems",
    ]
    list_display_links = ["id", "coloured_status"]
    list_filter = ["status", ProviderFilter, HasErrorsFilter, "created_at"]
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
                    "cancel_requested",
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
                    "bytes_total",
                    "bytes_copied",
                    "current_folder",
                ]
            },
        ),
        (_("Times"), {"fields": ["created_at", "started_at", "progress_at", "finished_at"]}),
        (
            _("Outcome"),
            {
                "fields": [
                    "error_code",
                    "error_text",
                    "error_side",
                    "error_detail",
                    "report_recipient",
                    "report_sent_at",
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
        return filesizeformat(job.bytes_copied)

    @admin.display(description=_("duration"))
    def duration(self, job: SyncJob):
        return _duration(job)

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

    @admin.display(description=_("error"))
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
                "date": formats.date_format(timezone.localtime(job.report_address_confirmed_at), "DATETIME_FORMAT")
            }
        elif job.report_confirmation_sent_at:
            proof = _("not confirmed yet (confirmation link sent on %(date)s): no report is sent to it") % {
                "date": formats.date_format(timezone.localtime(job.report_confirmation_sent_at), "DATETIME_FORMAT")
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
    def _apply(self, request, queryset, operation, done_message, errors: tuple, change_message: str):
        done = 0
        for job in queryset.select_related("source", "destination"):
            try:
                operation(job)
            except errors as exc:
                self.message_user(
                    request,
                    _("Job %(id)s: not possible (%(reason)s).") % {"id": job.pk, "reason": type(exc).__name__},
                    messages.WARNING,
                )
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
        for job in queryset.select_related("source__provider", "destination__provider").iterator(chunk_size=2000):
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


def _spreadsheet_safe(*cells) -> list:
    """Cells a spreadsheet would run as a formula (customers type the addresses) start with a
    quote, which spreadsheets show as text."""
    return [
        f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell for cell in cells
    ]


from apps.sync import queue_admin  # noqa: E402,F401  (registers the operators-only queue dashboard)
