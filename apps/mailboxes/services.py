from __future__ import annotations

import datetime
import logging

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.crypto import reencrypt_secret
from apps.mailboxes.models import MailAccount
from apps.providers.models import Provider, Security

logger = logging.getLogger("imapcopy.checks")

# How long a connection test may wait on the checks queue before RQ drops it; the page waits this
# long plus the test's own deadline before it gives up on an answer.
CHECK_QUEUE_WAIT_SECONDS = 30


class TooManyChecks(Exception):
    """The client already has as many connection tests in flight as it may."""


class ChecksBusy(Exception):
    """The checks queue is full (or unreachable): the test would not run in time."""


def client_key(client_address: str) -> str:
    """A keyed hash of a client's address: lets us count a client's tests and copies without
    keeping its address."""
    return salted_hmac("imapcopy.client", client_address).hexdigest()[:32]


def check_answer_deadline(account: MailAccount) -> datetime.datetime:
    return account.check_requested_at + datetime.timedelta(
        seconds=CHECK_QUEUE_WAIT_SECONDS + settings.CONNECTION_TEST_SECONDS + 5
    )


@sensitive_variables()
def account_create(
    *,
    provider: Provider,
    email_address: str,
    login: str,
    host: str,
    port: int,
    security: Security | str,
    password: str,
    created_from: str = "",
) -> MailAccount:
    account = MailAccount(
        created_from=created_from,
        provider=provider,
        email_address=email_address.strip(),
        login=login.strip(),
        host=host.strip().lower(),
        port=port,
        security=Security(security),
    )
    account.set_password(password)
    # The address's format is the form's business: staff's command line may name accounts
    # whose login is no address (user@127.0.0.1).
    account.full_clean(exclude=["password_ciphertext", "email_address"])
    account.save()
    return account


@sensitive_variables()
def account_set_password(*, account: MailAccount, password: str) -> None:
    account.set_password(password)
    MailAccount.objects.filter(pk=account.pk).update(
        password_ciphertext=account.password_ciphertext, password_erased_at=None
    )


def credentials_reencrypt_all(*, batch_size: int = 500) -> int:
    """Re-encrypt every stored password under the newest key; returns how many changed.

    Run after prepending a new key to CREDENTIAL_KEYS, before removing the old one."""
    changed = 0
    pks = list(MailAccount.objects.exclude(password_ciphertext="").values_list("pk", flat=True))
    for start in range(0, len(pks), batch_size):
        with transaction.atomic():
            for account in MailAccount.objects.select_for_update().filter(pk__in=pks[start : start + batch_size]):
                if not account.password_ciphertext:
                    continue
                new_ciphertext = reencrypt_secret(account.password_ciphertext)
                MailAccount.objects.filter(pk=account.pk).update(password_ciphertext=new_ciphertext)
                changed += 1
    return changed


def checks_in_flight(*, created_from: str) -> int:
    """Connection tests of this client still waiting for an answer."""
    since = timezone.now() - datetime.timedelta(seconds=CHECK_QUEUE_WAIT_SECONDS + settings.CONNECTION_TEST_SECONDS + 5)
    return MailAccount.objects.filter(
        created_from=created_from, check_requested_at__gte=since, verified_at=None, check_error_code=""
    ).count()


def account_request_check(*, account: MailAccount) -> None:
    """Put the account's connection test on the checks queue (after commit).

    Raises TooManyChecks when its client already has its share of tests in flight, ChecksBusy
    when the queue is too long for the test to start in time or Redis does not answer."""
    if account.created_from and checks_in_flight(created_from=account.created_from) >= (
        settings.IMAPCOPY_CONNECTION_TESTS_PER_CLIENT
    ):
        raise TooManyChecks(account.pk)
    queue = django_rq.get_queue(settings.CHECK_QUEUE)
    try:
        waiting = queue.count
    except Exception as exc:  # Redis down: no test can run
        raise ChecksBusy(account.pk) from exc
    if waiting >= settings.IMAPCOPY_CONNECTION_TEST_QUEUE_LIMIT:
        raise ChecksBusy(account.pk)
    MailAccount.objects.filter(pk=account.pk).update(check_requested_at=timezone.now(), check_error_code="")
    account.refresh_from_db()
    account_id = account.pk

    def enqueue() -> None:
        try:
            queue.enqueue(
                "apps.mailboxes.jobs.run_connection_test",
                account_id,
                job_timeout=settings.CONNECTION_TEST_SECONDS + 15,
                ttl=CHECK_QUEUE_WAIT_SECONDS,  # a test that could not start in time is dropped
                result_ttl=60,
                failure_ttl=3600,
            )
        except Exception:
            logger.exception("could not enqueue the connection test of account %s", account_id)
            account_record_check_failure(account_id=account_id, error_code="checks_busy")

    transaction.on_commit(enqueue)


def account_record_check_success(*, account_id: int, folders: int, messages: int, size: int) -> None:
    MailAccount.objects.filter(pk=account_id, verified_at=None).update(
        verified_at=timezone.now(), check_error_code="", found_folders=folders, found_messages=messages,
        found_bytes=size,
    )  # fmt: skip


def account_record_check_failure(*, account_id: int, error_code: str) -> None:
    """A failed test keeps nothing worth a password: it is erased at once; the row stays until
    the customer's page has shown the error (or the abandoned-account purge takes it)."""
    MailAccount.objects.filter(pk=account_id, verified_at=None).update(
        check_error_code=error_code[:40], password_ciphertext="", password_erased_at=timezone.now()
    )
