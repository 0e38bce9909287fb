"""The engine's view of a stored account: host, TLS settings, provider limits, password or
OAuth2 tokens."""

from __future__ import annotations

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes import oauth
from apps.mailboxes.models import MailAccount
from apps.mailboxes.netguard import resolve_allowed_address
from apps.mailboxes.services import account_store_renewed_tokens
from apps.sync import engine


@sensitive_variables()
def endpoint_for(
    account: MailAccount,
    *,
    check_host: bool = True,
    ca_file: str | None = None,
    verify_tls: bool = True,
    timeout: float = 60.0,
    side: str | None = None,
) -> engine.Endpoint:
    """Decrypts the password: call only right before connecting. With `check_host`, the host
    is resolved and vetted (HostNotAllowed, HostNotFound) and the endpoint pinned to the
    address that was checked."""
    connect_address = None
    if check_host:
        connect_address = resolve_allowed_address(
            account.host, account.port, settings.IMAPCOPY_ALLOWED_PRIVATE_NETWORKS
        )
    provider = account.provider
    # A literal much bigger than the largest message the service copies is refused unread.
    max_message = settings.IMAPCOPY_MAX_MESSAGE_BYTES
    max_literal = max_message + max(1024 * 1024, max_message // 10) if max_message else None
    secret = account.decrypt_password()
    oauth_token = None
    if account.uses_oauth:
        # The run's connections share one keeper: it renews ahead of expiry, one refresh at a time,
        # and keeps the renewed tokens (encrypted) for the next run.
        account_id = account.pk
        oauth_token = oauth.token_keeper(
            service=account.oauth_service,
            secret=secret,
            side=side,
            on_renewed=lambda tokens: account_store_renewed_tokens(account_id=account_id, tokens=tokens),
        )
        secret = ""
    return engine.Endpoint(
        host=account.host,
        port=account.port,
        security=engine.Security(account.security),
        login=account.login,
        password=secret,
        oauth_token=oauth_token,
        connect_address=connect_address,
        ca_file=ca_file or settings.IMAPCOPY_CA_FILE,
        verify_tls=verify_tls,
        max_connections=provider.max_connections,
        max_messages_per_second=provider.max_messages_per_second,
        max_bytes_per_second=provider.max_bytes_per_second,
        timeout=timeout,
        max_literal_bytes=max_literal,
    )
