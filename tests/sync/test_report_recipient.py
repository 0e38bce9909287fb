"""The report goes only to an address proven to belong to the destination mailbox (issue 12,
finding 2): the destination login on a provider's own server, or an address whose owner clicked
the confirmation link. Against real Dovecot servers, a real worker and the portal's pages."""

from __future__ import annotations

import email
from email import policy

import imapclient
import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from apps.providers.models import Provider
from apps.sync import reports, services
from apps.sync.links import status_url
from apps.sync.models import JobEvent, JobStatus, ReportProof, SyncJob
from tests.selfservice.conftest import account_form, seed_mailbox
from tests.support.report_address import confirmation_path

VICTIM = "victim@example.net"
LURE = "CLICK http://evil.example"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def accounts(imap_trust):
    """A seeded source user and an empty destination user, on the two Dovecot servers."""
    source_server, destination_server, _bundle = imap_trust
    source = source_server.new_user()
    seed_mailbox(source_server, source)
    return (source_server, source), (destination_server, destination_server.new_user())


def file_emails(directory) -> list:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(directory.iterdir())]


@pytest.fixture
def worker_mail(monkeypatch, tmp_path):
    """The worker is another process: its emails go to files in this directory."""
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    return tmp_path


def seed_lure(server, user) -> None:
    """A message whose subject is a lure, too large for the copy (IMAPCOPY_MAX_MESSAGE_BYTES)."""
    client = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    client.login(user.login, user.password)
    body = f"From: spammer@example.org\r\nSubject: {LURE}\r\n\r\n" + "x" * 5000 + "\r\n"
    client.append("INBOX", body.encode())
    client.logout()


@pytest.mark.django_db(transaction=True)
def test_a_typed_address_on_a_typed_server_gets_no_report_until_its_owner_confirms(
    client, accounts, run_worker, worker_mail
):
    (source_server, source), (destination_server, destination) = accounts
    client.post("/", account_form(source_server, source))
    # The attacker's destination: a server they chose accepts their login; they type the victim's address.
    client.post("/destination/", account_form(destination_server, destination, email_address=VICTIM))
    page = client.get("/synchronize/").content.decode()
    assert f"A report is emailed to {VICTIM} at the end of the copy, once you confirm this address" in page
    mail.outbox.clear()
    status_page = client.post("/synchronize/", follow=True).content.decode()
    job = SyncJob.objects.get()
    assert (job.report_address, job.report_address_proof, job.report_address_proven) == (
        VICTIM,
        ReportProof.LINK,
        False,
    )
    assert f"The report will be emailed to {VICTIM} only once you confirm this address" in status_page

    # The victim gets one email: fixed text, the address and the link, nothing the attacker typed.
    (confirmation,) = mail.outbox
    assert confirmation.to == [VICTIM]
    html = confirmation.alternatives[0][0]
    for typed in (source.login, destination.login, "example.org", "localhost"):
        assert typed not in confirmation.subject + confirmation.body + html
    assert "If it was not you, ignore this message: nothing will be sent to this address." in confirmation.body

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert file_emails(worker_mail) == [], "no report to an address nobody confirmed"
    assert JobEvent.objects.filter(job=job, kind="report_waiting_confirmation").count() == 1
    assert job.report_sent_at is None

    # A mail scanner follows the link: a GET changes nothing.
    link = confirmation_path(confirmation)
    mail.outbox.clear()
    scanner = Client().get(link)
    assert scanner.status_code == 200 and "Confirm this address" in scanner.content.decode()
    job.refresh_from_db()
    assert not job.report_address_proven and mail.outbox == []

    # Its owner clicks the button: the copy has ended, so the report goes out now, once.
    owner = Client()
    answer = owner.post(link).content.decode()
    assert f"Thank you: {VICTIM} is confirmed. The report of the copy was sent to it." in answer
    (report,) = mail.outbox
    assert report.to == [VICTIM] and report.subject == "Your mailbox copy is finished"
    owner.post(link)
    Client().post(link)
    assert len(mail.outbox) == 1, "exactly one report"
    job.refresh_from_db()
    assert job.report_address_proof == ReportProof.LINK and job.report_address_confirmed_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_preset_providers_login_receives_the_report_whatever_address_was_typed(
    client, accounts, run_worker, worker_mail, monkeypatch
):
    (source_server, source), (destination_server, destination) = accounts
    seed_lure(source_server, source)
    monkeypatch.setenv("IMAPCOPY_MAX_MESSAGE_BYTES", "2000")  # for the worker: the lure is not copied
    preset = Provider.objects.create(
        name="Preset Mail", slug="preset-mail", role=Provider.Role.BOTH, imap_host="localhost",
        imap_port=destination_server.tls_port, security="tls", login_format=Provider.LoginFormat.LOCAL_PART,
        email_domain="preset.example", host_editable=False,
    )  # fmt: skip
    proven = f"{destination.login}@preset.example"
    client.post("/", account_form(source_server, source))
    client.post(
        "/destination/", account_form(destination_server, destination, provider=preset.pk, email_address=VICTIM)
    )
    assert f"A report is emailed to {proven} at the end of the copy." in client.get("/synchronize/").content.decode()
    mail.outbox.clear()
    client.post("/synchronize/")
    job = SyncJob.objects.get()
    assert (job.report_address, job.report_address_proof, job.report_address_proven) == (
        proven,
        ReportProof.LOGIN,
        True,
    )
    assert mail.outbox == [], "a proven address needs no confirmation"

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert (job.status, job.messages_skipped) == (JobStatus.FINISHED, 1)
    (report,) = file_emails(worker_mail)
    assert report["To"] == proven
    text = report.get_body(("plain",)).get_content()
    html = report.get_body(("html",)).get_content()
    # A subject a stranger wrote never reaches the report email: the folder and a count do.
    assert "evil.example" not in text + html and "CLICK" not in text + html
    assert "1 message was not copied:" in text and "- “INBOX”: 1 message" in text
    # The private status page (its link is in the report) lists it, escaped.
    assert LURE in Client().get(status_url(job)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "provider_values, host, login, proven",
    [
        # The customer's own server: their login proves nothing, address or not.
        ({"slug": "other"}, "mail.attacker.example", "boss@bigcorp.example", ""),
        # A provider's fixed server: the login is the address ...
        ({"imap_host": "imap.preset.example"}, "imap.preset.example", "Alice@Preset.example", "alice@preset.example"),
        # ... or its part before "@" on the provider's domain.
        (
            {"imap_host": "imap.preset.example", "login_format": "local_part", "email_domain": "preset.example"},
            "imap.preset.example",
            "alice",
            "alice@preset.example",
        ),
        # A provider whose server the customer may change: only its own server proves the login.
        ({"imap_host": "ex.preset.example", "host_editable": True}, "ex.preset.example.", "a@b.example", "a@b.example"),
        ({"imap_host": "ex.preset.example", "host_editable": True}, "mail.attacker.example", "a@b.example", ""),
        # A login that is no address proves no address.
        ({"imap_host": "imap.preset.example"}, "imap.preset.example", "alice", ""),
    ],
)
def test_which_logins_prove_the_report_address(make_account, provider_values, host, login, proven):
    if provider_values.get("slug") == "other":
        provider = Provider.objects.get(slug="other")
    else:
        provider = Provider.objects.create(name="Preset", slug="preset", **provider_values)
    account = make_account(VICTIM, provider=provider, login=login, host=host)
    assert reports.login_address(account) == proven
    assert reports.report_recipient(account) == ((proven, True) if proven else (VICTIM, False))


@pytest.mark.django_db
def test_confirmation_emails_are_limited_per_address(make_account):
    job = services.job_create(source=make_account("alice@example.org"), destination=make_account(VICTIM))
    browser = Client()
    mail.outbox.clear()
    answers = [
        browser.post(status_url(job).rstrip("/") + "/confirmation/", follow=True).content.decode() for _ in range(5)
    ]
    assert [message.to for message in mail.outbox] == [[VICTIM]] * 3
    assert "We could not send the confirmation link now." in answers[-1]


@pytest.mark.django_db
def test_confirmation_emails_are_limited_per_client(make_account):
    browser = Client(REMOTE_ADDR="203.0.113.5")
    mail.outbox.clear()
    for number in range(12):
        job = services.job_create(
            source=make_account(f"user{number}@example.org"), destination=make_account(f"user{number}@example.net")
        )
        browser.post(status_url(job).rstrip("/") + "/confirmation/")
    assert len(mail.outbox) == 10
    assert len({message.to[0] for message in mail.outbox}) == 10


@pytest.mark.django_db
def test_a_confirmation_link_for_another_address_or_an_expired_one_confirms_nothing(make_account, settings):
    from django.core import signing

    from apps.sync.links import report_confirmation_url

    job = services.job_create(source=make_account("alice@example.org"), destination=make_account(VICTIM))
    link = report_confirmation_url(job)
    SyncJob.objects.filter(pk=job.pk).update(report_address="other@example.net")
    assert Client().post(link).status_code == 404
    forged = link.replace(link.split("/")[-2], signing.dumps({"job": str(job.public_id), "address": VICTIM}))
    assert Client().post(forged).status_code == 404, "signed with another salt"
    SyncJob.objects.filter(pk=job.pk).update(report_address=VICTIM)
    settings.IMAPCOPY_REPORT_CONFIRMATION_DAYS = 0  # every link has expired
    assert Client().post(link).status_code == 410
    job.refresh_from_db()
    assert job.report_address_confirmed_at is None


@pytest.mark.django_db
def test_the_admin_job_page_shows_the_report_address_and_how_it_is_proven(admin_client, make_account):
    job = services.job_create(source=make_account("alice@example.org"), destination=make_account(VICTIM))
    body = admin_client.get(f"/admin/sync/syncjob/{job.pk}/change/").content.decode()
    assert f"{VICTIM} — not confirmed yet (no confirmation link sent): no report is sent to it" in body
    services.job_confirm_report_address(job=job, address=VICTIM)
    body = admin_client.get(f"/admin/sync/syncjob/{job.pk}/change/").content.decode()
    assert f"{VICTIM} — confirmed by its owner on" in body


@pytest.mark.django_db
def test_staff_cannot_resend_a_report_to_an_unconfirmed_address(admin_client, make_account):
    job = services.job_create(source=make_account("alice@example.org"), destination=make_account(VICTIM))
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, run=run, status=JobStatus.FINISHED, counters=None)
    mail.outbox.clear()
    response = admin_client.post(
        "/admin/sync/syncjob/", {"action": "resend_reports", "_selected_action": [job.pk]}, follow=True
    )
    assert "its owner has not confirmed the report address yet." in response.content.decode()
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_jobs_the_address_todays_rule_gives():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    # Accounts as they were then too (later migrations of mailboxes add columns).
    before = [("sync", "0007_job_source_mailbox"), ("mailboxes", "0002_connection_test_findings")]
    after = [("sync", "0008_job_report_address"), ("mailboxes", "0002_connection_test_findings")]
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        apps = executor.loader.project_state(before).apps
        Provider, MailAccount = apps.get_model("providers", "Provider"), apps.get_model("mailboxes", "MailAccount")
        SyncJob = apps.get_model("sync", "SyncJob")
        other = Provider.objects.get(slug="other")
        free = Provider.objects.get(slug="free")  # imap.free.fr, login without "@free.fr"

        def job(provider, address, login, host, source):
            account = {"port": 993, "security": "tls", "provider": provider}
            origin = MailAccount.objects.create(email_address=source, login=source, host="imap.example.org", **account)
            return SyncJob.objects.create(
                source=origin,
                destination=MailAccount.objects.create(email_address=address, login=login, host=host, **account),
                source_address=source, source_mailbox=f"{source}@imap.example.org", status="finished",
            )  # fmt: skip

        typed = job(other, VICTIM, "boss@bigcorp.example", "mail.attacker.example", "a@example.org")
        preset = job(free, VICTIM, "alice", "imap.free.fr", "b@example.org")
        erased = job(other, "erased@invalid", "", "", "c@example.org")

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        apps = executor.loader.project_state(after).apps
        SyncJob = apps.get_model("sync", "SyncJob")
        rows = {row.pk: row for row in SyncJob.objects.all()}
        assert (rows[typed.pk].report_address, rows[typed.pk].report_address_proof) == (VICTIM, "link")
        assert rows[typed.pk].report_address_confirmed_at is None
        assert (rows[preset.pk].report_address, rows[preset.pk].report_address_proof) == ("alice@free.fr", "login")
        assert rows[preset.pk].report_address_confirmed_at is not None
        assert rows[erased.pk].report_address == ""
    finally:  # the next tests need today's schema
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
