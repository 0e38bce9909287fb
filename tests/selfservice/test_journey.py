"""The customer's journey through the portal, against real Dovecot servers and a real worker."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from apps.mailboxes.models import MailAccount
from apps.sync.models import JobStatus, SyncJob
from tests.selfservice.conftest import account_form
from tests.support.report_address import confirm_by_link

pytestmark = pytest.mark.django_db(transaction=True)


def validate(client, role, server, user, **overrides):
    url = reverse("selfservice:source" if role == "source" else "selfservice:destination")
    return client.post(url, account_form(server, user, **overrides), follow=True)


def test_valid_source_account_shows_what_was_found(client, source_user):
    server, user = source_user
    response = validate(client, "source", server, user)
    body = response.content.decode()
    assert "The connection to your account was established." in body
    assert response.context["account"].found_messages == 5
    assert user.password not in body
    assert user.password not in str(dict(client.session))


def test_wrong_password_says_so_and_keeps_no_account(client, source_user):
    server, user = source_user
    response = validate(client, "source", server, user, password="wrong-password")
    body = response.content.decode()
    assert "The server refused the login or the password." in body
    assert "wrong-password" not in body  # a password field is never rendered with its value
    assert not MailAccount.objects.exists()


def test_connection_refused_is_explained(client, source_user):
    server, user = source_user
    response = validate(client, "source", server, user, port="1")
    body = response.content.decode()
    assert "No IMAP server answered at this address and port." in body
    # It names the control the form shows ("Connection security"), not a checkbox that is gone.
    assert "Check the IMAP server, the port and the connection security." in body


def test_plain_port_with_ssl_is_a_tls_error(client, source_user):
    server, user = source_user
    response = validate(client, "source", server, user, port=str(server.port))
    assert "The secure connection failed" in response.content.decode()


def test_private_address_is_refused_unless_allowed(client, source_user, settings):
    settings.IMAPCOPY_ALLOWED_PRIVATE_NETWORKS = []
    server, user = source_user
    response = validate(client, "source", server, user)
    assert "This server address is not allowed." in response.content.decode()
    assert not MailAccount.objects.exists()


def test_destination_step_needs_a_verified_source(client):
    response = client.get(reverse("selfservice:destination"))
    assert response.status_code == 302
    assert response.url == reverse("selfservice:source")


def sent_emails(directory):
    import email
    from email import policy

    return [email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(directory.iterdir())]


def test_french_journey_copies_the_mailbox_and_emails_the_report(
    client, source_user, destination_user, run_worker, monkeypatch, tmp_path
):
    # The worker is another process: it writes its email to files the test reads back.
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    (source_server, source), (destination_server, destination) = source_user, destination_user
    client.post("/fr/", account_form(source_server, source))
    client.post("/fr/destination/", account_form(destination_server, destination))
    page = client.get("/fr/synchronize/")
    assert page.status_code == 200
    ready = page.content.decode()
    assert '<button type="submit" class="primary big">Synchroniser</button>' in ready
    assert f"{source.login}@example.org" in ready and f"{destination.login}@example.org" in ready
    response = client.post("/fr/synchronize/", follow=True)
    job = SyncJob.objects.get()
    assert job.language == "fr"
    assert job.status == JobStatus.QUEUED
    # The address was typed (the server too): the report goes there once its owner confirms it.
    confirm_by_link(client, mail.outbox)

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert job.messages_copied == 5
    assert source.password not in worker.stdout + worker.stderr

    progress = client.get(response.redirect_chain[-1][0] + "progress/").json()
    assert (progress["status"], progress["percent"], progress["messages_copied"]) == ("finished", 100, 5)

    job.source.refresh_from_db()
    assert not job.source.has_password, "credentials are erased when the copy finishes"

    (report,) = sent_emails(tmp_path)
    assert report["To"] == f"{destination.login}@example.org"
    assert report["Subject"] == "Votre copie de boîte mail est terminée"
    text = report.get_body(("plain",)).get_content()
    assert re.search(r"Copiés : 5 messages \([\d,]+\s(octets|ko)\)", text), text
    assert source.password not in report.as_string()


def test_second_synchronize_for_the_same_source_is_refused(client, source_user, destination_user):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    client.post("/", account_form(source_server, source))
    client.post("/destination/", account_form(destination_server, destination))
    client.post("/synchronize/")
    other_browser = client.__class__()
    other_browser.post("/", account_form(source_server, source))
    other_browser.post("/destination/", account_form(destination_server, destination))
    response = other_browser.post("/synchronize/", follow=True)
    assert "A synchronization job already exists for this account." in response.content.decode()
    assert SyncJob.objects.count() == 1


def test_status_lookup_shows_state_but_no_account_details(client, source_user, destination_user):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    client.post("/", account_form(source_server, source))
    client.post("/destination/", account_form(destination_server, destination))
    client.post("/synchronize/")
    response = client.post("/status/", {"address": f"{source.login.upper()}@example.org"})
    body = response.content.decode()
    assert "Not started yet" in body
    assert destination.login not in body
    assert "localhost" not in body
    missing = client.post("/status/", {"address": "nobody@example.org"})
    assert "There is no synchronization for this address." in missing.content.decode()


def test_connection_tests_are_rate_limited_per_account(client, source_user):
    server, user = source_user
    # A refused port fails at once (a wrong password makes Dovecot wait seconds per try).
    statuses = [validate(client, "source", server, user, port="1").status_code for _ in range(8)]
    assert statuses[:6] == [200] * 6
    assert statuses[-1] == 429


def test_a_planted_session_id_does_not_give_the_attacker_the_verified_account(client, source_user, settings):
    """Session fixation: an attacker who planted a session id in the victim's browser must not
    find the victim's verified source account behind it."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import Client

    planted = SessionStore()
    planted["planted"] = True
    planted.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    server, user = source_user
    assert (
        "The connection to your account was established." in validate(client, "source", server, user).content.decode()
    )
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted.session_key

    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    response = attacker.get(reverse("selfservice:destination"))
    assert user.login not in response.content.decode()
    assert response.status_code == 302  # sent back to the source step: no verified source here


def test_the_source_mailbox_cannot_be_its_own_destination(client, source_user):
    server, user = source_user
    validate(client, "source", server, user)
    response = validate(client, "destination", server, user)
    assert "This is the source mailbox itself" in response.content.decode()
    assert MailAccount.objects.count() == 1  # the source only: nothing kept of the refused one
