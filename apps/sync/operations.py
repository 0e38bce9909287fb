"""The operations page of the admin: is the service healthy right now?"""

from __future__ import annotations

import datetime
from collections import defaultdict
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apps.providers.models import Provider
from apps.sync.admin_display import FAILURE_PERIODS, _when_text, failures
from apps.sync.error_messages import error_message
from apps.sync.models import JobStatus, SyncJob
from apps.sync.recovery import stale_running_jobs


def age_text(seconds: int) -> str:
    """A wait as staff read it: "45 s", "3 min 12 s", "2 h 5 min", "3 days 4 h"."""
    seconds = max(0, int(seconds))
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return ngettext("%(days)d day %(hours)d h", "%(days)d days %(hours)d h", days) % {"days": days, "hours": hour}
    if hours:
        return _("%(hours)d h %(minutes)d min") % {"hours": hours, "minutes": minute}
    if minutes:
        return _("%(minutes)d min %(seconds)d s") % {"minutes": minutes, "seconds": second}
    return _("%(seconds)d s") % {"seconds": second}


def _jobs_url(**query) -> str:
    return reverse("admin:sync_syncjob_changelist") + "?" + urlencode(query)


def failure_breakdown(now: datetime.datetime) -> dict:
    """Jobs that failed in each period, by error code and by provider, each count with the link to
    the jobs list that shows those jobs. A job retried since still counts; a job counts once per
    code however many times it failed, and for both its providers."""
    periods = {key: now - length for key, (length, _label) in FAILURE_PERIODS.items()}
    longest = min(periods.values())
    rows = (
        failures()
        .filter(failed_at__gte=longest)
        .values("job_id", "error_code", "job__source__provider_id", "job__destination__provider_id")
        .annotate(last=Max("failed_at"))
        .order_by()
    )
    by_code: dict[str, dict[str, set]] = defaultdict(lambda: {key: set() for key in periods})
    by_provider: dict[int, dict[str, set]] = defaultdict(lambda: {key: set() for key in periods})
    for row in rows:
        for key, since in periods.items():
            if row["last"] >= since:
                by_code[row["error_code"]][key].add(row["job_id"])
                for provider_id in {row["job__source__provider_id"], row["job__destination__provider_id"]}:
                    by_provider[provider_id][key].add(row["job_id"])

    def cells(jobs: dict[str, set], **filters) -> list[dict]:
        return [
            {"count": len(jobs[key]), "url": _jobs_url(failed_within=key, **filters) if jobs[key] else ""}
            for key in periods
        ]

    names = Provider.objects.in_bulk(list(by_provider))
    return {
        "periods": [label for _length, label in FAILURE_PERIODS.values()],
        "by_code": [
            {"code": code, "meaning": error_message(code) if code else "", "cells": cells(jobs, failure_code=code)}
            for code, jobs in sorted(by_code.items(), key=lambda item: (-len(item[1]["7d"]), item[0]))
        ],
        "by_provider": [
            {
                "name": names[provider_id].name if provider_id in names else f"#{provider_id}",
                "cells": cells(jobs, provider=provider_id),
            }
            for provider_id, jobs in sorted(by_provider.items(), key=lambda item: -len(item[1]["7d"]))
        ],
    }


@permission_required("sync.view_syncjob", raise_exception=True)
def operations_view(request):
    now = timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    per_status = dict(SyncJob.objects.values_list("status").annotate(count=Count("id")).order_by())
    finished_today = SyncJob.objects.filter(finished_at__gte=today)
    totals = finished_today.aggregate(messages=Sum("messages_copied"), bytes=Sum("bytes_copied"))
    # A job that failed and was retried since has no end time now, but it did fail: its failure
    # counts, and so does it among the jobs that ended.
    failed_last_day = failures("24h").values("job_id")
    ended = SyncJob.objects.filter(Q(finished_at__gte=now - datetime.timedelta(days=1)) | Q(pk__in=failed_last_day))
    ended_count = ended.count()
    failed_count = failed_last_day.distinct().count()
    oldest_queued = (
        SyncJob.objects.filter(status=JobStatus.QUEUED)
        .annotate(waiting_since=Coalesce("queued_at", "created_at"))
        .order_by("waiting_since")
        .only("id")
        .first()
    )
    stale, _silent_since = stale_running_jobs(now)
    context = {
        **admin.site.each_context(request),
        "title": _("Operations"),
        "per_status": [(JobStatus(value).label, per_status.get(value, 0)) for value in JobStatus.values],
        "copies_today": finished_today.count(),
        "messages_today": totals["messages"] or 0,
        "bytes_today": totals["bytes"] or 0,
        "failure_rate": round(100 * failed_count / ended_count, 1) if ended_count else 0,
        "ended_last_day": ended_count,
        "failed_last_day": failed_count,
        "failed_last_day_url": _jobs_url(failed_within="24h"),
        "oldest_queued": oldest_queued,
        "oldest_queued_age": age_text((now - oldest_queued.waiting_since).total_seconds()) if oldest_queued else "",
        "stuck_jobs": [
            {"job": job, "heartbeat": _when_text(job.heartbeat_at) if job.heartbeat_at else "—"}
            for job in stale.select_related("source", "destination")[:100]
        ],
        "stale_seconds": settings.IMAPCOPY_HEARTBEAT_STALE_SECONDS,
        "failures": failure_breakdown(now),
    }
    return render(request, "admin/sync/operations.html", context)
