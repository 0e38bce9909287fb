"""Error codes and exceptions of the copy engine (no secrets in any message)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    AUTH_FAILED = "auth_failed"
    # A login or password with non-ASCII characters that the server's IMAP parser refuses.
    AUTH_UNSUPPORTED_CHARACTERS = "auth_unsupported_characters"
    # OAuth2 accounts (issue 15). The server offers neither AUTHENTICATE OAUTHBEARER nor XOAUTH2.
    OAUTH_UNSUPPORTED = "oauth_unsupported"
    # The server refused a token its provider had just issued: IMAP is off for the account, or the
    # token does not carry the IMAP scope, or it belongs to another mailbox.
    OAUTH_REJECTED = "oauth_rejected"
    # The provider no longer renews the token (consent revoked, password changed, account closed):
    # only the customer signing in again brings the copy back.
    OAUTH_CONSENT_REVOKED = "oauth_consent_revoked"
    DNS_FAILED = "dns_failed"
    CONNECTION_REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    TLS_ERROR = "tls_error"
    NOT_IMAP = "not_imap"
    NETWORK_ERROR = "network_error"
    OVER_QUOTA = "over_quota"
    CANCELLED = "cancelled"
    ERROR_BUDGET_EXCEEDED = "error_budget_exceeded"
    PROTOCOL_ERROR = "protocol_error"
    # The server sent more than any mail server would (a gigantic literal, a line or an answer
    # that never ends): refused before it is read, so memory and time stay bounded.
    RESPONSE_TOO_LARGE = "response_too_large"
    TOO_MANY_FOLDERS = "too_many_folders"
    INTERNAL_ERROR = "internal_error"


class EngineError(Exception):
    """An expected failure with a code the portal can translate."""

    def __init__(self, code: ErrorCode, detail: str = "", side: str | None = None) -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.side = side
        self.detail = detail


class TransientError(EngineError):
    """A failure worth retrying after reconnecting: dropped connection, throttling, timeout."""


class Cancelled(Exception):
    """should_cancel() said stop."""
