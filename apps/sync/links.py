"""The links a job hands out: its private status page and its report address's confirmation,
signed, on the portal's address its customer used. The status pages read them back here too, so
that the emails (apps.sync.reports), the admin and the pages agree on one format."""

from __future__ import annotations

import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.http.request import validate_host
from django.urls import reverse

from apps.sync.models import JobEvent, SyncJob

STATUS_SALT = "imapcopy.status-link"
REPORT_CONFIRMATION_SALT = "imapcopy.report-address"
# The job's event that records the portal's address the customer used (see site_url_for).
SITE_ADDRESS_EVENT = "site_address"


class ConfirmationLinkExpired(Exception):
    """A genuine confirmation link, older than IMAPCOPY_REPORT_CONFIRMATION_DAYS."""


def request_site_url(request) -> str:
    """The portal's address as this customer reached it, to put in the links of their emails.

    The site's configured address (SITE_URL) when the request came to its host; else the
    request's own scheme and host, which Django has checked against ALLOWED_HOSTS. A wildcard in
    ALLOWED_HOSTS trusts any Host header: then SITE_URL alone (a forged Host header must never
    put someone else's site into our emails)."""
    host = request.get_host()  # raises DisallowedHost for a host not in ALLOWED_HOSTS
    if host.lower() == urlsplit(settings.SITE_URL).netloc.lower() or not _trusted_host(host):
        return settings.SITE_URL
    return f"{request.scheme}://{host}"


def _trusted_host(host: str) -> bool:
    return validate_host(host.rsplit(":", 1)[0] if host.count(":") == 1 else host, _named_hosts())


def _named_hosts() -> list[str]:
    return [host for host in settings.ALLOWED_HOSTS if host and host != "*"]


def site_url_for(job: SyncJob) -> str:
    """The portal's address for this job's links: the one its customer used when it was created
    (if ALLOWED_HOSTS still names its host), else SITE_URL."""
    detail = (
        JobEvent.objects.filter(job=job, kind=SITE_ADDRESS_EVENT)
        .order_by("-id")
        .values_list("detail", flat=True)
        .first()
    )
    url = detail.get("url") if isinstance(detail, dict) else None
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc and not parts.path and _trusted_host(parts.netloc):
            return f"{parts.scheme}://{parts.netloc}"
    return settings.SITE_URL


def status_token(job: SyncJob) -> str:
    return signing.dumps(str(job.public_id), salt=STATUS_SALT, compress=True)


def status_url(job: SyncJob, *, absolute: bool = False) -> str:
    path = reverse("selfservice:job-status", kwargs={"token": status_token(job)})
    return site_url_for(job) + path if absolute else path


def job_from_status_token(token: str) -> SyncJob | None:
    """The job a status link names; None when the link is forged, expired or its job is gone."""
    try:
        public_id = signing.loads(
            token, salt=STATUS_SALT, max_age=datetime.timedelta(days=settings.IMAPCOPY_STATUS_LINK_DAYS)
        )
    except signing.BadSignature:
        return None
    return SyncJob.objects.filter(public_id=public_id).first()


def report_confirmation_url(job: SyncJob, *, absolute: bool = False) -> str:
    # The link names the address it confirms: it confirms nothing once the job has another one.
    token = signing.dumps(
        {"job": str(job.public_id), "address": job.report_address}, salt=REPORT_CONFIRMATION_SALT, compress=True
    )
    path = reverse("selfservice:report-confirm", kwargs={"token": token})
    return site_url_for(job) + path if absolute else path


def job_from_confirmation_token(token: str) -> SyncJob | None:
    """The job whose report address a confirmation link confirms; None when the link is forged or
    names an address the job no longer has. Raises ConfirmationLinkExpired for an old one."""
    try:
        data = signing.loads(
            token,
            salt=REPORT_CONFIRMATION_SALT,
            max_age=datetime.timedelta(days=settings.IMAPCOPY_REPORT_CONFIRMATION_DAYS),
        )
    except signing.SignatureExpired:
        raise ConfirmationLinkExpired from None
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    return SyncJob.objects.filter(public_id=data.get("job"), report_address=data.get("address")).first()
