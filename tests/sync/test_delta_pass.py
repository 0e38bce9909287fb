"""Copy new mail again (issue 14, item 7): a customer who moves providers copies once, changes
their domain's settings, then copies the mail that arrived in between. Against real Dovecot
servers: the rerun copies only what is new, once; kept passwords are erased after the days the
customer chose; without them the page asks for both passwords again and tests each by logging in."""

from __future__ import annotations

import datetime
import re
from collections import Counter

import imapclient
import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from apps.localmail import mail
from apps.mailboxes.models import MailAccount
from apps.sync import jobs, reports, services
from apps.sync.links import status_url
from apps.sync.models import JobStatus, SyncJob
from tests.selfservice.conftest import seed_mailbox
from tests.support.report_address import confirmed_report_address

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def two_accounts(imap_trust, make_account):
    """A source Dovecot account with 5 messages, an empty destination one, and their IMAP views."""
    source_server, destination_server, _bundle = imap_trust
    source_user, destination_user = source_server.new_user(), destination_server.new_user()
    seed_mailbox(source_server, source_user)

    def accounts():
        source = make_account(
            f"{source_user.login}@example.org", login=source_user.login, password=source_user.password,
            host="localhost", port=source_server.tls_port,
        )  # fmt: skip
        destination = make_account(
            f"{destination_user.login}@example.org", login=destination_user.login,
            password=destination_user.password, host="localhost", port=destination_server.tls_port,
        )  # fmt: skip
        return source, destination

    views = (
        mail.Account(source_server.host, source_server.port, source_user.login, source_user.password, "INBOX.", "."),
        mail.Account(destination_server.host, destination_server.port, destination_user.login,
                     destination_user.password),
    )  # fmt: skip
    return accounts, (source_server, source_user), (destination_server, destination_user), views


def every_message(account: mail.Account) -> Counter:
    total = Counter()
    for counter in mail.snapshot(account).values():
        total.update(counter)
    return total


def deliver(server, user, *subjects: str) -> None:
    """New mail arrives in the source's INBOX (the old provider still receives it)."""
    client = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    client.login(user.login, user.password)
    for subject in subjects:
        client.append(
            "INBOX",
            f"From: late@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\n\r\n"
            f"New\r\n".encode(),
        )
    client.logout()


def copy(job: SyncJob) -> SyncJob:
    """Run the queued job as the worker does, in this process."""
    assert jobs.run_copy_job(job.pk) in ("finished", "finished_with_errors")
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    return job


def first_copy(two_accounts, *, keep_days: int) -> SyncJob:
    accounts, _source, _destination, (source_view, destination_view) = two_accounts
    source, destination = accounts()
    job = services.job_create(source=source, destination=destination, enqueue=False, keep_credentials_days=keep_days)
    confirmed_report_address(job)
    job = copy(job)
    assert every_message(destination_view) == every_message(source_view)
    assert (job.messages_copied, job.messages_total) == (5, 5)
    return job


def kept_passwords(job: SyncJob) -> int:
    accounts = MailAccount.objects.filter(pk__in=[job.source_id, job.destination_id])
    return accounts.exclude(password_ciphertext="").count()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("\xa0", " ")


# --- With the passwords kept --------------------------------------------------------------------


def render_report(job) -> str:
    from django.template.loader import render_to_string

    from apps.sync.reports import report_context

    return render_to_string("sync/email/report.txt", report_context(job))


def test_copy_new_mail_again_copies_the_two_new_messages_once_and_says_so(two_accounts):
    job = first_copy(two_accounts, keep_days=7)
    assert job.source.has_password and job.destination.has_password, "kept, as the customer asked"
    _accounts, (source_server, source_user), _destination, (source_view, destination_view) = two_accounts
    deliver(source_server, source_user, "arrived-after-1", "arrived-after-2")

    job = services.job_copy_new_mail(job=job)
    assert job.status == JobStatus.QUEUED and job.started_at is None
    job = copy(job)

    destination = every_message(destination_view)
    assert destination == every_message(source_view), "the 2 new messages arrived, nothing is missing"
    assert max(destination.values()) == 1, "nothing was copied twice"
    assert sum(destination.values()) == 7
    figures = reports.job_new_mail_figures(job)
    assert (figures.copied, figures.present) == (2, 5)
    assert figures.copied_bytes > 0
    text = text_of(Client().get(status_url(job)).content.decode())
    assert "New mail copied this time: 2 messages" in text
    assert "Already in the destination mailbox, not copied again: 5 messages." in text
    report = render_report(job)
    assert "New mail copied this time: 2 messages" in report, "the report says what this pass found"
    assert job.source.has_password, "still kept until the days chosen have passed"

    # Once more, with nothing new: said so.
    job = copy(services.job_copy_new_mail(job=job))
    assert sum(every_message(destination_view).values()) == 7
    assert reports.job_new_mail_figures(job).copied == 0
    text = text_of(Client().get(status_url(job)).content.decode())
    assert "No new mail since the previous copy" in text


def test_copy_new_mail_again_from_the_page_queues_the_same_job(two_accounts):
    job = first_copy(two_accounts, keep_days=7)
    client = Client()
    html = client.get(status_url(job)).content.decode()
    assert "Copy new mail again" in text_of(html)
    assert 'name="source_password"' not in html, "the passwords are kept: a button, no form"
    response = client.post(status_url(job) + "new-mail/")
    assert response.status_code == 302 and response.url == status_url(job)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert SyncJob.objects.count() == 1, "the same job, with its checkpoints"
    html = client.get(status_url(job)).content.decode()
    assert "state-queued" in html and "Copy new mail again" not in html


def test_another_copy_of_the_same_source_blocks_copy_new_mail_with_a_clear_message(two_accounts, make_account):
    job = first_copy(two_accounts, keep_days=7)
    other = services.job_create(
        source=MailAccount.objects.get(pk=job.source_id), destination=make_account("elsewhere@example.net"),
        enqueue=False,
    )  # fmt: skip
    assert other.status == JobStatus.QUEUED
    response = Client().post(status_url(job) + "new-mail/", follow=True)
    assert "Another copy of this source mailbox is under way." in text_of(response.content.decode())
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    with pytest.raises(services.JobAlreadyActive):
        services.job_copy_new_mail(job=job)


def test_kept_passwords_are_erased_by_the_purge_after_the_days_chosen(two_accounts, settings):
    settings.IMAPCOPY_DELTA_KEEP_DAYS = 7
    job = first_copy(two_accounts, keep_days=7)

    def days_later(days: float) -> None:
        """Move the job and its accounts `days` into the past, as if that time had gone by."""
        delta = datetime.timedelta(days=days)
        SyncJob.objects.filter(pk=job.pk).update(
            created_at=job.created_at - delta, finished_at=job.finished_at - delta,
            credentials_keep_until=job.credentials_keep_until - delta,
        )  # fmt: skip
        for account in (job.source, job.destination):
            MailAccount.objects.filter(pk=account.pk).update(created_at=account.created_at - delta)

    days_later(6.9)
    call_command("purge_credentials")
    assert kept_passwords(job) == 2, "kept as long as the customer asked"

    days_later(7.1)
    call_command("purge_credentials")
    assert kept_passwords(job) == 0
    html = Client().get(status_url(job)).content.decode()
    assert 'name="source_password"' in html and 'name="destination_password"' in html


def test_staff_erasing_the_passwords_erases_kept_ones_at_once(two_accounts):
    job = first_copy(two_accounts, keep_days=7)
    services.job_erase_credentials(job=job)
    job.refresh_from_db()
    assert job.credentials_keep_until is None
    assert kept_passwords(job) == 0
    with pytest.raises(services.CredentialsErased):
        services.job_copy_new_mail(job=job)


# --- Without the tick: the passwords are asked again --------------------------------------------


def test_without_the_tick_the_passwords_are_asked_again_and_a_wrong_one_is_refused_beside_its_field(
    two_accounts, django_capture_on_commit_callbacks
):
    job = first_copy(two_accounts, keep_days=0)
    assert job.credentials_keep_until is None
    assert not job.source.has_password and not job.destination.has_password, "erased at the end, as before"
    _accounts, (source_server, source_user), (_destination_server, destination_user), views = two_accounts
    deliver(source_server, source_user, "late-1", "late-2")

    client = Client()
    html = client.get(status_url(job)).content.decode()
    assert 'name="source_password"' in html and 'name="destination_password"' in html
    # The logins are the job's, shown read-only.
    source_login = re.search(r"<input[^>]*name=\"source_login\"[^>]*>", html).group(0)
    assert f'value="{source_user.login}"' in source_login and "disabled" in source_login

    # A wrong source password: refused by a real login, beside its field; the right destination one is kept.
    with django_capture_on_commit_callbacks(execute=True):  # the checks queue runs the test inline
        response = client.post(
            status_url(job) + "new-mail/",
            {"source_password": "not-the-password", "destination_password": destination_user.password,
             "source_login": "someone-else"},
        )  # fmt: skip
    assert response.status_code == 302
    html = client.get(status_url(job)).content.decode()
    field = re.search(r'id="field-source_password".*?</div>', html, re.S).group(0)
    assert "The server refused this login or password." in text_of(field)
    assert 'name="destination_password"' not in html, "the destination's password worked: not asked again"
    assert "Destination account: the connection works." in text_of(html)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED and job.source.login == source_user.login
    assert not MailAccount.objects.get(pk=job.source_id).has_password, "a refused password is not kept"

    # The right one: tested, then the copy is queued; it copies the 2 new messages once.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(status_url(job) + "new-mail/", {"source_password": source_user.password})
    response = client.get(status_url(job))
    assert response.status_code == 302 and response.url == status_url(job)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    job = copy(job)
    source_view, destination_view = views
    assert every_message(destination_view) == every_message(source_view)
    assert max(every_message(destination_view).values()) == 1
    assert reports.job_new_mail_figures(job).copied == 2
    assert kept_passwords(job) == 0, "typed again for one copy: erased at its end"


def test_the_lookup_by_address_shows_nothing_of_copy_new_mail(two_accounts):
    job = first_copy(two_accounts, keep_days=7)
    html = Client().post("/status/", {"address": job.source_address, "show": ""}).content.decode()
    assert "Finished" in text_of(html)
    assert "new-mail" not in html and "Copy new mail again" not in html and 'type="password"' not in html
