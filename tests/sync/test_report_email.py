"""The report email's figures (issue 14, item 3): copied apart from what was already in the
mailbox, sizes in the same decimal units as the status page, a duration in seconds under a
minute, thousands separators by language, and the link to the portal's address the customer used.

Tests in French and Portuguese look for translated text: they pass once the catalogs carry this
work's translations."""

from __future__ import annotations

import datetime
import re

import pytest
from django.core import mail
from django.utils import timezone

from apps.sync import links, reports, services
from apps.sync.models import JobStatus, SyncJob
from tests.support.report_address import confirmed_report_address

pytestmark = pytest.mark.django_db


def finished_job(make_account, *, language="en", seconds=2, events=(), **figures) -> SyncJob:
    job = services.job_create(
        source=make_account("alice@example.org"),
        destination=make_account("alice@example.net"),
        language=language,
        enqueue=False,
    )
    confirmed_report_address(job)
    run = services.job_claim(job_id=job.pk, worker_name="w")
    for kind, folder, detail in events:
        services.job_record_event(job_id=job.pk, kind=kind, folder=folder, detail=detail)
    values = dict(folders_total=15, folders_done=15, messages_total=15_718, messages_copied=15_718)
    values.update(figures)
    services.job_finish(job_id=job.pk, run=run, status=JobStatus.FINISHED, counters=services.JobCounters(**values))
    end = timezone.now()
    SyncJob.objects.filter(pk=job.pk).update(started_at=end - datetime.timedelta(seconds=seconds), finished_at=end)
    job.refresh_from_db()
    return job


def report(job: SyncJob) -> tuple[str, str]:
    mail.outbox.clear()
    services.job_send_report(job=job, again=True)
    (message,) = mail.outbox
    text = message.body.replace("\xa0", " ").replace("\u202f", " ")
    html = message.alternatives[0][0].replace("\xa0", " ").replace("\u202f", " ")
    return text, html


ALL_THERE = [
    ("already_present", "INBOX", {"messages": 15_000, "bytes": 400_000_000}),
    ("already_present", "Archives", {"messages": 718, "bytes": 44_300_000}),
]


def test_a_rerun_onto_a_full_mailbox_reports_nothing_copied(make_account):
    job = finished_job(make_account, events=ALL_THERE, bytes_copied=444_300_000)
    text, html = report(job)
    assert "Every message was already in this mailbox: nothing needed to be copied." in text
    assert "Copied: 0 messages (0 bytes)" in text
    assert "Already in this mailbox, not copied again: 15,718 messages (444.3 MB)" in text
    assert "Messages in the source mailbox: 15,718" in text
    assert "15,718 of 15,718" not in text and "MiB" not in text and "Mio" not in text
    assert "<li>Copied: 0 messages (0 bytes)</li>" in html


def test_a_first_copy_reports_what_it_copied_and_no_already_there_line(make_account):
    job = finished_job(make_account, bytes_copied=465_900_000)
    text, _html = report(job)
    assert "Copied: 15,718 messages (465.9 MB)" in text
    assert "Already in this mailbox" not in text and "nothing needed to be copied" not in text


@pytest.mark.parametrize(("seconds", "said"), [(2, "Duration: 2 seconds"), (170, "Duration: 3 minutes")])
def test_the_duration_is_in_seconds_under_a_minute(make_account, seconds, said):
    text, _html = report(finished_job(make_account, seconds=seconds, bytes_copied=1))
    assert said in text and "1 minute" not in text


def test_the_status_page_and_the_email_say_the_same_size(make_account, client):
    job = finished_job(make_account, events=ALL_THERE, bytes_copied=444_300_000)
    text, _html = report(job)
    page = client.get(links.status_url(job)).content.decode().replace("\xa0", " ")
    assert "15,718 messages (444.3 MB)" in text and "15,718 messages (444.3 MB)" in page


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            [
                "Tous les messages se trouvaient déjà dans cette boîte mail : il n’y avait rien à copier.",
                "Copiés : 0 message (0 octet)",
                "Déjà dans cette boîte mail, non copiés à nouveau : 15 718 messages (444,3 Mo)",
                "Durée : 2 secondes",
            ],
        ),
        (
            "pt",
            [
                "Todas as mensagens já estavam nesta caixa de correio: não havia nada a copiar.",
                "Copiadas: 0 mensagens (0 bytes)",
                "Já nesta caixa de correio, não copiadas novamente: 15.718 mensagens (444,3 MB)",
                "Duração: 2 segundos",
            ],
        ),
    ],
)
def test_the_report_in_french_and_portuguese(make_account, client, language, expected):
    """Waits for the catalogs' merge."""
    job = finished_job(make_account, language=language, events=ALL_THERE, bytes_copied=444_300_000)
    text, _html = report(job)
    for sentence in expected:
        assert sentence in text, (sentence, text)
    # The status page in the same language uses the same units.
    page = client.get(f"/{language}" + links.status_url(job)).content.decode().replace("\xa0", " ")
    assert expected[2].rsplit(": ", 1)[1] in page.replace("\u202f", " ")


def test_the_reports_link_uses_the_portals_address_the_customer_used(make_account, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "mail-move.example.com"]
    settings.SITE_URL = "http://127.0.0.1:8000"
    job = finished_job(make_account, bytes_copied=1)
    services.job_record_event(
        job_id=job.pk, kind=links.SITE_ADDRESS_EVENT, detail={"url": "https://mail-move.example.com"}
    )
    text, html = report(job)
    assert re.search(r"https://mail-move\.example\.com/status/[^/\s]+/", text)
    assert "127.0.0.1:8000" not in text + html


def test_a_recorded_address_no_longer_allowed_falls_back_to_site_url(make_account, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    settings.SITE_URL = "https://imapcopy.example.com"
    job = finished_job(make_account, bytes_copied=1)
    services.job_record_event(
        job_id=job.pk, kind=links.SITE_ADDRESS_EVENT, detail={"url": "https://old-name.example.com"}
    )
    text, _html = report(job)
    assert "https://imapcopy.example.com/status/" in text and "old-name" not in text


@pytest.mark.django_db(transaction=True)
def test_a_second_copy_onto_the_filled_destination_reports_everything_already_there(
    filled_accounts, job_between, run_worker
):
    """The real engine and worker: a second job between the same two mailboxes finds every message
    on the destination (the engine's `already_present` events carry their sizes) and says so."""
    source_side, destination_side = filled_accounts(seed=1414, messages=12)
    first = job_between(source_side, destination_side)
    assert run_worker().returncode == 0
    first.refresh_from_db()
    count = first.messages_total
    assert (first.status, first.messages_copied) == (JobStatus.FINISHED, count) and count >= 12
    text, _html = report(first)
    assert f"Copied: {count} messages (" in text and "Already in this mailbox" not in text

    second = job_between(source_side, destination_side)
    assert run_worker().returncode == 0
    second.refresh_from_db()
    assert (second.status, second.messages_copied) == (JobStatus.FINISHED, count)
    figures = reports.copy_figures(second)
    assert (figures.copied, figures.present, figures.copied_bytes) == (0, count, 0)
    assert figures.present_bytes == second.bytes_copied > 0
    text, _html = report(second)
    assert "Every message was already in this mailbox: nothing needed to be copied." in text
    assert "Copied: 0 messages (0 bytes)" in text
    assert f"Already in this mailbox, not copied again: {count} messages (" in text
