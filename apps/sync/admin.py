from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.sync import services
from apps.sync.models import FolderProgress, JobEvent, SyncJob


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
        "done",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ["created_at", "kind", "folder", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncJob)
class SyncJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "source_address",
        "destination",
        "status",
        "percent_done",
        "messages_copied",
        "messages_total",
        "created_at",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["source_address", "destination__email_address", "source__login", "destination__login"]
    list_select_related = ["destination"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in SyncJob._meta.fields]
    inlines = [FolderProgressInline, JobEventInline]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Cancel the selected jobs"))
    def cancel_jobs(self, request, queryset):
        done = 0
        for job in queryset:
            try:
                services.job_cancel(job=job)
                done += 1
            except services.InvalidJobState:
                pass
        self.message_user(
            request,
            ngettext("%(count)d job cancelled.", "%(count)d jobs cancelled.", done) % {"count": done},
            messages.SUCCESS,
        )

    @admin.action(description=_("Retry the selected jobs"))
    def retry_jobs(self, request, queryset):
        done = 0
        for job in queryset:
            try:
                services.job_retry(job=job)
                done += 1
            except (services.InvalidJobState, services.JobAlreadyActive, services.CredentialsErased):
                pass
        self.message_user(
            request,
            ngettext("%(count)d job queued again.", "%(count)d jobs queued again.", done) % {"count": done},
            messages.SUCCESS,
        )
