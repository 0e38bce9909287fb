import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from apps.sync import services


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
        purged = services.jobs_purge_ended(ended_before=cutoff, dry_run=dry_run)
        jobs, accounts = purged.jobs, purged.accounts
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {_count(jobs, 'job')} that ended before {cutoff:%Y-%m-%d %H:%M} and "
            f"{_count(accounts, 'account')} no other job uses."
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
