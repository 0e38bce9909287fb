"""What the jobs admin shows beside the job itself: times, sizes, durations and event details in
a readable form, the sentences that explain a refused action, the folder and event inlines, and
the list filters. Split from admin.py, which keeps the job admin and its actions."""

from __future__ import annotations

import datetime
import json

from django.contrib import admin
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy

from apps.providers.models import Provider
from apps.sync import services
from apps.sync.models import FolderProgress, JobEvent, JobFailure, JobStatus, SyncJob

MAX_EVENTS_SHOWN = 500
EXPORT_IDS_LOGGED = 200  # job ids written in the history entry of a CSV export
CANCELLED_BY = _("Cancelled by %(user)s on %(time)s.")
STOP_REQUESTED_BY = _("Asked to stop by %(user)s on %(time)s: the copy stops at its next checkpoint.")
STOP_REQUESTED = _("Asked to stop: the copy stops at its next checkpoint.")

# What staff read when an action cannot be done to a job: the reason, as a sentence.
REFUSED_CANCEL = _("Job %(id)s was not cancelled: it has already ended (%(status)s).")
REFUSED_RETRY = _("Job %(id)s was not queued again: only a failed or cancelled job can run again (status: %(status)s).")
REFUSED_STILL_ACTIVE = _("Job %(id)s was not queued again: it is still queued or running (status: %(status)s).")
REFUSED_ALREADY_ACTIVE = _(
    "Job %(id)s was not queued again: another copy of the same mailbox is already queued or running."
)
REFUSED_CREDENTIALS_ERASED = _(
    "Job %(id)s was not queued again: its passwords have been erased; the customer has to start a new copy."
)
REFUSED_REPORT_ACTIVE = _("No report was sent for job %(id)s: it has not ended yet (status: %(status)s).")
REFUSED_REPORT_ERASED = _("No report was sent for job %(id)s: its personal data has been erased.")
REFUSED_REPORT_NOT_PROVEN = _("No report was sent for job %(id)s: its owner has not confirmed the report address yet.")
REFUSED_REPORT_MAIL = _("No report was sent for job %(id)s: the mail server did not take it (%(error)s).")
REFUSED_ERASE_CREDENTIALS = _(
    "The passwords of job %(id)s were not erased: it is still queued or running (status: %(status)s); cancel it first."
)
REFUSED_ERASE_PERSONAL_DATA = _(
    "The personal data of job %(id)s was not erased: it is still queued or running (status: %(status)s); "
    "cancel it first."
)


def _refusal(job: SyncJob, exc: Exception, refused) -> str:
    """The sentence that says why the action was not done to `job`; `refused` is the action's
    own sentence for a job in the wrong state."""
    if isinstance(exc, services.ReportAddressNotProven):
        text = REFUSED_REPORT_NOT_PROVEN
    elif isinstance(exc, services.JobAlreadyActive):
        text = REFUSED_ALREADY_ACTIVE
    elif isinstance(exc, services.CredentialsErased):
        text = REFUSED_CREDENTIALS_ERASED
    elif isinstance(exc, OSError):
        text = REFUSED_REPORT_MAIL
    elif refused is REFUSED_REPORT_ACTIVE and not job.is_active:
        text = REFUSED_REPORT_ERASED
    else:
        text = refused
    error = (getattr(exc, "strerror", None) or str(exc)) if isinstance(exc, OSError) else ""
    return text % {"id": job.pk, "status": JobStatus(job.status).label, "error": error}


# Events that tell what went wrong: the job page shows them all, whatever the log's length.
ERROR_EVENT_KINDS = ("error", "message_failed", "message_skipped", "folder_refused", "report_failed", "reconnecting")


def _when(value, date_format: str = "SHORT_DATE_FORMAT"):
    """A time to the second, in the staff's timezone and language (Django's DATETIME_FORMAT
    stops at the minute, or at the hour: "3 p.m.")."""
    if not value:
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}">{}</time>', local.isoformat(timespec="seconds"), _when_text(value, date_format)
    )


def _when_text(value, date_format: str = "SHORT_DATE_FORMAT") -> str:
    local = timezone.localtime(value)
    return f"{formats.date_format(local, date_format)} {formats.time_format(local, 'H:i:s')}"


def _size(byte_count: int | None):
    """A human size, the exact number of bytes in its tooltip."""
    if byte_count is None:
        return "—"
    exact = ngettext("%(count)s byte", "%(count)s bytes", byte_count) % {
        "count": formats.number_format(byte_count, force_grouping=True)
    }
    return format_html('<span title="{}">{}</span>', exact, filesizeformat(byte_count))


def _details(detail) -> str:
    """An event's details as "key: value" lines rather than JSON."""
    if not detail:
        return "—"
    if not isinstance(detail, dict):
        return str(detail)
    lines = (
        (key, value if isinstance(value, str | int | float) else json.dumps(value, ensure_ascii=False))
        for key, value in detail.items()
    )
    return format_html(
        '<dl class="event-detail">{}</dl>', format_html_join("", "<div><dt>{}:</dt> <dd>{}</dd></div>", lines)
    )


class FolderProgressInline(admin.TabularInline):
    model = FolderProgress
    fields = [
        "source_name",
        "destination_name",
        "messages_total",
        "messages_copied",
        "messages_skipped",
        "messages_failed",
        "size_copied",
        "last_uid",
        "uidvalidity",
        "done",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Folders")

    @admin.display(description=_("size copied"))
    def size_copied(self, folder: FolderProgress):
        return _size(folder.bytes_copied)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ["time", "event_kind", "folder", "details"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Event log (every error, and the last events)")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # A huge log would make the page unusable: every error (the last MAX_EVENTS_SHOWN of
        # them) and the last events, in the order they happened.
        latest = queryset.order_by("-id").values_list("id", flat=True)
        ids = set(latest[:MAX_EVENTS_SHOWN]) | set(latest.filter(kind__in=ERROR_EVENT_KINDS)[:MAX_EVENTS_SHOWN])
        return queryset.filter(id__in=ids).order_by("id")

    @admin.display(description=pgettext_lazy("the moment an event happened", "time"))
    def time(self, event: JobEvent):
        return _when(event.created_at)

    @admin.display(description=_("event"))
    def event_kind(self, event: JobEvent):
        if event.kind in ERROR_EVENT_KINDS:
            return format_html('<strong class="event-error">{}</strong>', event.kind)
        return event.kind

    @admin.display(description=_("details"))
    def details(self, event: JobEvent):
        return _details(event.detail)

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


class ErrorCodeFilter(admin.SimpleListFilter):
    title = _("error code")
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        codes = SyncJob.objects.exclude(error_code="").order_by("error_code").values_list("error_code", flat=True)
        return [(code, code) for code in codes.distinct()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(error_code=self.value())
        return queryset


# The periods the operations page counts failures over, as the jobs list's filter knows them.
FAILURE_PERIODS = {
    "24h": (datetime.timedelta(hours=24), _("In the last 24 hours")),
    "7d": (datetime.timedelta(days=7), _("In the last 7 days")),
}


def failures(period: str | None = None, code: str | None = None):
    """Failures of jobs (kept when the jobs were retried since), in a period and with a code."""
    queryset = JobFailure.objects.all()
    if period in FAILURE_PERIODS:
        queryset = queryset.filter(failed_at__gte=timezone.now() - FAILURE_PERIODS[period][0])
    if code is not None:
        queryset = queryset.filter(error_code=code)
    return queryset


class _FailureFilter(admin.SimpleListFilter):
    """Jobs that failed in a period, with a code: one failure must match both, whichever of the two
    filters is chosen first."""

    def __init__(self, request, params, model, model_admin):
        self.chosen_period = request.GET.get(FailedWithinFilter.parameter_name)
        self.chosen_code = request.GET.get(FailureCodeFilter.parameter_name)
        super().__init__(request, params, model, model_admin)

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        return queryset.filter(pk__in=failures(self.chosen_period, self.chosen_code).values("job_id"))


class FailedWithinFilter(_FailureFilter):
    title = _("failure, even if retried since")
    parameter_name = "failed_within"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (_period, label) in FAILURE_PERIODS.items()]


class FailureCodeFilter(_FailureFilter):
    title = _("error code of a failure")
    parameter_name = "failure_code"

    def lookups(self, request, model_admin):
        codes = JobFailure.objects.exclude(error_code="").order_by("error_code").values_list("error_code", flat=True)
        return [(code, code) for code in codes.distinct()]


def _duration(job: SyncJob) -> str:
    if not job.started_at:
        return "—"
    end = job.finished_at or timezone.now()
    seconds = int((end - job.started_at).total_seconds())
    return str(datetime.timedelta(seconds=seconds))
