"""The operations page of the admin: is the service healthy right now?"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Min, Sum
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.sync.models import JobStatus, SyncJob
from apps.sync.recovery import stale_running_jobs


@permission_required("sync.view_syncjob")
def operations_view(request):
    now = timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    per_status = dict(SyncJob.objects.values_list("status").annotate(count=Count("id")).order_by())
    finished_today = SyncJob.objects.filter(finished_at__gte=today)
    totals = finished_today.aggregate(messages=Sum("messages_copied"), bytes=Sum("bytes_copied"))
    last_day = SyncJob.objects.filter(finished_at__gte=now - datetime.timedelta(days=1))
    ended = last_day.count()
    failed = last_day.filter(status=JobStatus.FAILED).count()
    oldest_queued = SyncJob.objects.filter(status=JobStatus.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    stale, _silent_since = stale_running_jobs(now)
    context = {
        **admin.site.each_context(request),
        "title": _("Operations"),
        "per_status": [(JobStatus(value).label, per_status.get(value, 0)) for value in JobStatus.values],
        "copies_today": finished_today.count(),
        "messages_today": totals["messages"] or 0,
        "bytes_today": totals["bytes"] or 0,
        "failure_rate": round(100 * failed / ended, 1) if ended else 0,
        "ended_last_day": ended,
        "oldest_queued_age": (now - oldest_queued) if oldest_queued else None,
        "stuck_jobs": stale.select_related("source", "destination")[:100],
        "stale_seconds": settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS,
    }
    return render(request, "admin/sync/operations.html", context)
