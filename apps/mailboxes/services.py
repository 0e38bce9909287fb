from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.crypto import encrypt_secret, reencrypt_secret
from apps.mailboxes.models import MailAccount
from apps.mailboxes.oauth_tokens import OAuthTokens, tokens_to_secret
from apps.providers.models import Provider, Security

logger = logging.getLogger("imapcopy.checks")

# What an account's address becomes when its personal data is erased (no mail can reach it).
ERASED_ADDRESS = "erased@invalid"
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
    oauth_service: str = "",
) -> MailAccount:
    """`password` is the account's secret: its password, or with `oauth_service` its token set
    (oauth_tokens.tokens_to_secret)."""
    account = MailAccount(
        created_from=created_from,
        provider=provider,
        email_address=email_address.strip(),
        login=login.strip(),
        host=host.strip().lower(),
        port=port,
        security=Security(security),
        oauth_service=oauth_service,
    )
    account.set_password(password)
    # The address's format is the form's business: staff's command line may name accounts
    # whose login is no address (user@127.0.0.1).
    account.full_clean(exclude=["password_ciphertext", "email_address"])
    account.save()
    return account


@sensitive_variables()
def account_create_oauth(
    *, provider: Provider, address: str, tokens: OAuthTokens, created_from: str = ""
) -> MailAccount:
    """An account signed in with Google or Microsoft: the address is the one the provider's ID
    token names (proven, unlike a typed one), the login is that address, the server the
    provider's preset; the tokens are kept encrypted where a password would be."""
    return account_create(
        provider=provider,
        email_address=address,
        login=address,
        host=provider.imap_host,
        port=provider.imap_port,
        security=provider.security,
        password=tokens_to_secret(tokens),
        created_from=created_from,
        oauth_service=provider.oauth_service,
    )


@sensitive_variables()
def account_replace_oauth_tokens(*, account: MailAccount, tokens: OAuthTokens) -> None:
    """The customer signed in again to the same mailbox (its access had been withdrawn)."""
    account_set_password(account=account, password=tokens_to_secret(tokens))


@sensitive_variables()
def account_store_renewed_tokens(*, account_id: int, tokens: OAuthTokens) -> None:
    """A run renewed the account's access (refresh tokens rotate at Microsoft): keep the new ones,
    unless the account's secrets were erased meanwhile (the job ended)."""
    MailAccount.objects.filter(pk=account_id).exclude(password_ciphertext="").update(
        password_ciphertext=encrypt_secret(tokens_to_secret(tokens))
    )


@sensitive_variables()
def account_set_password(*, account: MailAccount, password: str) -> None:
    account.set_password(password)
    MailAccount.objects.filter(pk=account.pk).update(
        password_ciphertext=account.password_ciphertext, password_erased_at=None
    )


@sensitive_variables()
def account_retype_password(*, account: MailAccount, password: str) -> None:
    """The customer typed the password of a known account again: stored, but untested until its
    connection test (account_request_check) says it works."""
    account.set_password(password)
    MailAccount.objects.filter(pk=account.pk).update(
        password_ciphertext=account.password_ciphertext,
        password_erased_at=None,
        verified_at=None,
        check_error_code="",
        check_requested_at=None,
    )
    account.refresh_from_db()


@sensitive_variables()
def account_update_connection(*, account: MailAccount, port: int, security: Security | str, password: str) -> None:
    """Staff's command line names the account again, maybe on another port or security."""
    MailAccount.objects.filter(pk=account.pk).update(port=port, security=Security(security))
    account_set_password(account=account, password=password)
    account.port, account.security = port, Security(security)


def account_erase_password(*, account: MailAccount) -> None:
    MailAccount.objects.filter(pk=account.pk).exclude(password_ciphertext="").update(
        password_ciphertext="", password_erased_at=timezone.now()
    )
    account.password_ciphertext = ""


def account_erase_personal_data(*, account: MailAccount) -> None:
    """Keep the row (the job's counts refer to it) but nothing that names or reaches its owner."""
    MailAccount.objects.filter(pk=account.pk).update(
        email_address=ERASED_ADDRESS, login="", host="", password_ciphertext="", password_erased_at=timezone.now()
    )


def accounts_delete_unused(*, account_ids: Iterable[int]) -> int:
    """Delete those of these accounts that no job uses (a job keeps its accounts); returns how many."""
    _total, per_model = MailAccount.objects.filter(
        pk__in=account_ids, jobs_as_source=None, jobs_as_destination=None
    ).delete()
    return per_model.get(MailAccount._meta.label, 0)


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
