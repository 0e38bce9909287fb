"""The admin's history (django.contrib.admin LogEntry) without the customers' addresses.

Each entry keeps the name of the object it is about as it was when it was written ("#12
alice@example.org"), and staff see it in "Recent actions": erasing a job's personal data, or
deleting the job, must also take them out of there. Entries keep who did what and when."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from apps.mailboxes.models import MailAccount
from apps.sync.models import SyncJob

ERASED = "[erased]"
_BATCH = 500  # objects per query: SQLite limits the number of query parameters


def personal_strings(job: SyncJob) -> set[str]:
    """What identifies the customers of a job: addresses, logins, servers they typed."""
    values = {job.source_address, job.source_mailbox, job.report_address}
    for account in (job.source, job.destination):
        values |= {account.email_address, account.login, account.host}
    # Too short to be anybody's (and replacing them would garble every message).
    return {value for value in values if value and len(value) >= 3}


def scrub_admin_history(jobs: Iterable[SyncJob]) -> int:
    """Rename the jobs' and their accounts' history entries "#<id>" and cut their addresses out of
    the change messages. The jobs come with `source` and `destination`, before anything is erased.
    Returns how many entries were rewritten."""
    job_type = ContentType.objects.get_for_model(SyncJob)
    account_type = ContentType.objects.get_for_model(MailAccount)
    rewritten = 0
    for batch in _batches(jobs):
        strings: dict[tuple[int, str], set[str]] = {}
        for job in batch:
            personal = personal_strings(job)
            strings.setdefault((job_type.pk, str(job.pk)), set()).update(personal)
            for account in (job.source, job.destination):
                strings.setdefault((account_type.pk, str(account.pk)), set()).update(personal)
        job_ids = [object_id for type_id, object_id in strings if type_id == job_type.pk]
        account_ids = [object_id for type_id, object_id in strings if type_id == account_type.pk]
        entries = LogEntry.objects.filter(
            Q(content_type=job_type, object_id__in=job_ids) | Q(content_type=account_type, object_id__in=account_ids)
        )
        for entry in entries:
            entry.object_repr = f"#{entry.object_id}"
            entry.change_message = _without(entry.change_message, strings[(entry.content_type_id, entry.object_id)])
            entry.save(update_fields=["object_repr", "change_message"])
            rewritten += 1
    return rewritten


def _batches(jobs: Iterable[SyncJob]) -> Iterator[list[SyncJob]]:
    batch = []
    for job in jobs:
        batch.append(job)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _without(text: str, personal: set[str]) -> str:
    if not text or not personal:
        return text
    # Longest first, so that an address goes whole rather than leaving its domain behind a login.
    pattern = "|".join(re.escape(value) for value in sorted(personal, key=len, reverse=True))
    return re.sub(pattern, ERASED, text, flags=re.IGNORECASE)
