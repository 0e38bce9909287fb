"""The report emailed to the destination address when a job ends, in the customer's language."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.models import JobEvent, JobStatus, SyncJob

MAX_LISTED_PROBLEMS = 50
PROBLEM_KINDS = ("message_skipped", "message_failed", "folder_refused", "folder_renamed", "keyword_dropped")


def report_context(job: SyncJob) -> dict:
    from apps.selfservice.views import status_url  # the portal owns its links

    problems = list(JobEvent.objects.filter(job=job, kind__in=PROBLEM_KINDS).order_by("id")[: MAX_LISTED_PROBLEMS + 1])
    duration = None
    if job.started_at and job.finished_at:
        duration = int((job.finished_at - job.started_at).total_seconds())
    return {
        "job": job,
        "status": job.status,
        "status_label": JobStatus(job.status).label,
        "error": error_message(job.error_code) if job.status == JobStatus.FAILED else "",
        "error_side": SIDE_MESSAGES.get(job.error_side, "") if job.status == JobStatus.FAILED else "",
        "duration_minutes": None if duration is None else max(1, round(duration / 60)),
        "problems": problems[:MAX_LISTED_PROBLEMS],
        "more_problems": len(problems) > MAX_LISTED_PROBLEMS,
        "status_url": status_url(job, absolute=True),
        "site_url": settings.SITE_URL,
    }


def send_report(job: SyncJob) -> None:
    with translation.override(job.language or settings.LANGUAGE_CODE):
        context = report_context(job)
        subject = render_to_string("sync/email/report_subject.txt", context).strip()
        text = render_to_string("sync/email/report.txt", context)
        html = render_to_string("sync/email/report.html", context)
    message = EmailMultiAlternatives(subject, text, to=[job.destination.email_address])
    message.attach_alternative(html, "text/html")
    message.send()
    SyncJob.objects.filter(pk=job.pk).update(report_sent_at=timezone.now())
