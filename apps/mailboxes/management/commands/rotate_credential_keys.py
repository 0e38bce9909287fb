from django.core.management.base import BaseCommand

from apps.mailboxes.services import credentials_reencrypt_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored account password with the newest key in CREDENTIAL_KEYS. "
        "Run it after prepending a new key, then drop the old key from the setting."
    )

    def handle(self, *args, **options):
        changed = credentials_reencrypt_all()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {changed} stored password(s) under the newest key."))
