"""Jobs and connection tests store error codes; these are the sentences shown for them,
translated at display time in the reader's language."""

from django.utils.translation import gettext_lazy as _

ERROR_MESSAGES = {
    "auth_failed": _("The server refused the login or the password. Check both and try again."),
    "auth_unsupported_characters": _(
        "This server does not accept accented or other non-ASCII characters in a login or password. "
        "Change the password to one without them at your provider, then try again."
    ),
    "dns_failed": _("The server name could not be found. Check the spelling of the IMAP server."),
    "connection_refused": _(
        "The server refused the connection. Check the IMAP server, the port and the connection security."
    ),
    "timeout": _("The server did not answer in time. Check the IMAP server and the port, or try again later."),
    "tls_error": _(
        "The secure connection failed: the server's certificate is not valid for this name, "
        "or this port does not offer SSL. Check the IMAP server and the connection security."
    ),
    "not_imap": _("The server answered, but it is not an IMAP server. Check the IMAP server and the port."),
    "network_error": _("The connection to the server was lost. Please try again later."),
    "host_not_allowed": _("This server address is not allowed. Please use your provider's public IMAP server."),
    "over_quota": _(
        "The destination mailbox is full. Free some space or raise its quota, then start the synchronization again."
    ),
    "cancelled": _("The synchronization was cancelled."),
    "error_budget_exceeded": _("Too many messages could not be copied, so the synchronization stopped."),
    "protocol_error": _("The server gave an answer we could not understand. Please contact our support."),
    "response_too_large": _(
        "The server sent an abnormally large answer, so the connection was stopped. Check the IMAP server "
        "and the port; if they are right, please contact your provider."
    ),
    "too_many_folders": _(
        "This mailbox has more folders than we can copy in one synchronization. Please contact our support."
    ),
    "internal_error": _("An unexpected error occurred on our side. Our team has been told; please try again later."),
    "credentials_erased": _("The passwords of this synchronization have been erased. Please start a new one."),
    "unreachable": _(
        "No IMAP server answered at this address and port. Check the IMAP server, the port and the connection security."
    ),
    "checks_busy": _(
        "Our service is very busy and could not test your account in time. Please try again in a few minutes."
    ),
    "rate_limited": _("Too many attempts. Please wait a few minutes before trying again."),
    # Sign in with Google or Microsoft (OAuth2).
    "oauth_denied": _("You did not allow our service to access this mailbox, so it cannot be copied."),
    "oauth_admin_consent": _(
        "An administrator of your organization must approve our service before you can sign in with it."
    ),
    "oauth_failed": _("The sign-in did not succeed. Please try again."),
    "oauth_expired": _("This sign-in took too long or was already used. Please sign in again."),
    "oauth_unreachable": _("The sign-in service did not answer. Please try again in a few minutes."),
    "oauth_no_address": _(
        "The sign-in did not tell us the address of your mailbox. Please sign in with your email account."
    ),
    "oauth_unsupported": _(
        "This server does not accept signing in with Google or Microsoft. Use your login and password instead."
    ),
    "oauth_rejected": _(
        "The mail server refused access with your sign-in. Check that IMAP is enabled for this mailbox, "
        "then sign in again."
    ),
    "oauth_consent_revoked": _(
        "Our access to this mailbox was withdrawn (or has expired), so the copy stopped. Sign in again "
        "to let it go on: what was already copied will not be copied twice."
    ),
}

SIDE_MESSAGES = {
    "source": _("This concerns the source account."),
    "destination": _("This concerns the destination account."),
}


# A preset with a help page says who refused and what it wants as a password.
REFUSED_BY_PROVIDER = _("%(provider)s refused the login or the password.")


def error_message(code: str) -> str:
    return str(ERROR_MESSAGES.get(code) or ERROR_MESSAGES["internal_error"])


def check_failed_message(code: str, provider=None) -> str:
    """The sentence shown at the top of the form after a failed connection test. A refused login
    on a provider with a help page of its own names the provider and says what password it wants
    (its whole advice is under the service, its link beside the password)."""
    message = error_message(code)
    if code != "auth_failed" or provider is None:
        return message
    if provider.help_url:
        refused = str(REFUSED_BY_PROVIDER) % {"provider": provider.display_name}
        advice = provider.password_advice or provider.display_help_text
        return f"{refused} {advice}".strip()
    return f"{message} {provider.display_help_text}".strip()
