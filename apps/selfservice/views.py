"""The customer's journey: source account, destination account, Synchronize, status."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from apps.mailboxes.checks import check_account
from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import account_create
from apps.selfservice.forms import AccountForm, StatusLookupForm
from apps.selfservice.ratelimit import allow, client_address
from apps.sync import services
from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.models import JobStatus, SyncJob
from apps.sync.reports import job_losses

QUEUED_HINT = gettext_lazy("The copy has not started yet, please wait.")
SAME_MAILBOX = gettext_lazy("This is the source mailbox itself: choose another mailbox as the destination of the copy.")
SESSION_KEYS = {"source": "source_account_id", "destination": "destination_account_id"}
STATUS_SALT = "imapcopy.status-link"


def session_account(request, role: str) -> MailAccount | None:
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


@sensitive_variables()
def _account_step(request, role: str):
    template = f"selfservice/{role}.html"
    account = session_account(request, role)
    if request.method == "POST":
        form = AccountForm(request.POST, role=role)
        if form.is_valid():
            data = form.cleaned_data
            if not (
                allow("test-ip", client_address(request), limit=20, window_seconds=600)
                and allow("test-account", f"{data['login']}@{data['imap_host']}", limit=6, window_seconds=600)
            ):
                form.add_error(None, error_message("rate_limited"))
                return render(request, template, {"form": form, "role": role}, status=429)
            new_account = account_create(
                provider=data["provider"],
                email_address=data["address"],
                login=data["login"],
                host=data["imap_host"],
                port=data["imap_port"],
                security=data["imap_security"],
                password=data["password"],
            )
            source = session_account(request, "source") if role == "destination" else None
            if source is not None and source.mailbox_identity == new_account.mailbox_identity:
                new_account.delete()
                form.add_error(None, SAME_MAILBOX)
                return render(request, template, {"form": form, "role": role, "error_code": "same_mailbox"})
            outcome = check_account(new_account)
            if outcome.ok:
                previous = request.session.get(SESSION_KEYS[role])
                request.session[SESSION_KEYS[role]] = new_account.pk
                # A verified account is a privilege: a session id planted before it (fixation)
                # must not lead to it, so the session gets a new id now.
                request.session.cycle_key()
                if previous:
                    MailAccount.objects.filter(pk=previous, jobs_as_source=None, jobs_as_destination=None).delete()
                return redirect(f"selfservice:{role}")
            new_account.delete()  # nothing to keep from a failed test, least of all a password
            message = error_message(outcome.error_code)
            if outcome.error_code == "auth_failed" and data["provider"].help_text:
                message = f"{message} {data['provider'].display_help_text}"
            form.add_error(None, message)
            return render(request, template, {"form": form, "role": role, "error_code": outcome.error_code})
    else:
        form = AccountForm(role=role)
    return render(
        request,
        template,
        {
            "form": form,
            "role": role,
            "account": account,
            "estimate": duration_text(estimate_seconds(account)) if account else "",
            "edit": request.GET.get("edit") == "1",
        },
    )


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


@require_http_methods(["GET", "POST"])
def synchronize_step(request):
    source = session_account(request, "source")
    destination = session_account(request, "destination")
    if source is None:
        return redirect("selfservice:source")
    if destination is None:
        return redirect("selfservice:destination")
    if request.method == "POST":
        try:
            job = services.job_create(source=source, destination=destination, language=get_language() or "en")
        except services.JobAlreadyActive:
            messages.error(request, _("A synchronization job already exists for this account."))
            return redirect("selfservice:synchronize")
        except services.SameMailbox:
            messages.error(request, SAME_MAILBOX)
            return redirect("selfservice:destination")
        for key in SESSION_KEYS.values():
            request.session.pop(key, None)
        messages.success(
            request,
            _("The synchronization of your accounts is being processed. You can follow its state with the form below."),
        )
        return redirect(status_url(job))
    return render(
        request,
        "selfservice/synchronize.html",
        {"source": source, "destination": destination, "estimate": duration_text(estimate_seconds(source))},
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
        {"job": job, "state": job_state(job), "progress_url": request.path + "progress/", "losses": losses},
    )


def job_progress(request, token: str):
    job = _job_from_token(token)
    response = JsonResponse(job_state(job))
    response["Cache-Control"] = "no-store"
    return response


def status_lookup(request):
    form = StatusLookupForm(request.GET or None)
    state = None
    not_found = False
    if form.is_bound and form.is_valid():
        if not allow("lookup-ip", client_address(request), limit=30, window_seconds=60):
            form.add_error(None, error_message("rate_limited"))
            return render(request, "selfservice/status_lookup.html", {"form": form}, status=429)
        address = services.normalize_address(form.cleaned_data["address"])
        job = SyncJob.objects.filter(source_address=address).order_by("-created_at").first()
        if job is None:
            not_found = True
        else:
            state = job_state(job)
    return render(request, "selfservice/status_lookup.html", {"form": form, "state": state, "not_found": not_found})
