"""The report emailed to the destination address when a job ends, in the customer's language,
and the job's figures (copied apart from already there) that the status page shows too.  What
was not copied, or not exactly, is listed by apps/sync/losses.py.

The report email says less than the status page: it goes to an address, and an address is not a
mailbox, so it carries counts and folder names only (quoted, escaped), never a subject, a keyword
or a server's answer, which whoever runs the source or destination server writes. It goes only to
an address proven to belong to the destination mailbox (see report_recipient); any other address
first receives a confirmation link, with fixed text and nothing from a mailbox."""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apps.mailboxes.models import MailAccount
from apps.providers.models import Provider
from apps.sync import formatting
from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.links import report_confirmation_url, site_url_for, status_url
from apps.sync.losses import event_count, job_losses
from apps.sync.models import NEW_MAIL_EVENT, JobEvent, JobStatus, SyncJob


@dataclasses.dataclass(frozen=True)
class CopyFigures:
    """A job's figures as the customer reads them: what this job copied apart from what it found
    already in the destination mailbox (a copy run again onto a full destination copies nothing,
    and must not say it copied everything)."""

    folders_total: int = 0
    folders_done: int = 0
    messages_total: int = 0
    copied: int = 0  # messages this job wrote into the destination
    copied_bytes: int = 0
    present: int = 0  # messages found already there, not copied again
    present_bytes: int = 0
    skipped: int = 0  # left out (too large)
    failed: int = 0  # refused by the destination

    @property
    def not_copied(self) -> int:
        return self.skipped + self.failed

    @property
    def handled(self) -> int:
        return self.copied + self.present + self.not_copied


def copy_figures(job: SyncJob) -> CopyFigures:
    """The job's counters split into copied and already there.

    The job's `messages_copied` and `bytes_copied` count both: the engine credits a message it
    finds on the destination as done. Its `already_present` events say how many (and, since they
    carry it, how many bytes) each run found there; a run killed before its checkpoint may find
    the same messages again, so the sum is capped by the counters."""
    present = present_bytes = without_bytes = 0
    for detail in JobEvent.objects.filter(job=job, kind="already_present").values_list("detail", flat=True):
        if not isinstance(detail, dict):
            continue
        found = event_count(detail.get("messages")) or 0
        nbytes = event_count(detail.get("bytes"))
        present += found
        if nbytes is None:
            without_bytes += found
        else:
            present_bytes += nbytes
    present = min(present, job.messages_copied)
    if without_bytes and job.messages_copied:  # events written before they carried sizes: the average
        present_bytes += job.bytes_copied * min(without_bytes, present) // job.messages_copied
    present_bytes = min(present_bytes, job.bytes_copied)
    return CopyFigures(
        folders_total=job.folders_total,
        folders_done=job.folders_done,
        messages_total=job.messages_total,
        copied=job.messages_copied - present,
        copied_bytes=job.bytes_copied - present_bytes,
        present=present,
        present_bytes=present_bytes,
        skipped=job.messages_skipped,
        failed=job.messages_failed,
    )


def _messages_and_size(count: int, nbytes: int) -> str:
    return ngettext("%(count)s message (%(size)s)", "%(count)s messages (%(size)s)", count) % {
        "count": formatting.count_text(count),
        "size": formatting.size_text(nbytes),
    }


def figure_texts(figures: CopyFigures, *, active: bool = False) -> dict[str, str]:
    """The status page's figures, each a text in the active language (the page and its progress
    JSON show the same)."""
    if figures.not_copied:
        not_copied = ngettext(
            "%(count)s message: %(too_large)s too large, %(refused)s refused by the destination",
            "%(count)s messages: %(too_large)s too large, %(refused)s refused by the destination",
            figures.not_copied,
        ) % {
            "count": formatting.count_text(figures.not_copied),
            "too_large": formatting.count_text(figures.skipped),
            "refused": formatting.count_text(figures.failed),
        }
    else:
        not_copied = _("none so far") if active else _("none")
    return {
        "folders_text": _("%(done)s of %(total)s")
        % {"done": formatting.count_text(figures.folders_done), "total": formatting.count_text(figures.folders_total)},
        "messages_total_text": formatting.count_text(figures.messages_total),
        "copied_text": _messages_and_size(figures.copied, figures.copied_bytes),
        "present_text": _messages_and_size(figures.present, figures.present_bytes),
        "not_copied_text": not_copied,
    }


def report_figure_lines(job: SyncJob, figures: CopyFigures) -> list[str]:
    """The report email's figures, one sentence each."""
    lines = [
        _("Folders copied: %(done)s of %(total)s")
        % {"done": formatting.count_text(figures.folders_done), "total": formatting.count_text(figures.folders_total)},
        _("Messages in the source mailbox: %(count)s") % {"count": formatting.count_text(figures.messages_total)},
        _("Copied: %(messages)s") % {"messages": _messages_and_size(figures.copied, figures.copied_bytes)},
    ]
    if figures.present:
        lines.append(
            _("Already in this mailbox, not copied again: %(messages)s")
            % {"messages": _messages_and_size(figures.present, figures.present_bytes)}
        )
    if job.started_at and job.finished_at:
        seconds = (job.finished_at - job.started_at).total_seconds()
        lines.append(_("Duration: %(duration)s") % {"duration": formatting.duration_text(seconds)})
    return lines


@dataclasses.dataclass(frozen=True)
class NewMailFigures:
    """What the latest "copy new mail again" found: messages copied this time, and messages that
    were already in the destination (copied before, or found there)."""

    copied: int
    copied_bytes: int
    present: int


def _count(value) -> int:
    return event_count(value) or 0


def job_new_mail_figures(job: SyncJob) -> NewMailFigures | None:
    """The figures of the job's latest "copy new mail again"; None when it never had one.

    The job's counters are cumulative (every run); the pass's start recorded them, and the
    messages its reconciliation found on the destination count as already there."""
    marker = JobEvent.objects.filter(job=job, kind=NEW_MAIL_EVENT).order_by("-id").values_list("id", "detail").first()
    if marker is None:
        return None
    marker_id, detail = marker
    detail = detail if isinstance(detail, dict) else {}
    found = found_bytes = 0
    for event in JobEvent.objects.filter(job=job, kind="already_present", id__gt=marker_id).values_list(
        "detail", flat=True
    ):
        if isinstance(event, dict):
            found += _count(event.get("messages"))
            found_bytes += _count(event.get("bytes"))
    copied = max(0, job.messages_copied - _count(detail.get("messages_copied")) - found)
    copied_bytes = max(0, job.bytes_copied - _count(detail.get("bytes_copied")) - found_bytes)
    return NewMailFigures(copied=copied, copied_bytes=copied_bytes, present=max(0, job.messages_copied - copied))


def new_mail_result_text(job: SyncJob) -> list[str]:
    """What the latest "copy new mail again" of a finished job found, in a sentence or two."""
    if job.status != JobStatus.FINISHED:
        return []
    figures = job_new_mail_figures(job)
    if figures is None:
        return []
    if not figures.copied:
        return [_("No new mail since the previous copy: every message was already in the destination mailbox.")]
    copied = ngettext(
        "New mail copied this time: %(count)s message (%(size)s).",
        "New mail copied this time: %(count)s messages (%(size)s).",
        figures.copied,
    ) % {"count": formatting.count_text(figures.copied), "size": formatting.size_text(figures.copied_bytes)}
    present = ngettext(
        "Already in the destination mailbox, not copied again: %(count)s message.",
        "Already in the destination mailbox, not copied again: %(count)s messages.",
        figures.present,
    ) % {"count": formatting.count_text(figures.present)}
    return [copied, present]


def report_context(job: SyncJob) -> dict:
    losses = job_losses(job, for_email=True)
    figures = copy_figures(job)
    return {
        "job": job,
        "status": job.status,
        "status_label": JobStatus(job.status).label,
        "error": error_message(job.error_code) if job.status == JobStatus.FAILED else "",
        "error_side": SIDE_MESSAGES.get(job.error_side, "") if job.status == JobStatus.FAILED else "",
        "figures": figures,
        # After "copy new mail again", what that pass found comes first.
        "figure_lines": new_mail_result_text(job) + report_figure_lines(job, figures),
        "all_present": job.status == JobStatus.FINISHED
        and figures.present > 0
        and not figures.copied
        and not figures.not_copied,
        "losses": losses,
        # The subjects of those messages are on the private status page, not in the email.
        "messages_on_page": any(section.kind in ("not_copied", "altered") for section in losses),
        "status_url": status_url(job, absolute=True),
        "site_url": site_url_for(job),
    }


def login_address(account: MailAccount) -> str:
    """The address the destination login proves, or "".

    A login proves an address only when a provider's own server accepted it: the provider
    hands out that address with that mailbox. A server the customer typed proves nothing (its
    owner can accept any login), nor does a login that is no address.  An account signed in
    with Google or Microsoft proves its address by the provider's ID token."""
    if account.uses_oauth and account.login and account.login.lower() == account.email_address.lower():
        return account.login.lower()
    provider = account.provider
    fixed = provider.imap_host.strip().rstrip(".").lower()
    if not fixed or account.host.strip().rstrip(".").lower() != fixed:
        return ""
    login = account.login.strip()
    if provider.login_format == Provider.LoginFormat.LOCAL_PART and provider.email_domain:
        login = f"{login.split('@', 1)[0]}@{provider.email_domain}"
    try:
        validate_email(login)
    except ValidationError:
        return ""
    return login.lower()


def report_recipient(destination: MailAccount) -> tuple[str, bool]:
    """Where a job's report goes, and whether that address is proven already (else it must be
    confirmed by a link sent to it)."""
    proven = login_address(destination)
    if proven:
        return proven, True
    return destination.email_address.strip().lower(), False


def _send(job: SyncJob, template: str, make_context, to: str) -> None:
    """One email in the job's language (its links too: they carry the language prefix)."""
    with translation.override(job.language or settings.LANGUAGE_CODE):
        context = make_context()
        subject = render_to_string(f"sync/email/{template}_subject.txt", context).strip()
        text = render_to_string(f"sync/email/{template}.txt", context)
        html = render_to_string(f"sync/email/{template}.html", context)
    message = EmailMultiAlternatives(subject, text, to=[to])
    message.attach_alternative(html, "text/html")
    message.send()


def send_report(job: SyncJob) -> None:
    """Email the report to the job's report address; the caller made sure it is proven."""
    if not job.report_address_proven:
        raise ValueError(f"job {job.pk}: the report address is not proven")
    _send(job, "report", lambda: report_context(job), job.report_address)


def send_confirmation(job: SyncJob) -> None:
    """Email the link that confirms the report address: fixed text, the address itself and the
    link, nothing typed by the customer or read from a mailbox."""

    def context() -> dict:
        return {
            "address": job.report_address,
            "confirm_url": report_confirmation_url(job, absolute=True),
            "days": settings.IMAPCOPY_REPORT_CONFIRMATION_DAYS,
            "site_url": site_url_for(job),
        }

    _send(job, "confirm_address", context, job.report_address)


def send_status_link(job: SyncJob) -> None:
    """Email the private status link to the job's proven report address (the public lookup's
    "email me the link")."""
    _send(
        job,
        "status_link",
        lambda: {"status_url": status_url(job, absolute=True), "site_url": site_url_for(job)},
        job.report_address,
    )
