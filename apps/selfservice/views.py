"""The customer's journey: source account, destination account, Synchronize (the status pages
are in status_views)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy, ngettext_lazy
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from apps.mailboxes import oauth
from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import (
    ChecksBusy,
    TooManyChecks,
    account_create,
    account_request_check,
    accounts_delete_unused,
    check_answer_deadline,
    client_key,
)
from apps.selfservice.forms import AccountForm, SynchronizeForm
from apps.selfservice.ratelimit import account_subject, allow, client_address, rate_limited_message
from apps.selfservice.status_views import record_site_url, send_report_confirmation, send_status_link
from apps.sync import formatting, services
from apps.sync.error_messages import check_failed_message, error_message
from apps.sync.links import STATUS_SALT, status_url  # noqa: F401  (STATUS_SALT: the browser tests import it from here)
from apps.sync.models import ACTIVE_STATUSES, JobStatus, SyncJob
from apps.sync.reports import report_recipient

SAME_MAILBOX = gettext_lazy("This is the source mailbox itself: choose another mailbox as the destination of the copy.")
SESSION_KEYS = {"source": "source_account_id", "destination": "destination_account_id"}
# The account whose connection test is on its way, per step.
PENDING_KEYS = {"source": "pending_source_account_id", "destination": "pending_destination_account_id"}
TOO_MANY_JOBS = ngettext_lazy(
    "You already have %(count)d copy waiting or in progress. Please wait until it has finished.",
    "You already have %(count)d copies waiting or in progress. Please wait until one of them has finished.",
    "count",
)
TOO_MANY_CHECKS = gettext_lazy(
    "Your previous connection tests have not finished yet. Please wait for their result before trying again."
)
logger = logging.getLogger("imapcopy.sync")
ALREADY_ACTIVE = gettext_lazy("A synchronization job already exists for this account.")
ACTIVE_LINK_SENT = gettext_lazy(
    "We sent the link to the page of this copy to the address that receives its report, if that address is confirmed."
)
# The copies started from this browser (their public ids): the synchronize step links straight
# to such a copy's page when it is still under way.
CREATED_JOBS_KEY = "created_job_ids"


def session_account(request, role: str) -> MailAccount | None:
    pending = _pending_account(request, role)
    if pending is not None and pending.verified_at is not None:
        _adopt_verified(request, role, pending)  # its test passed while the customer was elsewhere
    account_id = request.session.get(SESSION_KEYS[role])
    if not account_id:
        return None
    account = MailAccount.objects.select_related("provider").filter(pk=account_id).first()
    if account is None or not account.has_password or account.verified_at is None:
        return None
    return account


def estimate_seconds(account: MailAccount) -> int:
    by_messages = (account.found_messages or 0) / settings.IMAPCOPY_ESTIMATE_MESSAGES_PER_SECOND
    by_bytes = (account.found_bytes or 0) / settings.IMAPCOPY_ESTIMATE_BYTES_PER_SECOND
    return int(max(by_messages, by_bytes)) + 60


def duration_text(seconds: int) -> str:
    return formatting.approximate_duration_text(seconds)


def _pending_account(request, role: str) -> MailAccount | None:
    account_id = request.session.get(PENDING_KEYS[role])
    if not account_id:
        return None
    account = MailAccount.objects.select_related("provider").filter(pk=account_id).first()
    if account is None:
        request.session.pop(PENDING_KEYS[role], None)
    return account


def _drop_pending(request, role: str) -> None:
    account_id = request.session.pop(PENDING_KEYS[role], None)
    if account_id:
        accounts_delete_unused(account_ids=[account_id])


def _adopt_verified(request, role: str, account: MailAccount) -> None:
    previous = request.session.get(SESSION_KEYS[role])
    request.session.pop(PENDING_KEYS[role], None)
    request.session[SESSION_KEYS[role]] = account.pk
    # A verified account is a privilege: a session id planted before it (fixation) must not lead
    # to it, so the session gets a new id now.
    request.session.cycle_key()
    if previous and previous != account.pk:
        accounts_delete_unused(account_ids=[previous])


def _form_again(account: MailAccount, role: str) -> AccountForm:
    """The form as the customer filled it in (but the password), to correct after a failed test."""
    provider = account.provider
    typed_host = provider.customer_types_host and account.host != (provider.imap_host or "")
    return AccountForm(
        role=role,
        initial={
            "provider": provider.pk,
            "login": account.login,
            "email_address": account.email_address if account.email_address != account.login else "",
            "host": account.host if typed_host else "",
            # The port the test used stays in view, to correct it.
            "port": account.port if provider.customer_types_host else None,
            "security": account.security,
        },
    )


def _check_failed_message(account: MailAccount, code: str) -> str:
    return check_failed_message(code, account.provider)


def _render_step(request, role: str, context: dict, *, status: int = 200):
    # The form's script says how long a test may take: the setting, not a number in the template.
    context = {
        "role": role,
        "connection_test_seconds": settings.CONNECTION_TEST_SECONDS,
        "sign_in_choices": oauth.sign_in_choices(role),
        **context,
    }
    return render(request, f"selfservice/{role}.html", context, status=status)


@sensitive_variables()
def _account_step(request, role: str):
    if request.method == "POST":
        form = AccountForm(request.POST, role=role)
        if form.is_valid():
            return _start_connection_test(request, role, form)
        return _render_step(request, role, {"form": form})

    pending = _pending_account(request, role)
    if pending is not None and pending.verified_at is None:
        if pending.check_pending and timezone.now() <= check_answer_deadline(pending):
            return render(
                request,
                "selfservice/testing.html",
                {"role": role, "account": pending, "seconds": settings.CONNECTION_TEST_SECONDS},
            )
        else:
            code = pending.check_error_code or "checks_busy"  # no answer in time: the queue was too slow
            _drop_pending(request, role)
            form = _form_again(pending, role)
            form.show_check_error(code)
            return _render_step(
                request,
                role,
                {"form": form, "check_error": _check_failed_message(pending, code), "error_code": code},
            )
    account = session_account(request, role)
    return _render_step(
        request,
        role,
        {
            "form": AccountForm(role=role),
            "account": account,
            "estimate": duration_text(estimate_seconds(account)) if account else "",
            "edit": request.GET.get("edit") == "1",
        },
    )


@sensitive_variables()
def _start_connection_test(request, role: str, form: AccountForm):
    data = form.cleaned_data

    def refuse(message: str, code: str, status: int):
        form.add_error(None, message)
        return _render_step(request, role, {"form": form, "error_code": code}, status=status)

    client = client_address(request)
    verdict = allow("test-ip", client, limit=20, window_seconds=600)
    if verdict:
        verdict = allow(
            "test-account",
            account_subject(login=data["login"], host=data["imap_host"]),
            limit=6,
            window_seconds=600,
        )
    if not verdict:
        return refuse(rate_limited_message(verdict), "rate_limited", 429)
    source = session_account(request, "source") if role == "destination" else None
    typed = MailAccount(login=data["login"], host=data["imap_host"])
    if source is not None and source.mailbox_identity == typed.mailbox_identity:
        return refuse(SAME_MAILBOX, "same_mailbox", 200)
    new_account = account_create(
        provider=data["provider"],
        email_address=data["address"],
        login=data["login"],
        host=data["imap_host"],
        port=data["imap_port"],
        security=data["imap_security"],
        password=data["password"],
        created_from=client_key(client),
    )
    try:
        account_request_check(account=new_account)
    except TooManyChecks:
        accounts_delete_unused(account_ids=[new_account.pk])
        return refuse(TOO_MANY_CHECKS, "too_many_checks", 429)
    except ChecksBusy:
        accounts_delete_unused(account_ids=[new_account.pk])
        return refuse(error_message("checks_busy"), "checks_busy", 503)
    _drop_pending(request, role)
    request.session[PENDING_KEYS[role]] = new_account.pk
    # See the outcome (or the waiting page) at the step's own address: a reload never posts the
    # password again.
    return redirect(f"selfservice:{role}")


@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def source_step(request):
    return _account_step(request, "source")


@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def destination_step(request):
    if session_account(request, "source") is None:
        return redirect("selfservice:source")
    return _account_step(request, "destination")


def _active_job(source: MailAccount) -> SyncJob | None:
    """The copy of this (verified) source mailbox that is queued or running, if any."""
    return (
        SyncJob.objects.filter(source_mailbox=source.mailbox_identity, status__in=ACTIVE_STATUSES)
        .order_by("-created_at")
        .first()
    )


@require_http_methods(["GET", "POST"])
def synchronize_step(request):
    source = session_account(request, "source")
    destination = session_account(request, "destination")
    if source is None:
        return redirect("selfservice:source")
    if destination is None:
        return redirect("selfservice:destination")
    if request.method == "POST" and "send_link" in request.POST:
        # A copy of this mailbox is under way (started elsewhere): its link goes, as from the
        # lookup, only to its proven report address.
        verdict = send_status_link(request, _active_job(source))
        if verdict:
            messages.success(request, ACTIVE_LINK_SENT)
        else:
            messages.error(request, rate_limited_message(verdict))
        return redirect("selfservice:synchronize")
    if request.method == "POST":
        active_here = SyncJob.objects.filter(
            source__created_from=client_key(client_address(request)), status__in=ACTIVE_STATUSES
        ).count()
        if active_here >= settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT:
            messages.error(request, TOO_MANY_JOBS % {"count": settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT})
            return redirect("selfservice:synchronize")
        # Kept only when the customer ticked it, to copy new mail again from the copy's page.
        keep = SynchronizeForm(request.POST, days=settings.IMAPCOPY_DELTA_KEEP_DAYS)
        ticked = keep.is_valid() and keep.cleaned_data["keep_credentials"]
        keep_days = settings.IMAPCOPY_DELTA_KEEP_DAYS if ticked else 0
        try:
            job = services.job_create(
                source=source, destination=destination, language=get_language() or "en", keep_credentials_days=keep_days
            )
        except services.JobAlreadyActive:
            messages.error(request, ALREADY_ACTIVE)
            return redirect("selfservice:synchronize")
        except services.SameMailbox:
            messages.error(request, SAME_MAILBOX)
            return redirect("selfservice:destination")
        for key in (*SESSION_KEYS.values(), *PENDING_KEYS.values()):
            request.session.pop(key, None)
        request.session[CREATED_JOBS_KEY] = [*request.session.get(CREATED_JOBS_KEY, [])[-9:], str(job.public_id)]
        record_site_url(request, job)
        if not job.report_address_proven:
            send_report_confirmation(request, job)
        return redirect(status_url(job))
    report_address, report_proven = report_recipient(destination)
    context = {
        "source": source,
        "destination": destination,
        "estimate": duration_text(estimate_seconds(source)),
        "report_address": report_address,
        "report_proven": report_proven,
        # "Keep my passwords to copy new mail again later" (not offered when the setting is 0).
        "sync_form": SynchronizeForm(days=settings.IMAPCOPY_DELTA_KEEP_DAYS)
        if settings.IMAPCOPY_DELTA_KEEP_DAYS
        else None,
    }
    active = _active_job(source)
    if active is not None:
        context.update(
            active_job=active,
            active_status_label=JobStatus(active.status).label,
            # Its page, straight away, only to the browser that started it.
            active_status_url=status_url(active)
            if str(active.public_id) in request.session.get(CREATED_JOBS_KEY, [])
            else "",
        )
    return render(request, "selfservice/synchronize.html", context)
