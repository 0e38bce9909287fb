import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync.models import ACTIVE_STATUSES


class Command(BaseCommand):
    help = (
        "Delete accounts entered in the form but never synchronized, and erase the passwords of "
        "failed or cancelled jobs once their grace period for a retry is over."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        abandoned_before = now - datetime.timedelta(minutes=settings.IMAPCOPY_ABANDONED_ACCOUNT_MINUTES)
        abandoned, _detail = MailAccount.objects.filter(
            created_at__lt=abandoned_before, jobs_as_source=None, jobs_as_destination=None
        ).delete()
        grace_before = now - datetime.timedelta(hours=settings.IMAPCOPY_CREDENTIAL_GRACE_HOURS)
        still_needed = (
            MailAccount.objects.filter(jobs_as_source__status__in=ACTIVE_STATUSES)
            .values("pk")
            .union(MailAccount.objects.filter(jobs_as_destination__status__in=ACTIVE_STATUSES).values("pk"))
        )
        recent = (
            MailAccount.objects.filter(jobs_as_source__finished_at__gte=grace_before)
            .values("pk")
            .union(MailAccount.objects.filter(jobs_as_destination__finished_at__gte=grace_before).values("pk"))
        )
        keep = {row["pk"] for row in still_needed} | {row["pk"] for row in recent}
        erased = (
            MailAccount.objects.exclude(password_ciphertext="")
            .exclude(pk__in=keep)
            .filter(created_at__lt=grace_before)
            .update(password_ciphertext="", password_erased_at=now)
        )
        self.stdout.write(f"Deleted {abandoned} abandoned account(s); erased {erased} password(s).")
