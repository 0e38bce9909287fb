from django.core.management.base import BaseCommand

from apps.mailboxes.services import credentials_reencrypt_all


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored account secret (passwords, and the tokens of accounts signed in with "
        "Google or Microsoft) with the newest key in CREDENTIAL_KEYS. "
        "Run it after prepending a new key, then drop the old key from the setting."
    )

    def handle(self, *args, **options):
        changed = credentials_reencrypt_all()
        message = f"Re-encrypted {changed} stored secret(s) (passwords or sign-in tokens) under the newest key."
        self.stdout.write(self.style.SUCCESS(message))
