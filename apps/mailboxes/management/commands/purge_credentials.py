from django.core.management.base import BaseCommand

from apps.sync import services


class Command(BaseCommand):
    help = (
        "Delete accounts entered in the form but never synchronized, and erase the passwords of "
        "failed or cancelled jobs once their grace period for a retry is over, and of finished jobs "
        "whose customer asked to keep them (to copy new mail again) once that time is over."
    )

    def handle(self, *args, **options):
        purged = services.credentials_purge_expired()
        self.stdout.write(
            f"Deleted {purged.abandoned_accounts} abandoned account(s); erased {purged.erased_secrets} password(s)."
        )
