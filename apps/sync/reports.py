"""The report emailed to the destination address when a job ends, in the customer's language,
and its losses (what was not copied, what was stored inexactly), which the customer's status
page and the staff's job page show too.

The losses come from the job's events (see the engine's event kinds): `summary` (the last one
has the job's final, cumulative figures), `message_skipped`, `message_failed`, `message_altered`,
`keyword_dropped`, `archived_found`, `folder_refused` and `folder_renamed`. Each is said in
whole translated sentences built here, in the active language; subjects, dates, folder names,
keywords and server answers come from mailboxes and servers, so they are cleaned (no control
or direction characters, shortened) and left for the templates to escape.

The report email says less than the status page: it goes to an address, and an address is not a
mailbox, so it carries counts and folder names only (quoted, escaped), never a subject, a keyword
or a server's answer, which whoever runs the source or destination server writes. It goes only to
an address proven to belong to the destination mailbox (see report_recipient); any other address
first receives a confirmation link, with fixed text and nothing from a mailbox."""

from __future__ import annotations

import dataclasses
import email.utils
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.template.loader import render_to_string
from django.utils import formats, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apps.mailboxes.models import MailAccount
from apps.providers.models import Provider
from apps.sync import formatting
from apps.sync.error_messages import SIDE_MESSAGES, error_message
from apps.sync.models import JobEvent, JobStatus, SyncJob

MAX_LISTED_PROBLEMS = 50  # per list (messages not copied, altered, folders)
MAX_COUNTED_EVENTS = 20_000  # events read to count a report's losses per folder
MAX_LISTED_KEYWORDS = 30
SUBJECT_CHARS = 120
FOLDER_CHARS = 200
ANSWER_CHARS = 200
KEYWORD_CHARS = 60
DATE_CHARS = 60

NOT_COPIED_KINDS = ("message_skipped", "message_failed")
FOLDER_KINDS = ("folder_refused", "folder_renamed")

# C0/C1 controls, line and paragraph separators, and the bidirectional overrides and isolates
# (which could make a subject display as something else); each becomes a space.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_SPACES = re.compile(r"\s+")


def clean_text(value, limit: int) -> str:
    """Text from a mailbox or a server made safe to show on one line: no control or direction
    characters, spaces collapsed, at most `limit` characters (an ellipsis marks a cut)."""
    if value is None:
        return ""
    text = _SPACES.sub(" ", _UNSAFE.sub(" ", str(value))).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _date_text(raw) -> str:
    """A Date header as a date in the reader's language, or the header cleaned if unparseable."""
    text = clean_text(raw, DATE_CHARS)
    if not text:
        return _("date unknown")
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return text
    return formats.date_format(moment, "DATE_FORMAT")


def _size_text(value) -> str:
    size = _count(value)
    return formatting.size_text(size) if size is not None else "—"


@dataclasses.dataclass
class LossSection:
    """One kind of loss: a sentence, the list it introduces (maybe empty), an "and N more" line."""

    kind: str  # not_copied, altered, flags, archived, folders (also a CSS hook)
    heading: str
    lines: list[str] = dataclasses.field(default_factory=list)
    more: str = ""


def _more(total: int, listed: int) -> str:
    rest = total - listed
    if listed <= 0 or rest <= 0:
        return ""
    return ngettext("… and %(count)s more.", "… and %(count)s more.", rest) % {"count": rest}


def _last_summary(job: SyncJob) -> dict | None:
    event = JobEvent.objects.filter(job=job, kind="summary").order_by("-id").first()
    if event is None or not isinstance(event.detail, dict) or not event.detail:
        return None
    return event.detail


def _last_run_start(job: SyncJob) -> int:
    """Events after this id belong to the job's last engine run: the one before ended with its own
    summary.  That run tried again every message an earlier one left behind, so what it could not
    copy is the whole list (a message refused once and copied since is no loss)."""
    previous = JobEvent.objects.filter(job=job, kind="summary").order_by("-id").values_list("id", flat=True)[1:2]
    return previous[0] if previous else 0


def _distinct_events(job: SyncJob, kinds: tuple[str, ...], limit: int, key, since_id: int = 0) -> list[JobEvent]:
    """The first `limit` distinct events of these kinds; a message (or folder) met again by a
    later run is listed once, with what its latest event says."""
    found: dict = {}
    events = JobEvent.objects.filter(job=job, kind__in=kinds, id__gt=since_id).order_by("id")
    for event in events[: limit * 4]:
        if not isinstance(event.detail, dict) or not (event.detail or event.folder):
            continue  # personal data erased: the counts stay, the list goes
        found[key(event)] = event
    return list(found.values())[:limit]


def _message_key(event: JobEvent):
    uid = event.detail.get("uid")
    return (event.folder, uid) if uid is not None else ("", event.pk)


def _reason_text(event: JobEvent) -> str:
    reason = event.detail.get("reason")
    size = _size_text(event.detail.get("size"))
    if event.kind == "message_failed":
        answer = clean_text(reason, ANSWER_CHARS)
        if answer:
            return _("refused by the destination: %(answer)s") % {"answer": answer}
        return _("refused by the destination")
    if event.kind == "message_altered":
        if reason == "headers_rewritten":
            return _("the destination rewrote some of its headers")
        return _("changed by the destination")
    if reason == "too_large":
        return _("too large for the destination (%(size)s)") % {"size": size}
    if reason == "rejected_too_large":
        return _("refused by the destination because of its size (%(size)s)") % {"size": size}
    return _("left out of the copy")


def message_line(event: JobEvent) -> str:
    values = {
        "subject": clean_text(event.detail.get("subject"), SUBJECT_CHARS),
        "date": _date_text(event.detail.get("date")),
        "folder": clean_text(event.folder, FOLDER_CHARS) or "—",
        "reason": _reason_text(event),
    }
    if not values["subject"]:
        return _("A message without a subject (%(date)s) in %(folder)s — %(reason)s") % values
    return _("“%(subject)s” (%(date)s) in %(folder)s — %(reason)s") % values


def _folder_line(event: JobEvent, quote=str) -> str:
    folder = quote(clean_text(event.folder, FOLDER_CHARS) or "—")
    if event.kind == "folder_refused":
        return _(
            "The folder %(folder)s was not copied: its name contains control characters that cannot be used safely."
        ) % {"folder": folder}
    new_name = quote(clean_text(event.detail.get("to"), FOLDER_CHARS) or "—")
    return _("The folder %(folder)s was copied as %(new_name)s, because the destination refused its name.") % {
        "folder": folder,
        "new_name": new_name,
    }


def _keywords(job: SyncJob) -> list[str]:
    keywords: dict[str, str] = {}
    for detail in JobEvent.objects.filter(job=job, kind="keyword_dropped").values_list("detail", flat=True):
        listed = detail.get("keywords") if isinstance(detail, dict) else None
        if isinstance(listed, str):
            listed = [listed]
        for keyword in listed or []:
            text = clean_text(keyword, KEYWORD_CHARS)
            if text:
                keywords.setdefault(text.casefold(), text)
    return [keywords[key] for key in sorted(keywords)]


def _quoted(folder: str) -> str:
    """A folder name shown as data, not as part of the sentence around it."""
    return _("“%(folder)s”") % {"folder": folder}


def _folder_count_lines(job: SyncJob, kinds: tuple[str, ...], since_id: int = 0) -> tuple[list[str], str]:
    """How many distinct messages of these kinds each folder holds, one line per folder (the
    report email's list: folder names and counts, no subject)."""
    messages: dict[str, set] = {}
    events = JobEvent.objects.filter(job=job, kind__in=kinds, id__gt=since_id).order_by("id")
    for number, (folder, detail) in enumerate(events.values_list("folder", "detail")[:MAX_COUNTED_EVENTS]):
        if not isinstance(detail, dict) or not (detail or folder):
            continue  # personal data erased
        uid = detail.get("uid")
        messages.setdefault(folder, set()).add(uid if uid is not None else f"event-{number}")
    lines = [
        ngettext("“%(folder)s”: %(count)s message", "“%(folder)s”: %(count)s messages", len(uids))
        % {"folder": clean_text(folder, FOLDER_CHARS) or "—", "count": len(uids)}
        for folder, uids in list(messages.items())[:MAX_LISTED_PROBLEMS]
    ]
    return lines, _more(len(messages), len(lines))


def job_losses(job: SyncJob, *, for_email: bool = False) -> list[LossSection]:
    """What the job did not copy or stored inexactly, one section per kind, in the active language.

    `for_email`: the report email's version, counts per folder and folder names only (quoted)."""
    summary = _last_summary(job) or {}
    sections: list[LossSection] = []
    quote = _quoted if for_email else str

    not_copied = _count(summary.get("not_copied"))
    if not_copied is None:
        not_copied = job.messages_skipped + job.messages_failed
    if not_copied:
        events = _distinct_events(job, NOT_COPIED_KINDS, MAX_LISTED_PROBLEMS, _message_key, _last_run_start(job))
        if job.status == JobStatus.FINISHED:
            heading = ngettext("%(count)s message was not copied:", "%(count)s messages were not copied:", not_copied)
        else:
            heading = ngettext(
                "%(count)s message could not be copied so far:",
                "%(count)s messages could not be copied so far:",
                not_copied,
            )
        if for_email:
            lines, more = _folder_count_lines(job, NOT_COPIED_KINDS, _last_run_start(job))
        else:
            lines = [message_line(event) for event in events]
            more = _more(not_copied, len(lines))
        sections.append(LossSection("not_copied", heading % {"count": not_copied}, lines, more))

    altered_events = _distinct_events(job, ("message_altered",), MAX_LISTED_PROBLEMS, _message_key)
    altered = _count(summary.get("altered"))
    if altered is None:
        altered = JobEvent.objects.filter(job=job, kind="message_altered").count()
    if altered:
        heading = ngettext(
            "%(count)s message was copied but changed by the destination "
            "(it is in the destination mailbox, but not exactly as in the source):",
            "%(count)s messages were copied but changed by the destination "
            "(they are in the destination mailbox, but not exactly as in the source):",
            altered,
        )
        if for_email:
            lines, more = _folder_count_lines(job, ("message_altered",))
        else:
            lines = [message_line(event) for event in altered_events]
            more = _more(altered, len(lines))
        sections.append(LossSection("altered", heading % {"count": altered}, lines, more))

    keywords = [] if for_email else _keywords(job)  # a keyword is text from the mailbox
    keywords_text = ", ".join(keywords[:MAX_LISTED_KEYWORDS]) + (", …" if len(keywords) > MAX_LISTED_KEYWORDS else "")
    flags_dropped = _count(summary.get("flags_dropped"))
    if flags_dropped and keywords:
        heading = ngettext(
            "%(count)s message was copied without some of its labels or flags, "
            "which the destination cannot store: %(keywords)s",
            "%(count)s messages were copied without some of their labels or flags, "
            "which the destination cannot store: %(keywords)s",
            flags_dropped,
        ) % {"count": flags_dropped, "keywords": keywords_text}
        sections.append(LossSection("flags", heading))
    elif flags_dropped:
        heading = ngettext(
            "%(count)s message was copied without some of its labels or flags, which the destination cannot store.",
            "%(count)s messages were copied without some of their labels or flags, which the destination cannot store.",
            flags_dropped,
        ) % {"count": flags_dropped}
        sections.append(LossSection("flags", heading))
    elif for_email and flags_dropped is None and JobEvent.objects.filter(job=job, kind="keyword_dropped").exists():
        heading = _(
            "Some messages were copied without some of their labels or flags, which the destination cannot store."
        )
        sections.append(LossSection("flags", heading))
    elif keywords and flags_dropped is None:  # no final figures (an older or interrupted job)
        heading = _(
            "Some messages were copied without these labels or flags, which the destination cannot store: %(keywords)s"
        ) % {"keywords": keywords_text}
        sections.append(LossSection("flags", heading))

    archived = summary.get("archived") if isinstance(summary.get("archived"), dict) else None
    if archived:
        found, copied = _count(archived.get("found")) or 0, _count(archived.get("copied")) or 0
        folder = quote(clean_text(archived.get("folder"), FOLDER_CHARS) or "—")
        if found and copied >= found:
            heading = ngettext(
                "%(count)s archived message (without a label) was copied into %(folder)s.",
                "%(count)s archived messages (without a label) were copied into %(folder)s.",
                copied,
            ) % {"count": copied, "folder": folder}
            sections.append(LossSection("archived", heading))
        elif found:
            heading = _("Archived messages (without a label): %(copied)s of %(found)s copied into %(folder)s.") % {
                "copied": copied,
                "found": found,
                "folder": folder,
            }
            sections.append(LossSection("archived", heading))
    elif not summary:
        event = JobEvent.objects.filter(job=job, kind="archived_found").order_by("-id").first()
        found = _count(event.detail.get("messages")) if event and isinstance(event.detail, dict) else None
        if found:
            folder = quote(clean_text(event.detail.get("destination"), FOLDER_CHARS) or "—")
            heading = ngettext(
                "%(count)s archived message (without a label) was found, to be copied into %(folder)s.",
                "%(count)s archived messages (without a label) were found, to be copied into %(folder)s.",
                found,
            ) % {"count": found, "folder": folder}
            sections.append(LossSection("archived", heading))

    folder_events = _distinct_events(job, FOLDER_KINDS, MAX_LISTED_PROBLEMS, lambda event: event.folder)
    if folder_events:
        total = len({event.folder for event in JobEvent.objects.filter(job=job, kind__in=FOLDER_KINDS).only("folder")})
        heading = ngettext(
            "%(count)s folder could not be copied as it is:",
            "%(count)s folders could not be copied as they are:",
            total,
        ) % {"count": total}
        lines = [_folder_line(event, quote) for event in folder_events]
        sections.append(LossSection("folders", heading, lines, _more(total, len(lines))))
    return sections


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
        found = _count(detail.get("messages")) or 0
        nbytes = _count(detail.get("bytes"))
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


def report_context(job: SyncJob) -> dict:
    from apps.selfservice.status_views import site_url_for, status_url  # the portal owns its links

    losses = job_losses(job, for_email=True)
    figures = copy_figures(job)
    return {
        "job": job,
        "status": job.status,
        "status_label": JobStatus(job.status).label,
        "error": error_message(job.error_code) if job.status == JobStatus.FAILED else "",
        "error_side": SIDE_MESSAGES.get(job.error_side, "") if job.status == JobStatus.FAILED else "",
        "figures": figures,
        "figure_lines": report_figure_lines(job, figures),
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
    owner can accept any login), nor does a login that is no address."""
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
    from apps.selfservice.status_views import report_confirmation_url, site_url_for

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
    from apps.selfservice.status_views import site_url_for, status_url

    _send(
        job,
        "status_link",
        lambda: {"status_url": status_url(job, absolute=True), "site_url": site_url_for(job)},
        job.report_address,
    )
