"""The customer's journey: source account, destination account, Synchronize, status."""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import get_language, gettext_lazy, ngettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import (
    ChecksBusy,
    TooManyChecks,
    account_create,
    account_request_check,
    check_answer_deadline,
    client_key,
)
from apps.selfservice.forms import AccountForm, StatusLookupForm
from apps.selfservice.ratelimit import account_subject, allow, client_address, rate_limited_message
from apps.sync import services
from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.models import ACTIVE_STATUSES, JobStatus, SyncJob
from apps.sync.reports import job_losses, report_recipient

QUEUED_HINT = gettext_lazy("The copy has not started yet, please wait.")
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
STATUS_SALT = "imapcopy.status-link"
logger = logging.getLogger("imapcopy.sync")
REPORT_CONFIRMATION_SALT = "imapcopy.report-address"
LOOKUP_LINK_SENT = gettext_lazy(
    "If a copy of this mailbox exists, we sent the link to its details to the address that receives its report."
)


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
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return _("about %(minutes)d min") % {"minutes": minutes}
    return _("about %(hours)d h %(minutes)02d min") % {"hours": minutes // 60, "minutes": minutes % 60}


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
        MailAccount.objects.filter(pk=account_id, jobs_as_source=None, jobs_as_destination=None).delete()


def _adopt_verified(request, role: str, account: MailAccount) -> None:
    previous = request.session.get(SESSION_KEYS[role])
    request.session.pop(PENDING_KEYS[role], None)
    request.session[SESSION_KEYS[role]] = account.pk
    # A verified account is a privilege: a session id planted before it (fixation) must not lead
    # to it, so the session gets a new id now.
    request.session.cycle_key()
    if previous and previous != account.pk:
        MailAccount.objects.filter(pk=previous, jobs_as_source=None, jobs_as_destination=None).delete()


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
    message = error_message(code)
    if code == "auth_failed" and account.provider.help_text:
        message = f"{message} {account.provider.display_help_text}"
    return message


@sensitive_variables()
def _account_step(request, role: str):
    template = f"selfservice/{role}.html"
    if request.method == "POST":
        form = AccountForm(request.POST, role=role)
        if form.is_valid():
            return _start_connection_test(request, role, form)
        return render(request, template, {"form": form, "role": role})

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
            return render(
                request,
                template,
                {
                    "form": form,
                    "role": role,
                    "check_error": _check_failed_message(pending, code),
                    "error_code": code,
                },
            )
    account = session_account(request, role)
    return render(
        request,
        template,
        {
            "form": AccountForm(role=role),
            "role": role,
            "account": account,
            "estimate": duration_text(estimate_seconds(account)) if account else "",
            "edit": request.GET.get("edit") == "1",
        },
    )


@sensitive_variables()
def _start_connection_test(request, role: str, form: AccountForm):
    template = f"selfservice/{role}.html"
    data = form.cleaned_data

    def refuse(message: str, code: str, status: int):
        form.add_error(None, message)
        return render(request, template, {"form": form, "role": role, "error_code": code}, status=status)

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
        new_account.delete()
        return refuse(TOO_MANY_CHECKS, "too_many_checks", 429)
    except ChecksBusy:
        new_account.delete()
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


def status_token(job: SyncJob) -> str:
    return signing.dumps(str(job.public_id), salt=STATUS_SALT, compress=True)


def status_url(job: SyncJob, *, absolute: bool = False) -> str:
    path = reverse("selfservice:job-status", kwargs={"token": status_token(job)})
    return settings.SITE_URL + path if absolute else path


def report_confirmation_url(job: SyncJob, *, absolute: bool = False) -> str:
    # The link names the address it confirms: it confirms nothing once the job has another one.
    token = signing.dumps(
        {"job": str(job.public_id), "address": job.report_address}, salt=REPORT_CONFIRMATION_SALT, compress=True
    )
    path = reverse("selfservice:report-confirm", kwargs={"token": token})
    return settings.SITE_URL + path if absolute else path


def _send_report_confirmation(request, job: SyncJob) -> bool:
    """Email the confirmation link of the job's report address, within the limits per client and
    per address (whoever types someone's address must not flood it). False when not sent."""
    if not (
        allow("confirm-report-ip", client_address(request), limit=10, window_seconds=3600)
        and allow("confirm-report-address", job.report_address, limit=3, window_seconds=86400)
    ):
        return False
    try:
        return services.job_send_report_confirmation(job=job)
    except Exception:  # the copy goes on without it; the status page can send the link again
        logger.exception("confirmation link of job %s could not be sent", job.pk)
        return False


@require_http_methods(["GET", "POST"])
def synchronize_step(request):
    source = session_account(request, "source")
    destination = session_account(request, "destination")
    if source is None:
        return redirect("selfservice:source")
    if destination is None:
        return redirect("selfservice:destination")
    if request.method == "POST":
        active_here = SyncJob.objects.filter(
            source__created_from=client_key(client_address(request)), status__in=ACTIVE_STATUSES
        ).count()
        if active_here >= settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT:
            messages.error(request, TOO_MANY_JOBS % {"count": settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT})
            return redirect("selfservice:synchronize")
        try:
            job = services.job_create(source=source, destination=destination, language=get_language() or "en")
        except services.JobAlreadyActive:
            messages.error(request, _("A synchronization job already exists for this account."))
            return redirect("selfservice:synchronize")
        except services.SameMailbox:
            messages.error(request, SAME_MAILBOX)
            return redirect("selfservice:destination")
        for key in (*SESSION_KEYS.values(), *PENDING_KEYS.values()):
            request.session.pop(key, None)
        messages.success(
            request,
            _("The synchronization of your accounts is being processed. You can follow its state with the form below."),
        )
        if not job.report_address_proven:
            _send_report_confirmation(request, job)
        return redirect(status_url(job))
    report_address, report_proven = report_recipient(destination)
    return render(
        request,
        "selfservice/synchronize.html",
        {
            "source": source,
            "destination": destination,
            "estimate": duration_text(estimate_seconds(source)),
            "report_address": report_address,
            "report_proven": report_proven,
        },
    )


def job_state(job: SyncJob) -> dict:
    """What anyone holding the link or the address may see: state and progress, no account details."""
    state = {
        "status": job.status,
        "status_label": str(JobStatus(job.status).label),
        "percent": job.percent_done,
        "folders_total": job.folders_total,
        "folders_done": job.folders_done,
        "messages_total": job.messages_total,
        "messages_copied": job.messages_copied,
        "messages_skipped": job.messages_skipped,
        "messages_failed": job.messages_failed,
        "bytes_copied": job.bytes_copied,
        "bytes_copied_text": formats.number_format(round(job.bytes_copied / 1_000_000, 1), 1, use_l10n=True),
        "current_folder": job.current_folder,
        "error": error_message(job.error_code) if job.status == JobStatus.FAILED else "",
        "error_side": str(SIDE_MESSAGES.get(job.error_side, "")) if job.status == JobStatus.FAILED else "",
        "eta": "",
        "hint": str(QUEUED_HINT) if job.status == JobStatus.QUEUED else "",
    }
    if job.status == JobStatus.RUNNING and job.started_at and job.percent_done >= 1:
        from django.utils import timezone

        elapsed = (timezone.now() - job.started_at).total_seconds()
        remaining = elapsed * (100 - job.percent_done) / job.percent_done
        state["eta"] = duration_text(int(remaining))
    return state


def _job_from_token(token: str) -> SyncJob:
    try:
        public_id = signing.loads(
            token, salt=STATUS_SALT, max_age=datetime.timedelta(days=settings.IMAPCOPY_STATUS_LINK_DAYS)
        )
    except signing.BadSignature:
        raise Http404 from None
    job = SyncJob.objects.filter(public_id=public_id).first()
    if job is None:
        raise Http404
    return job


@never_cache  # the page lists message subjects: no shared or browser cache keeps it
def job_status(request, token: str):
    job = _job_from_token(token)
    # Only the private link shows what was lost (subjects, folders): the lookup by address,
    # open to anyone who knows it, and the progress JSON show the counts alone.
    losses = [] if job.is_active else job_losses(job)
    return render(
        request,
        "selfservice/job_status.html",
        {
            "job": job,
            "state": job_state(job),
            "progress_url": request.path + "progress/",
            "losses": losses,
            "confirmation_url": reverse("selfservice:report-confirmation-send", kwargs={"token": token}),
        },
    )


@require_http_methods(["POST"])
def report_confirmation_send(request, token: str):
    """The private status page's "send the confirmation link again" (a lost or expired one)."""
    job = _job_from_token(token)
    if job.report_address_proven or not job.report_address:
        return redirect(status_url(job))
    if _send_report_confirmation(request, job):
        messages.success(request, _("We sent a confirmation link to %(address)s.") % {"address": job.report_address})
    else:
        messages.error(request, _("We could not send the confirmation link now. Please try again later."))
    return redirect(status_url(job))


@never_cache
@require_http_methods(["GET", "POST"])
def report_confirm(request, token: str):
    """The link emailed to a report address. GET only shows a button (mail scanners follow links);
    the POST confirms the address, and sends the report if the copy has ended meanwhile."""
    try:
        data = signing.loads(
            token,
            salt=REPORT_CONFIRMATION_SALT,
            max_age=datetime.timedelta(days=settings.IMAPCOPY_REPORT_CONFIRMATION_DAYS),
        )
    except signing.SignatureExpired:
        return render(request, "selfservice/report_confirm.html", {"expired": True}, status=410)
    except signing.BadSignature:
        raise Http404 from None
    job = SyncJob.objects.filter(public_id=data.get("job"), report_address=data.get("address")).first()
    if job is None:
        raise Http404
    context = {"address": job.report_address, "confirmed": job.report_address_proven, "ended": not job.is_active}
    if request.method == "POST":
        try:
            outcome = services.job_confirm_report_address(job=job, address=job.report_address)
        except services.ReportAddressNotProven:
            raise Http404 from None
        except Exception:  # confirmed all the same; as when the worker fails to send it, staff re-send
            logger.exception("report of job %s could not be sent after confirmation", job.pk)
            services.job_record_event(job_id=job.pk, kind="report_failed")
            context["report_failed"] = True
            outcome = None
        context.update(confirmed=True, ended=outcome is not None, just_confirmed=True)
    return render(request, "selfservice/report_confirm.html", context)


def job_progress(request, token: str):
    job = _job_from_token(token)
    response = JsonResponse(job_state(job))
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def status_lookup(request):
    """The public lookup by source address: a POST (the address stays out of access logs) that
    shows the state alone; the details stay behind the private link, which it can email to the
    job's proven report address (and answers the same whether or not there is one)."""
    if request.method != "POST":  # a GET with ?address= looks nothing up
        return render(request, "selfservice/status_lookup.html", {"form": StatusLookupForm()})
    form = StatusLookupForm(request.POST)
    context = {"form": form}
    if not form.is_valid():
        return render(request, "selfservice/status_lookup.html", context)
    verdict = allow("lookup-ip", client_address(request), limit=30, window_seconds=60)
    if not verdict:
        form.add_error(None, rate_limited_message(verdict))
        return render(request, "selfservice/status_lookup.html", context, status=429)
    address = services.normalize_address(form.cleaned_data["address"])
    job = SyncJob.objects.filter(source_address=address).order_by("-created_at").first()
    if "send_link" in request.POST:
        verdict = allow("lookup-link-ip", client_address(request), limit=5, window_seconds=3600)
        if not verdict:
            form.add_error(None, rate_limited_message(verdict))
            return render(request, "selfservice/status_lookup.html", context, status=429)
        # Past the limit per job, nothing is sent but the answer stays the same.
        if job is not None and allow("lookup-link-job", str(job.public_id), limit=3, window_seconds=3600):
            try:
                services.job_send_status_link(job=job)
            except Exception:
                logger.exception("status link of job %s could not be sent", job.pk)
        context["link_sent"] = LOOKUP_LINK_SENT
    elif job is None:
        context["not_found"] = True
    else:
        context["status"], context["status_label"] = job.status, JobStatus(job.status).label
    return render(request, "selfservice/status_lookup.html", context)
