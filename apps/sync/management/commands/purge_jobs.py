import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync.history import scrub_admin_history
from apps.sync.models import ENDED_STATUSES, SyncJob


class Command(BaseCommand):
    help = "Delete jobs that ended more than IMAPCOPY_RETENTION_DAYS ago, and accounts nothing uses any more."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="override IMAPCOPY_RETENTION_DAYS")

    def handle(self, *args, days, **options):
        days = days if days is not None else settings.IMAPCOPY_RETENTION_DAYS
        cutoff = timezone.now() - datetime.timedelta(days=days)
        with transaction.atomic():
            old = SyncJob.objects.filter(status__in=ENDED_STATUSES, finished_at__lt=cutoff)
            # The admin's history keeps who did what to these jobs, but not whose they were.
            scrub_admin_history(old.select_related("source", "destination").iterator(chunk_size=500))
            account_ids = set(old.values_list("source_id", flat=True)) | set(
                old.values_list("destination_id", flat=True)
            )
            jobs_deleted, _detail = old.delete()
            accounts_deleted, _detail = MailAccount.objects.filter(
                pk__in=account_ids, jobs_as_source=None, jobs_as_destination=None
            ).delete()
        self.stdout.write(f"Deleted {jobs_deleted} row(s) of jobs ended before {cutoff:%Y-%m-%d} and "
                          f"{accounts_deleted} unused account(s).")  # fmt: skip
