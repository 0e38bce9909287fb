"""What staff do to jobs: the list's bulk actions, the job page's buttons and staff note, and the
CSV export. Each goes through the service functions and is written to the admin's history with
its author. Split from admin.py, which keeps what the list and the job page show."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.sync import services
from apps.sync.admin_display import (
    EXPORT_IDS_LOGGED,
    REFUSED_CANCEL,
    REFUSED_ERASE_CREDENTIALS,
    REFUSED_ERASE_PERSONAL_DATA,
    REFUSED_REPORT_ACTIVE,
    REFUSED_RETRY,
    REFUSED_STILL_ACTIVE,
    _refusal,
)
from apps.sync.models import JobStatus, SyncJob

RETRY_ERRORS = (services.InvalidJobState, services.JobAlreadyActive, services.CredentialsErased)


def _erased(job: SyncJob) -> bool:
    return job.destination.email_address == services.ERASED_ADDRESS


@dataclass(frozen=True)
class JobAction:
    """One thing staff can do to a job, from the list (several jobs) or from the job's page."""

    name: str  # the URL's last part on the job page
    permission: str  # ModelAdmin.has_<permission>_permission
    label: str  # the job page's button
    operation: Callable[[SyncJob], object]
    errors: tuple
    change_message: str  # the admin's history, in English as Django's own entries
    refused: str  # why it was not done, for a job in the wrong state
    done: str  # the job page's message once done; %(id)s is the job
    available: Callable[[SyncJob], bool]  # whether the job page offers it
    done_while_running: str = ""  # instead, when the job is still running afterwards
    question: str = ""  # destructive: asked on a page of its own first
    consequence: str = ""
    confirm: str = ""  # the confirmation page's button


JOB_ACTIONS = {
    action.name: action
    for action in [
        JobAction(
            name="cancel",
            permission="cancel",
            label=_("Cancel the job"),
            operation=lambda job: services.job_cancel(job=job),
            errors=(services.InvalidJobState,),
            change_message="Cancelled",
            refused=REFUSED_CANCEL,
            done=_("Job %(id)s is cancelled."),
            done_while_running=_("Job %(id)s is asked to stop: the copy stops at its next checkpoint."),
            available=lambda job: job.is_active and not job.cancel_requested,
            question=_("Cancel job %(id)s (%(accounts)s)?"),
            consequence=_(
                "A job that has not started never starts; a running copy stops at its next checkpoint. "
                "It can be retried later and then resumes where it stopped, as long as its passwords are kept."
            ),
            confirm=_("Yes, cancel the job"),
        ),
        JobAction(
            name="retry",
            permission="retry",
            label=_("Retry the job"),
            operation=lambda job: services.job_retry(job=job),
            errors=RETRY_ERRORS,
            change_message="Retried",
            refused=REFUSED_RETRY,
            done=_("Job %(id)s is queued again: it resumes where it stopped."),
            available=lambda job: (
                job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
                and job.source.has_password
                and job.destination.has_password
            ),
        ),
        JobAction(
            name="resend-report",
            permission="resend_report",
            label=_("Re-send the report"),
            operation=lambda job: services.job_send_report(job=job, again=True),
            errors=(services.InvalidJobState, OSError),
            change_message="Report re-sent",
            refused=REFUSED_REPORT_ACTIVE,
            done=_("The report of job %(id)s was sent again."),
            available=lambda job: not job.is_active and job.report_address_proven and not _erased(job),
        ),
        JobAction(
            name="erase-credentials",
            permission="erase",
            label=_("Erase the credentials now"),
            operation=lambda job: services.job_erase_credentials(job=job),
            errors=(services.InvalidJobState,),
            change_message="Credentials erased",
            refused=REFUSED_ERASE_CREDENTIALS,
            done=_("The passwords of job %(id)s are erased: it can no longer run again."),
            available=lambda job: not job.is_active and (job.source.has_password or job.destination.has_password),
            question=_("Erase the passwords of job %(id)s (%(accounts)s)?"),
            consequence=_(
                "The job can then never run again: to copy anything more, the customer has to start a new copy."
            ),
            confirm=_("Yes, erase the passwords"),
        ),
        JobAction(
            name="erase-personal-data",
            permission="erase",
            label=_("Erase personal data (keep the counts)"),
            operation=lambda job: services.job_erase_personal_data(job=job),
            errors=(services.InvalidJobState,),
            change_message="Personal data erased",
            refused=REFUSED_ERASE_PERSONAL_DATA,
            done=_("The personal data of job %(id)s is erased; its counts are kept."),
            available=lambda job: not job.is_active and not _erased(job),
            question=_("Erase the personal data of job %(id)s (%(accounts)s)?"),
            consequence=_(
                "Addresses, logins, servers, passwords, folder names and message details are erased, from the "
                "admin's history too; only the counts are kept. This cannot be undone."
            ),
            confirm=_("Yes, erase the personal data"),
        ),
    ]
}


class JobActionsMixin:
    """The jobs admin's actions; mixed into SyncJobAdmin (a ModelAdmin)."""

    actions = [
        "cancel_jobs",
        "retry_jobs",
        "copy_all_mail_whole",
        "resend_reports",
        "erase_credentials",
        "erase_personal_data",
        "export_csv",
    ]

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

    def has_note_permission(self, request) -> bool:
        """Writing the staff note: the only change a job takes from a form."""
        return self._has(request, "change")

    # --- the list's actions ---------------------------------------------------------------------
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

    def _apply_action(self, request, queryset, name: str, done_message) -> None:
        action = JOB_ACTIONS[name]
        self._apply(
            request, queryset, action.operation, done_message, action.errors, action.change_message, action.refused
        )

    @admin.action(description=_("Cancel the selected jobs"), permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        self._apply_action(
            request, queryset, "cancel", lambda n: ngettext("%(count)d job cancelled.", "%(count)d jobs cancelled.", n)
        )

    @admin.action(description=_("Retry the selected jobs"), permissions=["retry"])
    def retry_jobs(self, request, queryset):
        self._apply_action(
            request,
            queryset,
            "retry",
            lambda n: ngettext("%(count)d job queued again.", "%(count)d jobs queued again.", n),
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
            RETRY_ERRORS,
            "All Mail copied whole",
            REFUSED_STILL_ACTIVE,
        )

    @admin.action(description=_("Re-send the report"), permissions=["resend_report"])
    def resend_reports(self, request, queryset):
        self._apply_action(
            request,
            queryset,
            "resend-report",
            lambda n: ngettext("%(count)d report sent.", "%(count)d reports sent.", n),
        )

    @admin.action(description=_("Erase the credentials now"), permissions=["erase"])
    def erase_credentials(self, request, queryset):
        self._apply_action(
            request,
            queryset,
            "erase-credentials",
            lambda n: ngettext("Credentials of %(count)d job erased.", "Credentials of %(count)d jobs erased.", n),
        )

    @admin.action(description=_("Erase personal data (keep the counts)"), permissions=["erase"])
    def erase_personal_data(self, request, queryset):
        self._apply_action(
            request,
            queryset,
            "erase-personal-data",
            lambda n: ngettext("Personal data of %(count)d job erased.", "Personal data of %(count)d jobs erased.", n),
        )

    @admin.action(description=_("Export as CSV"), permissions=["export"])
    def export_csv(self, request, queryset):
        return export_csv(request, queryset)

    # --- the job page's buttons and note ---------------------------------------------------------
    def job_panel(self, request, job: SyncJob) -> dict:
        """What the job page shows above the job: the buttons this member may press now, the
        staff note, and where the note is saved."""
        allowed = [
            action for action in JOB_ACTIONS.values() if getattr(self, f"has_{action.permission}_permission")(request)
        ]
        return {
            "may_act": bool(allowed),
            "actions": [
                {
                    "label": action.label,
                    "url": reverse("admin:sync_syncjob_job_action", args=[job.pk, action.name]),
                    "confirm": bool(action.question),
                    "name": action.name,
                }
                for action in allowed
                if action.available(job)
            ],
            "may_write_note": self.has_note_permission(request),
            "note_url": reverse("admin:sync_syncjob_staff_note", args=[job.pk]),
        }

    def _job_for(self, request, object_id: str) -> SyncJob:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        return job

    def job_action_view(self, request, object_id: str, name: str):
        action = JOB_ACTIONS.get(name)
        if action is None:
            raise Http404
        job = self._job_for(request, object_id)
        if not getattr(self, f"has_{action.permission}_permission")(request):
            raise PermissionDenied
        job_url = reverse("admin:sync_syncjob_change", args=[job.pk])
        if request.method == "POST":
            try:
                action.operation(job)
            except action.errors as exc:
                self.message_user(request, _refusal(job, exc, action.refused), messages.WARNING)
            else:
                self.log_change(request, job, action.change_message)
                done = action.done_while_running if job.is_active and action.done_while_running else action.done
                self.message_user(request, done % {"id": job.pk}, messages.SUCCESS)
            return redirect(job_url)
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET", "POST"])
        if not action.question:  # nothing to confirm: the button posts at once
            return redirect(job_url)
        values = {"id": job.pk, "accounts": f"{job.source_address or '—'} → {job.destination.email_address}"}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "object": job,
            "title": action.question % values,
            "consequence": action.consequence,
            "confirm": action.confirm,
            "job_url": job_url,
        }
        return TemplateResponse(request, "admin/sync/syncjob/action_confirmation.html", context)

    def staff_note_view(self, request, object_id: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job_for(request, object_id)
        if not self.has_note_permission(request):
            raise PermissionDenied
        if services.job_set_staff_note(job=job, note=request.POST.get("staff_note", "")):
            # The history keeps every version of the note, with its author and time.
            self.log_change(request, job, f"Staff note: {job.staff_note}" if job.staff_note else "Staff note cleared")
            self.message_user(request, _("The staff note is saved."), messages.SUCCESS)
        return redirect(reverse("admin:sync_syncjob_change", args=[job.pk]) + "#staff-note")

    def action_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/note/", view(self.staff_note_view), name="sync_syncjob_staff_note"),
            path(
                "<path:object_id>/actions/<slug:name>/",
                view(self.job_action_view),
                name="sync_syncjob_job_action",
            ),
        ]


def export_csv(request, queryset) -> HttpResponse:
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
