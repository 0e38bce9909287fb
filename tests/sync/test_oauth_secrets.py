"""An OAuth2 account's tokens are a secret like a password: rotated with the credential keys, and
the tokens a run renews are the ones kept (the provider retires the old refresh token)."""

from __future__ import annotations

import os
import time
import urllib.error
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from apps.mailboxes import oauth
from apps.mailboxes.crypto import CredentialDecryptionError
from apps.mailboxes.models import MailAccount
from apps.mailboxes.oauth_tokens import OAuthTokens, tokens_from_secret
from apps.mailboxes.services import account_create_oauth
from apps.sync import engine, runner
from apps.sync import services as sync_services
from tests.selfservice.conftest import seed_mailbox

# The tests' authorization server speaks plain HTTP on loopback; Authlib refuses that unless told.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(oauth_portal, provider, mailbox, expires_in: int | None = None) -> tuple[MailAccount, OAuthTokens]:
    """The account a finished "Sign in with …" leaves, and the tokens it was given."""
    answer = oauth_portal.server.issue_tokens(mailbox.address, oauth_portal.client, expires_in=expires_in)
    tokens = OAuthTokens.from_response(answer)
    return account_create_oauth(provider=provider, address=mailbox.address, tokens=tokens), tokens


def stored_tokens(account: MailAccount) -> OAuthTokens:
    return tokens_from_secret(MailAccount.objects.get(pk=account.pk).decrypt_password())


def test_rotating_the_credential_keys_keeps_oauth_tokens_usable(oauth_portal, oauth_mailbox, oauth_dovecot, settings):
    mailbox = oauth_mailbox("rotated")
    seed_mailbox(oauth_dovecot, mailbox.user, separator="/")
    # Expired already: the keeper built after the rotation must renew with the stored refresh token.
    account, tokens = signed_in(oauth_portal, oauth_portal.google, mailbox, expires_in=1)
    old_key, new_key = settings.CREDENTIAL_KEYS[0], Fernet.generate_key().decode()
    before = MailAccount.objects.get(pk=account.pk).password_ciphertext

    settings.CREDENTIAL_KEYS = [new_key, old_key]
    output = StringIO()
    call_command("rotate_credential_keys", stdout=output)
    assert "Re-encrypted 1 " in output.getvalue()
    settings.CREDENTIAL_KEYS = [new_key]

    account.refresh_from_db()
    assert account.password_ciphertext != before
    assert stored_tokens(account) == tokens
    settings.CREDENTIAL_KEYS = [old_key]
    with pytest.raises(CredentialDecryptionError):
        stored_tokens(account)
    settings.CREDENTIAL_KEYS = [new_key]

    time.sleep(1.2)
    keeper = oauth.token_keeper(service="google", secret=account.decrypt_password(), side="source")
    endpoint = engine.Endpoint(
        host="127.0.0.1", port=oauth_dovecot.port, security=engine.Security.NONE, login=mailbox.address,
        password="", oauth_token=keeper, timeout=20.0,
    )  # fmt: skip
    summary = engine.probe_account(endpoint)
    assert summary.messages == 5
    assert keeper.refreshes == 1, "the stored refresh token renewed the access"


def test_a_run_that_renews_the_access_keeps_the_new_refresh_token(oauth_portal, oauth_mailbox, oauth_dovecot):
    source_box, destination_box = oauth_mailbox("renewed"), oauth_mailbox("renewed-to")
    seed_mailbox(oauth_dovecot, source_box.user, separator="/")
    source, first = signed_in(oauth_portal, oauth_portal.google, source_box, expires_in=1)
    destination, _ = signed_in(oauth_portal, oauth_portal.microsoft, destination_box)
    job = sync_services.job_create(source=source, destination=destination, enqueue=False)
    run = sync_services.job_claim(job_id=job.pk, worker_name="test")
    time.sleep(1.2)  # the access token expired: the run's first connection renews it

    result = runner.copy_job_mailbox(job, run=run, check_hosts=False)

    assert result.status == "finished", (result.error_code, result.error_detail)
    kept = stored_tokens(source)
    # Compared apart from the assert: a failure must not print the tokens.
    new_refresh_kept = kept.refresh_token != first.refresh_token
    new_access_kept = kept.access_token != first.access_token
    assert new_refresh_kept, "the renewed refresh token was not kept"
    assert new_access_kept, "the renewed access token was not kept"
    assert kept.expires_at > time.time() + 5
    # The server rotates refresh tokens: only the kept one still works.
    with pytest.raises(urllib.error.HTTPError):
        oauth_portal.server.refresh(oauth_portal.client, first.refresh_token)
    assert oauth_portal.server.refresh(oauth_portal.client, kept.refresh_token)["access_token"]
