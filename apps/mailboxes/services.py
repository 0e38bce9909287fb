from __future__ import annotations

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.crypto import reencrypt_secret
from apps.mailboxes.models import MailAccount
from apps.providers.models import Provider, Security


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
) -> MailAccount:
    account = MailAccount(
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
