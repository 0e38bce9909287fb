import datetime

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync.models import ACTIVE_STATUSES, JobStatus
from apps.sync.services import REENTERED_PASSWORD_MINUTES


class Command(BaseCommand):
    help = (
        "Delete accounts entered in the form but never synchronized, and erase the passwords of "
        "failed or cancelled jobs once their grace period for a retry is over, and of finished jobs "
        "whose customer asked to keep them (to copy new mail again) once that time is over."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        abandoned_before = now - datetime.timedelta(minutes=settings.IMAPCOPY_ABANDONED_ACCOUNT_MINUTES)
        abandoned, _detail = MailAccount.objects.filter(
            created_at__lt=abandoned_before, jobs_as_source=None, jobs_as_destination=None
        ).delete()
        grace_before = now - datetime.timedelta(hours=settings.IMAPCOPY_CREDENTIAL_GRACE_HOURS)
        retyped_since = now - datetime.timedelta(minutes=REENTERED_PASSWORD_MINUTES)

        def accounts_of(**job_filter) -> set[int]:
            """The accounts (either side) of the jobs that match `job_filter`."""
            pks = set()
            for side in ("jobs_as_source", "jobs_as_destination"):
                lookups = {f"{side}__{name}": value for name, value in job_filter.items()}
                matching = MailAccount.objects.filter(**lookups)
                pks.update(matching.values_list("pk", flat=True))
            return pks

        keep = (
            accounts_of(status__in=ACTIVE_STATUSES)
            # A failed or cancelled job keeps them for staff's retry; a finished one erased them at
            # its end, unless its customer asked to keep them to copy new mail again.
            | accounts_of(status__in=[JobStatus.FAILED, JobStatus.CANCELLED], finished_at__gte=grace_before)
            | accounts_of(credentials_keep_until__gt=now)
        )
        erased = (
            MailAccount.objects.exclude(password_ciphertext="")
            .exclude(pk__in=keep)
            .filter(created_at__lt=grace_before)
            # Typed again on a finished job's page to copy new mail: being tested, about to be used.
            .exclude(check_requested_at__gte=retyped_since)
            .update(password_ciphertext="", password_erased_at=now)
        )
        self.stdout.write(f"Deleted {abandoned} abandoned account(s); erased {erased} password(s).")
