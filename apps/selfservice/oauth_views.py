"""Sign in with Google or Microsoft on the source and destination steps (issue 15).

The step's "Sign in with …" button posts here; we send the customer to the provider with a
fresh `state`, PKCE verifier and nonce kept in the session (never a token); the provider sends
them back to one callback URL (`SITE_URL`/oauth/callback/, the address to register at Google and
Microsoft); there the code becomes tokens, the ID token names the mailbox, and the account's IMAP
login is tested with the token on the checks queue, like a typed password."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import get_language, gettext_lazy
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from apps.mailboxes import oauth
from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import (
    ChecksBusy,
    TooManyChecks,
    account_create_oauth,
    account_replace_oauth_tokens,
    account_request_check,
    accounts_delete_unused,
    client_key,
)
from apps.selfservice.ratelimit import allow, client_address, rate_limited_message
from apps.selfservice.status_views import sign_in_again, sign_in_offer
from apps.selfservice.views import PENDING_KEYS, SAME_MAILBOX, TOO_MANY_CHECKS, _drop_pending, session_account
from apps.sync import links, services
from apps.sync.error_messages import error_message
from apps.sync.links import status_url
from apps.sync.models import JobStatus

FLOW_KEY = "oauth_flow"
ROLES = ("source", "destination")
RESUME = "resume"  # a failed copy's customer signs in again from its status page
NEW_MAIL = "new-mail"  # a finished copy's customer signs in again to copy the mail that came since
WRONG_MAILBOX = gettext_lazy(
    "You signed in to %(signed_in)s, but this copy is of %(expected)s. Please sign in to %(expected)s."
)
SIGNED_IN_AGAIN = gettext_lazy("You signed in again: the copy goes on where it stopped.")


def callback_uri() -> str:
    """The redirect URI registered at the providers: from SITE_URL, never from the request's
    Host header (which a client chooses)."""
    return settings.SITE_URL + reverse("oauth-callback")


def _step_url(role: str, language: str | None = None) -> str:
    with translation.override(language or get_language()):
        return reverse(f"selfservice:{role}")


def _send_to_provider(request, config: oauth.ServiceConfig, *, back: str, **flow):
    """Keep this sign-in's state, PKCE verifier and nonce in the session (never a token) and send
    the customer to the provider; `back` if the client used up its budget."""
    # A sign-in ends in a connection test or a copy: the connection tests' budget per client.
    verdict = allow("test-ip", client_address(request), limit=20, window_seconds=600)
    if not verdict:
        messages.error(request, rate_limited_message(verdict))
        return redirect(back)
    authorization = oauth.authorization_request(config, callback_uri())
    request.session[FLOW_KEY] = {
        "state": authorization.state,
        "code_verifier": authorization.code_verifier,
        "nonce": authorization.nonce,
        "language": get_language(),
        "started": time.time(),
        **flow,
    }
    return redirect(authorization.url)


@require_POST
def oauth_start(request, role: str):
    if role not in ROLES:
        return redirect("selfservice:source")
    if role == "destination" and session_account(request, "source") is None:
        return redirect("selfservice:source")
    provider = oauth.providers_for(role).filter(pk=request.POST.get("provider") or 0).first()
    config = oauth.service_config(provider.oauth_service) if provider else None
    if config is None:
        messages.error(request, error_message("oauth_failed"))
        return redirect(_step_url(role))
    return _send_to_provider(request, config, back=_step_url(role), role=role, provider=provider.pk)


@require_GET
@sensitive_variables()
def oauth_callback(request):
    flow = request.session.pop(FLOW_KEY, None)
    if flow and flow.get("role") == RESUME:
        return _resume_callback(request, flow)
    if flow and flow.get("role") == NEW_MAIL:
        return _new_mail_callback(request, flow)
    if not flow or flow.get("role") not in ROLES:
        # Used twice, or the session expired, or someone else's link: start again.
        messages.error(request, error_message("oauth_expired"))
        return redirect(_step_url("source"))
    language, role = flow["language"], flow["role"]
    with translation.override(language):
        provider = oauth.providers_for(role).filter(pk=flow["provider"]).first()
        config = oauth.service_config(provider.oauth_service) if provider else None
        if config is None:
            messages.error(request, error_message("oauth_failed"))
            return redirect(_step_url(role, language))
        try:
            signed_in = oauth.complete_sign_in(config, callback_uri(), flow, request.GET.dict())
        except oauth.SignInFailed as failure:
            if failure.code == "oauth_admin_consent":
                return render(
                    request,
                    "selfservice/oauth_admin_consent.html",
                    {
                        "role": role,
                        "service": config.display_name,
                        "admin_consent_url": oauth.admin_consent_url(config, callback_uri()),
                        "step_url": _step_url(role, language),
                    },
                    status=403,
                )
            messages.error(request, error_message(failure.code))
            return redirect(_step_url(role, language))
        source = session_account(request, "source") if role == "destination" else None
        typed = MailAccount(login=signed_in.address, host=provider.imap_host)
        if source is not None and source.mailbox_identity == typed.mailbox_identity:
            messages.error(request, SAME_MAILBOX)
            return redirect(_step_url(role, language))
        account = account_create_oauth(
            provider=provider,
            address=signed_in.address,
            tokens=signed_in.tokens,
            created_from=client_key(client_address(request)),
        )
        try:
            account_request_check(account=account)
        except TooManyChecks:
            accounts_delete_unused(account_ids=[account.pk])
            messages.error(request, TOO_MANY_CHECKS)
            return redirect(_step_url(role, language))
        except ChecksBusy:
            accounts_delete_unused(account_ids=[account.pk])
            messages.error(request, error_message("checks_busy"))
            return redirect(_step_url(role, language))
        _drop_pending(request, role)
        request.session[PENDING_KEYS[role]] = account.pk
        return redirect(_step_url(role, language))


# --- Signing in again after the access was withdrawn -------------------------------------------


@require_POST
def oauth_resume_start(request, token: str):
    job = links.job_from_status_token(token)
    if job is None:
        raise Http404
    offer = sign_in_again(job)
    if offer is None:
        return redirect(status_url(job))
    account = job.source if offer["side"] == "source" else job.destination
    config = oauth.service_config(account.oauth_service)
    return _send_to_provider(request, config, back=status_url(job), role=RESUME, job_token=token)


def _signed_in_again(request, flow: dict, account) -> oauth.SignedIn | None:
    """The provider's answer to a sign-in for a known account, if it names that same mailbox
    (another mailbox's tokens would copy another mailbox); else None, with a message for the page."""
    config = oauth.service_config(account.oauth_service)
    try:
        signed_in = oauth.complete_sign_in(config, callback_uri(), flow, request.GET.dict())
    except oauth.SignInFailed as failure:
        messages.error(request, error_message(failure.code))
        return None
    if signed_in.address != account.email_address.lower():
        messages.error(
            request, str(WRONG_MAILBOX) % {"signed_in": signed_in.address, "expected": account.email_address}
        )
        return None
    return signed_in


def _resume_callback(request, flow: dict):
    job = links.job_from_status_token(flow.get("job_token", ""))
    if job is None:
        raise Http404
    with translation.override(flow["language"]):
        page = status_url(job)
        offer = sign_in_again(job)
        if offer is None:
            return redirect(page)
        account = job.source if offer["side"] == "source" else job.destination
        signed_in = _signed_in_again(request, flow, account)
        if signed_in is None:
            return redirect(page)
        account_replace_oauth_tokens(account=account, tokens=signed_in.tokens)
        try:
            services.job_retry(job=job)
        except services.CredentialsErased:
            messages.error(request, error_message("credentials_erased"))
        except (services.InvalidJobState, services.JobAlreadyActive):
            pass  # resumed meanwhile (another tab, staff): its page says so
        else:
            messages.success(request, SIGNED_IN_AGAIN)
        return redirect(page)


# --- Signing in again to copy new mail ----------------------------------------------------------


@require_POST
def oauth_new_mail_start(request, token: str, side: str):
    job = links.job_from_status_token(token)
    if job is None or side not in ROLES:
        raise Http404
    offer = sign_in_offer(job, side) if job.status == JobStatus.FINISHED else None
    if offer is None:
        return redirect(status_url(job))
    config = oauth.service_config(getattr(job, side).oauth_service)
    return _send_to_provider(request, config, back=status_url(job), role=NEW_MAIL, job_token=token, side=side)


def _new_mail_callback(request, flow: dict):
    job = links.job_from_status_token(flow.get("job_token", ""))
    side = flow.get("side")
    if job is None or side not in ROLES:
        raise Http404
    with translation.override(flow["language"]):
        page = status_url(job)
        if job.status != JobStatus.FINISHED or sign_in_offer(job, side) is None:
            return redirect(page)
        signed_in = _signed_in_again(request, flow, getattr(job, side))
        if signed_in is None:
            return redirect(page)
        try:
            # Tested like a password typed again; once every side works, the page queues the copy.
            services.job_reenter_tokens(job=job, side=side, tokens=signed_in.tokens)
        except TooManyChecks:
            messages.error(request, TOO_MANY_CHECKS)
        except ChecksBusy:
            messages.error(request, error_message("checks_busy"))
        except services.InvalidJobState:
            pass
        return redirect(page)
