"""Jobs whose report address the tests take as confirmed by its owner.

Test accounts use the provider "Other" (a server the customer types), whose typed address gets
the report only once its owner clicks the confirmation link; tests about something else than that
link confirm it the way the link does."""

from __future__ import annotations

from apps.sync import services
from apps.sync.models import SyncJob


def confirmed_report_address(job: SyncJob) -> SyncJob:
    services.job_confirm_report_address(job=job, address=job.report_address)
    return job


def confirmation_path(message) -> str:
    """The confirmation link of a confirmation email, as a path on the site (the link starts with
    the portal's address the customer used: SITE_URL, or the test client's host)."""
    import re

    (link,) = set(re.findall(r"https?://[^/\s\"<>]+(/(?:[a-z]{2}/)?report/[^\s\"<>]+/)", message.body))
    return link


def confirm_by_link(client, outbox) -> None:
    """Do what the owner of the typed address does: open the link emailed to it and confirm."""
    (message,) = [m for m in outbox if "/report/" in m.body]
    client.post(confirmation_path(message))
