"""Passwords are encrypted at rest, rotate with the keys, and never show."""

import logging
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from apps.mailboxes.crypto import CredentialDecryptionError
from apps.mailboxes.models import MailAccount

PASSWORD = "Tr0ub4dor&3-unique-marker"

pytestmark = pytest.mark.django_db


def stored_ciphertext(account: MailAccount) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_ciphertext FROM mailboxes_mailaccount WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


def test_database_holds_only_ciphertext_that_round_trips(make_account):
    account = make_account(password=PASSWORD)
    ciphertext = stored_ciphertext(account)
    assert ciphertext and PASSWORD not in ciphertext
    assert MailAccount.objects.get(pk=account.pk).decrypt_password() == PASSWORD


def test_same_password_encrypts_differently_each_time(make_account):
    first = make_account("a@example.org", password=PASSWORD)
    second = make_account("b@example.org", password=PASSWORD)
    assert stored_ciphertext(first) != stored_ciphertext(second)


def test_key_rotation_reencrypts_and_old_key_still_decrypts_until_then(make_account, settings):
    old_key = settings.CREDENTIAL_KEYS[0]
    account = make_account(password=PASSWORD)
    before = stored_ciphertext(account)

    new_key = Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [new_key, old_key]
    assert MailAccount.objects.get(pk=account.pk).decrypt_password() == PASSWORD

    out = StringIO()
    call_command("rotate_credential_keys", stdout=out)
    assert "Re-encrypted 1 stored secret" in out.getvalue()
    after = stored_ciphertext(account)
    assert after != before

    settings.CREDENTIAL_KEYS = [new_key]
    assert MailAccount.objects.get(pk=account.pk).decrypt_password() == PASSWORD
    settings.CREDENTIAL_KEYS = [old_key]
    with pytest.raises(CredentialDecryptionError):
        MailAccount.objects.get(pk=account.pk).decrypt_password()


def test_password_is_absent_from_repr_and_str(make_account):
    account = make_account(password=PASSWORD)
    assert PASSWORD not in repr(account)
    assert PASSWORD not in str(account)
    assert stored_ciphertext(account) not in repr(account)


def test_password_is_absent_from_admin_pages(make_account, admin_client):
    from apps.sync.services import job_create

    source = make_account("source@example.org", password=PASSWORD)
    destination = make_account("dest@example.org", password=PASSWORD + "-dest")
    job = job_create(source=source, destination=destination)
    ciphertext = stored_ciphertext(source)
    pages = [
        "/admin/mailboxes/mailaccount/",
        f"/admin/mailboxes/mailaccount/{source.pk}/change/",
        "/admin/sync/syncjob/",
        f"/admin/sync/syncjob/{job.pk}/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert "source@example.org" in body, f"{page} shows the account whose password it must hide"
        assert PASSWORD not in body, page
        assert ciphertext not in body, page


def test_creating_and_reading_accounts_logs_no_password(make_account, caplog):
    with caplog.at_level(logging.DEBUG):
        account = make_account(password=PASSWORD)
        MailAccount.objects.get(pk=account.pk).decrypt_password()
    assert PASSWORD not in caplog.text
