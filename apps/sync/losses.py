"""What a job did not copy, or did not copy exactly, as the customer's status page, the staff's
job page and the report email list it: whole translated sentences built from the job's events
(`message_skipped`, `message_failed`, `message_altered`, `keyword_dropped`, `archived_found`,
`folder_refused`, `folder_renamed`; the last `summary` has the job's final figures).  Subjects,
dates, folder names, keywords and server answers come from mailboxes and servers: they are
cleaned here (no control or direction characters, shortened) and left for the templates to
escape.  The email gets less (`for_email`): counts and quoted folder names only."""

from __future__ import annotations

import dataclasses
import email.utils
import re

from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from apps.sync import formatting
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


def event_count(value) -> int | None:
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
    size = event_count(value)
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

    not_copied = event_count(summary.get("not_copied"))
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
    altered = event_count(summary.get("altered"))
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
    flags_dropped = event_count(summary.get("flags_dropped"))
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
        found, copied = event_count(archived.get("found")) or 0, event_count(archived.get("copied")) or 0
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
        found = event_count(event.detail.get("messages")) if event and isinstance(event.detail, dict) else None
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
