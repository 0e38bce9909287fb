"""A copy between accounts signed in with Google and Microsoft, run as the worker runs it: the
tokens are renewed and kept, and when the customer withdraws the access the job fails with its
own code, the report and the status page ask them to sign in again, and doing so resumes the
copy from where it stopped, nothing twice."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from django.core import mail as django_mail
from django.urls import reverse

from apps.localmail import mail
from apps.mailboxes.models import MailAccount
from apps.mailboxes.oauth_tokens import OAuthTokens, tokens_from_secret
from apps.mailboxes.services import account_create_oauth
from apps.sync import jobs, services
from apps.sync.links import status_url
from apps.sync.models import JobStatus

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def signed_in_account(portal, provider, mailbox, **token_options) -> MailAccount:
    answer = portal.server.issue_tokens(mailbox.address, portal.client, **token_options)
    account = account_create_oauth(provider=provider, address=mailbox.address, tokens=OAuthTokens.from_response(answer))
    MailAccount.objects.filter(pk=account.pk).update(verified_at=account.created_at)
    return MailAccount.objects.get(pk=account.pk)


def imap(mailbox, server) -> mail.Account:
    return mail.Account("127.0.0.1", server.port, mailbox.user.login, mailbox.user.password, "", "/")


def same_mail(source, destination, server) -> bool:
    return mail.compare(mail.snapshot(imap(source, server)), mail.snapshot(imap(destination, server))) == []


def test_a_job_renews_expired_tokens_and_keeps_the_new_ones(oauth_portal, oauth_mailbox, oauth_dovecot):
    source, destination = oauth_mailbox("src"), oauth_mailbox("dst")
    mails = mail.build_corpus(seed=81, messages=15, folders=[("INBOX",), ("Work",)])
    mail.upload(imap(source, oauth_dovecot), mails)
    # Tokens that expire at once: the run must renew them before its first login.
    source_account = signed_in_account(oauth_portal, oauth_portal.google, source, expires_in=1)
    first_refresh_token = tokens_from_secret(source_account.decrypt_password()).refresh_token
    job = services.job_create(
        source=source_account,
        destination=signed_in_account(oauth_portal, oauth_portal.microsoft, destination),
        keep_credentials_days=7,  # the tokens stay (encrypted) after the copy: we can look at them
    )
    time.sleep(1.5)
    jobs.run_copy_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert (
        mail.compare(mail.snapshot(imap(source, oauth_dovecot)), mail.snapshot(imap(destination, oauth_dovecot))) == []
    )
    kept = tokens_from_secret(MailAccount.objects.get(pk=source_account.pk).decrypt_password())
    # The server rotates refresh tokens: the stored one is the renewed one, the first is dead.
    assert kept.refresh_token != first_refresh_token
    with pytest.raises(OSError):
        oauth_portal.server.refresh(oauth_portal.client, first_refresh_token)


def test_withdrawn_access_fails_the_job_and_signing_in_again_resumes_it(
    oauth_portal, oauth_mailbox, oauth_dovecot, client, settings
):
    source, destination = oauth_mailbox("src"), oauth_mailbox("dst")
    mails = mail.build_corpus(seed=82, messages=20, folders=[("INBOX",), ("Work",)])
    mail.upload(imap(source, oauth_dovecot), mails)
    source_account = signed_in_account(oauth_portal, oauth_portal.google, source, expires_in=1)
    job = services.job_create(
        source=source_account,
        destination=signed_in_account(oauth_portal, oauth_portal.microsoft, destination),
        language="fr",
    )
    oauth_portal.server.revoke_consent(source.address)  # "Remove access" in the Google account
    time.sleep(1.5)
    django_mail.outbox.clear()
    jobs.run_copy_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert (job.error_code, job.error_side) == ("oauth_consent_revoked", "source")
    (report,) = django_mail.outbox
    assert report.to == [destination.address]  # proven by the ID token: no confirmation needed
    assert "Connectez-vous de nouveau" in report.body, report.body  # the French sentence for the code

    page = client.get(status_url(job)).content.decode()
    assert "Sign in again to finish the copy" in page and "Sign in with Google" in page
    token = urlsplit(status_url(job)).path.rstrip("/").rsplit("/", 1)[-1]
    # Signing in to another mailbox does not resume this copy (it would copy another mailbox).
    other = oauth_mailbox("other")
    start = client.post(reverse("selfservice:oauth-resume", kwargs={"token": token}))
    back = urlsplit(oauth_portal.server.consent(start["Location"], other.address, other.password))
    refused = client.get(f"{back.path}?{back.query}", follow=True).content.decode()
    assert other.address in refused and source.address in refused
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED

    start = client.post(reverse("selfservice:oauth-resume", kwargs={"token": token}))
    assert start.status_code == 302 and start["Location"].startswith(oauth_portal.server.authorize_url)
    back = urlsplit(oauth_portal.server.consent(start["Location"], source.address, source.password))
    resumed = client.get(f"{back.path}?{back.query}")
    assert resumed.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED

    jobs.run_copy_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert (
        mail.compare(mail.snapshot(imap(source, oauth_dovecot)), mail.snapshot(imap(destination, oauth_dovecot))) == []
    )


def test_copy_new_mail_again_by_signing_in_again_to_both_accounts(oauth_portal, oauth_mailbox, oauth_dovecot, client):
    from apps.mailboxes.jobs import run_connection_test

    source, destination = oauth_mailbox("src"), oauth_mailbox("dst")
    mail.upload(imap(source, oauth_dovecot), mail.build_corpus(seed=83, messages=8, folders=[("INBOX",)]))
    job = services.job_create(
        source=signed_in_account(oauth_portal, oauth_portal.google, source),
        destination=signed_in_account(oauth_portal, oauth_portal.microsoft, destination),
    )
    jobs.run_copy_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED
    assert not job.source.has_password and not job.destination.has_password  # erased at the end
    arrived = mail.build_corpus(seed=84, messages=3, folders=[("INBOX",)])
    mail.upload(imap(source, oauth_dovecot), arrived)

    token = urlsplit(status_url(job)).path.rstrip("/").rsplit("/", 1)[-1]
    page = client.get(status_url(job)).content.decode()
    # No password to type for accounts that signed in: a button for each instead.
    assert 'name="source_password"' not in page and 'name="destination_password"' not in page
    assert "Sign in with Google" in page and "Sign in with Microsoft" in page
    for side, mailbox in (("source", source), ("destination", destination)):
        start = client.post(reverse("selfservice:oauth-new-mail", kwargs={"token": token, "side": side}))
        back = urlsplit(oauth_portal.server.consent(start["Location"], mailbox.address, mailbox.password))
        assert client.get(f"{back.path}?{back.query}").status_code == 302
    for account_id in (job.source_id, job.destination_id):
        assert run_connection_test(account_id) == "ok"
    client.get(status_url(job))  # both work: the page queues the copy of the new mail
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    jobs.run_copy_job(job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert same_mail(source, destination, oauth_dovecot)
