"""A real job into Cyrus: what Cyrus refuses and what it rewrites reach the customer's status page
message by message, and the report email as counts, from the events the engine really emits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core import mail as django_mail
from django.utils import translation

from apps.localmail import mail
from apps.sync import jobs, losses, services
from apps.sync.models import JobStatus, SyncJob
from tests.support.report_address import confirmed_report_address

pytestmark = pytest.mark.django_db

BROKEN = (
    b"From: a@example.com\r\nSubject: Broken header\r\nThis line has no colon\r\nMessage-ID: <broken@x>\r\n\r\nbody\r\n"
)


def test_cyrus_refusals_and_rewrites_are_listed_in_the_report(imap_servers, cyrus_server, make_account):
    source_server = imap_servers[0]
    source_user, destination_user = source_server.new_user(), cyrus_server.new_user()
    source = mail.Account("127.0.0.1", source_server.port, source_user.login, source_user.password, "INBOX.", ".")
    mails = mail.build_corpus(seed=71, messages=12, folders=[("INBOX",), ("Work",)], duplicate_every=0)
    refused = mail.Mail(("INBOX",), BROKEN, ("\\Seen",), datetime(2021, 1, 2, tzinfo=UTC))
    mail.upload(source, [*mails, refused])
    rewritten = [m for m in mails if any(b > 127 for b in m.body.split(b"\r\n\r\n", 1)[0])]
    assert rewritten

    def account(user, server, address):
        return make_account(address, login=user.login, password=user.password, host="127.0.0.1",
                            port=server.port, security="none")  # fmt: skip

    job = services.job_create(
        source=account(source_user, source_server, "alice@example.org"),
        destination=account(destination_user, cyrus_server, "alice@example.net"),
        language="fr",
    )
    confirmed_report_address(job)
    django_mail.outbox.clear()
    jobs.run_copy_job(job.pk)

    job = SyncJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.FINISHED
    (report,) = django_mail.outbox
    text = report.body
    assert "1 message n’a pas été copié :" in text
    assert f"{len(rewritten)} messages ont été copiés mais modifiés par la destination" in text
    # The email names no subject and no server answer; the private status page lists them.
    assert "Broken header" not in text and "invalid header" not in text
    with translation.override("fr"):
        listed = [line for section in losses.job_losses(job) for line in section.lines]
    assert any("« Broken header »" in line and "Message contains invalid header" in line for line in listed)
    assert sum("la destination a réécrit certains de ses en-têtes" in line for line in listed) == len(rewritten)
