import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync.history import scrub_admin_history
from apps.sync.models import ENDED_STATUSES, SyncJob


class Command(BaseCommand):
    help = (
        "Delete jobs that ended more than IMAPCOPY_RETENTION_DAYS ago (with their folders and events), "
        "and the accounts no job uses any more."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=settings.IMAPCOPY_RETENTION_DAYS,
            help="delete jobs that ended more than this many days ago (default: IMAPCOPY_RETENTION_DAYS, %(default)s)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="only count what would be deleted, delete nothing (default: delete)",
        )

    def handle(self, *args, days, dry_run, **options):
        cutoff = timezone.now() - datetime.timedelta(days=days)
        with transaction.atomic():
            old = SyncJob.objects.filter(status__in=ENDED_STATUSES, finished_at__lt=cutoff)
            account_ids = set(old.values_list("source_id", flat=True)) | set(
                old.values_list("destination_id", flat=True)
            )
            # Accounts that only these jobs use go with them.
            kept = SyncJob.objects.exclude(pk__in=old.values("pk"))
            unused = (
                MailAccount.objects.filter(pk__in=account_ids)
                .exclude(jobs_as_source__in=kept)
                .exclude(jobs_as_destination__in=kept)
            )
            if dry_run:
                jobs, accounts = old.count(), unused.count()
            else:
                # The admin's history keeps who did what to these jobs, but not whose they were.
                scrub_admin_history(old.select_related("source", "destination").iterator(chunk_size=500))
                _total, per_model = old.delete()
                jobs = per_model.get(SyncJob._meta.label, 0)
                _total, per_model = MailAccount.objects.filter(
                    pk__in=account_ids, jobs_as_source=None, jobs_as_destination=None
                ).delete()
                accounts = per_model.get(MailAccount._meta.label, 0)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {_count(jobs, 'job')} that ended before {cutoff:%Y-%m-%d %H:%M} and "
            f"{_count(accounts, 'account')} no other job uses."
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
