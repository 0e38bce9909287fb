"""The status pages: the job's private page (and its progress JSON), the public lookup by source
address, the report address's confirmation (the links themselves are apps.sync.links)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from apps.mailboxes import oauth
from apps.mailboxes.services import ChecksBusy, TooManyChecks, client_key
from apps.selfservice.forms import SIDE_LEGENDS, NewMailPasswordsForm, StatusLookupForm
from apps.selfservice.ratelimit import account_subject, allow, client_address, rate_limited_message
from apps.sync import formatting, links, services
from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.links import status_url
from apps.sync.losses import job_losses
from apps.sync.models import JobEvent, JobStatus, SyncJob
from apps.sync.reports import CopyFigures, copy_figures, figure_texts, new_mail_result_text
from apps.sync.services import PasswordState

logger = logging.getLogger("imapcopy.sync")

LOOKUP_LINK_SENT = gettext_lazy(
    "If a copy of this mailbox exists, we sent the link to its details to the address that receives its report."
)
# The ETA is computed from the progress of the last few minutes (samples kept in the cache).
ETA_WINDOW_SECONDS = 300
ETA_MIN_SPAN_SECONDS = 20

# What each state means for the customer, in one sentence (two for an ended copy that can go on).
STATE_SENTENCES = {
    "queued": gettext_lazy(
        "Your copy has not started yet: it starts as soon as a place is free. "
        "You can close this page, the copy will go on."
    ),
    "running": gettext_lazy("Your copy is in progress. This page follows it live; you can close it, the copy goes on."),
    "finished": gettext_lazy(
        "Your copy is finished: every message of the source mailbox is in the destination mailbox."
    ),
    "finished_present": gettext_lazy(
        "Your copy is finished. Every message was already in the destination mailbox: nothing needed to be copied."
    ),
    "finished_empty": gettext_lazy("Your copy is finished. The source mailbox holds no message to copy."),
    "finished_with_errors": gettext_lazy(
        "Your copy is finished, but some messages could not be copied: this page and the report say which."
    ),
    "failed": gettext_lazy(
        "Your copy stopped because of an error. What was copied so far stays in place; once the problem is "
        "solved, start the copy again: it continues where it stopped, without duplicates."
    ),
    "cancelled": gettext_lazy(
        "Your copy was cancelled. What was copied so far stays in place; if you start it again, it continues "
        "where it stopped, without duplicates."
    ),
}
FINISHED_WITH_ERRORS = gettext_lazy("Finished, some messages not copied")
# "Copy new mail again" refused: a copy of the same source mailbox is queued or running.
NEW_MAIL_ALREADY_ACTIVE = gettext_lazy(
    "Another copy of this source mailbox is under way. Wait until it ends, then copy the new mail again."
)
NEW_MAIL_TOO_MANY_JOBS = ngettext_lazy(
    "You already have %(count)d copy waiting or in progress. Please wait until it has finished.",
    "You already have %(count)d copies waiting or in progress. Please wait until one of them has finished.",
    "count",
)
NEW_MAIL_TOO_MANY_CHECKS = gettext_lazy(
    "Your previous connection tests have not finished yet. Please wait for their result before trying again."
)


# --- Links -------------------------------------------------------------------------------------


def record_site_url(request, job: SyncJob) -> None:
    """Remember the address the customer used, when it is not SITE_URL, for the job's emails."""
    url = links.request_site_url(request)
    if url != settings.SITE_URL:
        services.job_record_event(job_id=job.pk, kind=links.SITE_ADDRESS_EVENT, detail={"url": url})


def send_report_confirmation(request, job: SyncJob) -> bool:
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


# --- The state of a job ------------------------------------------------------------------------


def state_key(job: SyncJob, figures: CopyFigures) -> str:
    """Which of STATE_SENTENCES describes the job."""
    if job.status != JobStatus.FINISHED:
        return str(job.status)
    if figures.not_copied:
        return "finished_with_errors"
    if not figures.messages_total:
        return "finished_empty"
    if figures.present and not figures.copied:
        return "finished_present"
    return "finished"


def current_folder_text(job: SyncJob) -> str:
    """The folder being copied, with "/" between its parts whatever the source server's separator."""
    name = job.current_folder
    if not name or not job.is_active:
        return ""
    detail = (
        JobEvent.objects.filter(job=job, kind="folder_started", folder=name)
        .order_by("-id")
        .values_list("detail", flat=True)
        .first()
    )
    separator = detail.get("separator") if isinstance(detail, dict) and "separator" in detail else None
    if separator is not None and not isinstance(separator, str):
        separator = None
    # A server without hierarchy says NIL: the name is one part.
    return formatting.folder_text(name, separator if separator is not None or not detail else "")


def eta_seconds(job: SyncJob, figures: CopyFigures) -> float | None:
    """Seconds left, from the pace of the last few minutes (messages and bytes: the slower of the
    two decides, so many small messages at the end are not forgotten); None when unknown."""
    if job.status != JobStatus.RUNNING or not job.started_at:
        return None
    now = time.time()
    done = (float(job.bytes_copied), float(figures.handled))
    key = f"selfservice:eta:{job.pk}:{job.attempts}"
    try:
        samples = [s for s in cache.get(key) or [] if now - s[0] <= ETA_WINDOW_SECONDS]
        if not samples or now - samples[-1][0] >= 2:
            samples.append((now, *done))
            cache.set(key, samples[-100:], ETA_WINDOW_SECONDS * 2)
    except Exception:  # no cache: the average since the start
        samples = []
    if samples and now - samples[0][0] >= ETA_MIN_SPAN_SECONDS:
        span, base = now - samples[0][0], samples[0][1:]
    else:
        span, base = now - job.started_at.timestamp(), (0.0, 0.0)
        if job.percent_done < 1 or span < ETA_MIN_SPAN_SECONDS:
            return None
    byte_rate, message_rate = ((value - start) / span for value, start in zip(done, base, strict=True))
    left_bytes = max(0, job.bytes_total - job.bytes_copied)
    left_messages = max(0, job.messages_total - figures.handled)
    if not (left_bytes or left_messages):
        return 0.0
    estimates = []
    if left_bytes:
        estimates.append(left_bytes / byte_rate if byte_rate > 0 else None)
    if left_messages:
        estimates.append(left_messages / message_rate if message_rate > 0 else None)
    if None in estimates:
        return None  # no progress lately on one of them: no honest estimate
    return max(estimates)


def job_state(job: SyncJob) -> dict:
    """What anyone holding the link may see: state and progress, no account details."""
    figures = copy_figures(job)
    key = state_key(job, figures)
    label = FINISHED_WITH_ERRORS if key == "finished_with_errors" else JobStatus(job.status).label
    eta = eta_seconds(job, figures)
    state = {
        "status": job.status,
        "state": key,
        "status_label": str(label),
        "sentence": str(STATE_SENTENCES[key]),
        "percent": job.percent_done,
        "folders_total": job.folders_total,
        "folders_done": job.folders_done,
        "messages_total": job.messages_total,
        "messages_copied": job.messages_copied,
        "messages_new": figures.copied,
        "messages_present": figures.present,
        "messages_skipped": job.messages_skipped,
        "messages_failed": job.messages_failed,
        "bytes_copied": job.bytes_copied,
        **figure_texts(figures, active=job.is_active),
        "current_folder": current_folder_text(job),
        "error": error_message(job.error_code) if job.status == JobStatus.FAILED else "",
        "error_side": str(SIDE_MESSAGES.get(job.error_side, "")) if job.status == JobStatus.FAILED else "",
        "eta": formatting.approximate_duration_text(eta) if eta is not None else "",
        "ended": not job.is_active,
    }
    if not job.is_active and job.started_at and job.finished_at:
        state["duration"] = formatting.duration_text((job.finished_at - job.started_at).total_seconds())
    else:
        state["duration"] = ""
    return state


def _job_from_token(token: str) -> SyncJob:
    job = links.job_from_status_token(token)
    if job is None:
        raise Http404
    return job


# A failed copy whose OAuth access was withdrawn or refused offers to sign in again.
SIGN_IN_AGAIN_CODES = ("oauth_consent_revoked", "oauth_rejected")


def sign_in_offer(job: SyncJob, side: str) -> dict | None:
    """A "Sign in again with …" button for one side of `job`, if that account signed in with a
    service that is still configured."""
    account = job.source if side == "source" else job.destination
    if not account.uses_oauth:
        return None
    config = oauth.service_config(account.oauth_service)
    if config is None:
        return None
    return {
        "label": str(oauth.SIGN_IN_WITH) % {"service": config.display_name},
        "address": account.email_address,
        "side": side,
        "legend": SIDE_LEGENDS[side],
    }


def sign_in_again(job: SyncJob) -> dict | None:
    """What a failed copy's page offers when its OAuth access was withdrawn or refused: a button
    to sign in again to that side's mailbox (the same one), after which the copy resumes."""
    if job.status != JobStatus.FAILED or job.error_code not in SIGN_IN_AGAIN_CODES:
        return None
    if job.error_side not in ("source", "destination"):
        return None
    return sign_in_offer(job, job.error_side)


# --- Views -------------------------------------------------------------------------------------


@never_cache  # the page lists message subjects: no shared or browser cache keeps it
def job_status(request, token: str):
    job = _job_from_token(token)
    if job.status == JobStatus.FINISHED:
        states = services.job_password_states(job)
        # The passwords typed again have both been tested and work: the copy the customer asked for.
        found = {check.state for check in states.values()}
        if PasswordState.VERIFIED in found and found <= {PasswordState.KEPT, PasswordState.VERIFIED}:
            if _start_new_mail_copy(request, job):
                return redirect(status_url(job))
    return _render_job_status(request, job, token)


def _render_job_status(request, job: SyncJob, token: str, *, form: NewMailPasswordsForm | None = None, status=200):
    # Only the private link shows what was lost (subjects, folders): the lookup by address,
    # open to anyone who knows it, and the progress JSON show the counts alone.
    losses = [] if job.is_active else job_losses(job)
    return render(
        request,
        "selfservice/job_status.html",
        {
            "job": job,
            "state": job_state(job),
            "progress_url": reverse("selfservice:job-progress", kwargs={"token": token}),
            "losses": losses,
            "confirmation_url": reverse("selfservice:report-confirmation-send", kwargs={"token": token}),
            "new_mail": new_mail_context(job, token, form=form),
            "new_mail_result": new_mail_result_text(job),
            "status_link_days": settings.IMAPCOPY_STATUS_LINK_DAYS,
            "sign_in_again": sign_in_again(job),
            "sign_in_again_url": reverse("selfservice:oauth-resume", kwargs={"token": token}),
        },
        status=status,
    )


# --- Copy new mail again -----------------------------------------------------------------------


def new_mail_context(job: SyncJob, token: str, *, form: NewMailPasswordsForm | None = None) -> dict | None:
    """The "Copy new mail again" part of a finished copy's private page: a button when the
    passwords are kept, a form that asks them again when they were erased, a wait while the
    passwords typed again are tested."""
    if job.status != JobStatus.FINISHED:
        return None
    states = services.job_password_states(job)
    context = {
        "url": reverse("selfservice:copy-new-mail", kwargs={"token": token}),
        "keep_until": job.credentials_keep_until if job.keeps_credentials else None,
        "verified": [SIDE_LEGENDS[side] for side, check in states.items() if check.state == PasswordState.VERIFIED],
    }
    if any(check.state == PasswordState.TESTING for check in states.values()):
        return {**context, "testing": True}
    asked = [side for side, check in states.items() if check.state in _ASKED_STATES]
    if not asked:
        return {**context, "kept": True}
    # An account signed in with Google or Microsoft has no password to type again: its customer
    # signs in again (to the same mailbox), which stores new tokens and tests them.
    signed_in = [side for side in asked if getattr(job, side).uses_oauth]
    context["sign_in"] = [
        {**offer, "url": reverse("selfservice:oauth-new-mail", kwargs={"token": token, "side": side})}
        for side in signed_in
        if (offer := sign_in_offer(job, side)) is not None
    ]
    for side in signed_in:
        if states[side].state == PasswordState.FAILED:
            context.setdefault("sign_in_errors", []).append(
                f"{SIDE_LEGENDS[side]}: {error_message(states[side].error_code)}"
            )
    asked = [side for side in asked if side not in signed_in]
    if not asked:
        return context
    if form is None:
        form = NewMailPasswordsForm(job=job, sides=asked)
        for side in asked:
            if states[side].state == PasswordState.FAILED:
                form.show_check_error(side, states[side].error_code)
    return {**context, "form": form}


# The passwords the form asks for: erased, or typed again and refused.
_ASKED_STATES = (PasswordState.MISSING, PasswordState.FAILED)


def _start_new_mail_copy(request, job: SyncJob) -> bool:
    """Queue the job again to copy new mail; False (with a message for the customer, where there is
    something to say) when it cannot run now."""
    try:
        services.job_copy_new_mail(job=job, client=client_key(client_address(request)))
    except services.JobAlreadyActive:
        messages.error(request, NEW_MAIL_ALREADY_ACTIVE)
        return False
    except services.TooManyActiveJobs:
        count = settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT
        messages.error(request, NEW_MAIL_TOO_MANY_JOBS % {"count": count})
        return False
    except (services.CredentialsErased, services.InvalidJobState):
        return False  # the page says what there is to do (type the passwords again, or follow the copy)
    return True


@sensitive_post_parameters("source_password", "destination_password")
@require_http_methods(["POST"])
def copy_new_mail(request, token: str):
    """The private page's "Copy new mail again": with the passwords kept, the job is queued again at
    once; else the passwords typed again are tested first (the page waits for the answer)."""
    job = _job_from_token(token)
    if job.status != JobStatus.FINISHED:
        return redirect(status_url(job))  # under way already, or not a finished copy: its page says so
    states = services.job_password_states(job)
    if any(check.state == PasswordState.TESTING for check in states.values()):
        return redirect(status_url(job))
    asked = [side for side, check in states.items() if check.state in _ASKED_STATES]
    if not asked:
        _start_new_mail_copy(request, job)
        return redirect(status_url(job))
    form = NewMailPasswordsForm(request.POST, job=job, sides=asked)
    if not form.is_valid():
        return _render_job_status(request, job, token, form=form)
    # The same limits as the form's connection tests: a password form must not be a guessing machine.
    verdict = allow("test-ip", client_address(request), limit=20, window_seconds=600)
    for side in asked:
        account = getattr(job, side)
        if verdict:
            verdict = allow(
                "test-account", account_subject(login=account.login, host=account.host), limit=6, window_seconds=600
            )
    if not verdict:
        form.add_error(None, rate_limited_message(verdict))
        return _render_job_status(request, job, token, form=form, status=429)
    try:
        services.job_reenter_passwords(
            job=job, passwords={side: form.cleaned_data[f"{side}_password"] for side in asked}
        )
    except TooManyChecks:
        form.add_error(None, NEW_MAIL_TOO_MANY_CHECKS)
        return _render_job_status(request, job, token, form=form, status=429)
    except ChecksBusy:
        form.add_error(None, error_message("checks_busy"))
        return _render_job_status(request, job, token, form=form, status=503)
    except services.InvalidJobState:
        pass
    # The page waits for the tests' answer, then queues the copy (see job_status).
    return redirect(status_url(job))


def job_progress(request, token: str):
    job = _job_from_token(token)
    response = JsonResponse(job_state(job))
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["POST"])
def report_confirmation_send(request, token: str):
    """The private status page's "send the confirmation link again" (a lost or expired one)."""
    job = _job_from_token(token)
    if job.report_address_proven or not job.report_address:
        return redirect(status_url(job))
    if send_report_confirmation(request, job):
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
        job = links.job_from_confirmation_token(token)
    except links.ConfirmationLinkExpired:
        return render(request, "selfservice/report_confirm.html", {"expired": True}, status=410)
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


def send_status_link(request, job: SyncJob | None):
    """The "email me the link" of the lookup (and of the synchronize step when a copy of the
    mailbox is under way): within the limits per client and per job; the answer never says
    whether anything was sent. Returns the client's verdict (false: over its own limit, to say so)."""
    verdict = allow("lookup-link-ip", client_address(request), limit=5, window_seconds=3600)
    if not verdict:
        return verdict
    # Past the limit per job, nothing is sent but the answer stays the same.
    if job is not None and allow("lookup-link-job", str(job.public_id), limit=3, window_seconds=3600):
        try:
            services.job_send_status_link(job=job)
        except Exception:
            logger.exception("status link of job %s could not be sent", job.pk)
    return verdict


@never_cache
@require_http_methods(["GET", "POST"])
def status_lookup(request):
    """The public lookup by source address: a POST (the address stays out of access logs) that
    shows the state alone, as it is at that moment; the details and the live progress stay behind
    the private link, which it can email to the job's proven report address (and answers the same
    whether or not there is one)."""
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
        verdict = send_status_link(request, job)
        if not verdict:
            form.add_error(None, rate_limited_message(verdict))
            return render(request, "selfservice/status_lookup.html", context, status=429)
        context["link_sent"] = LOOKUP_LINK_SENT
    elif job is None:
        context["not_found"] = True
    else:
        now = timezone.localtime()
        context.update(
            status=job.status,
            status_label=JobStatus(job.status).label,
            looked_up_at=formats.time_format(now, "H:i:s"),
            time_zone=now.tzname(),
        )
    return render(request, "selfservice/status_lookup.html", context)
