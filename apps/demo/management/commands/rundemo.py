"""The portal with two local Dovecot servers and a sample mailbox, to try a whole copy in the
browser without real accounts. Everything lives in var/demo/ and is started afresh each time."""

import os
import shutil

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.localmail.dovecot import DovecotServer, Profile
from apps.localmail.mail import Account, build_corpus, upload

SAMPLE_MESSAGES = 300
# Fixed ports, so the README can say what to type; random ones when these are taken.
DEMO_PORTS = {"source": (14391, 19991), "destination": (14392, 19992)}


def _ports_free(*ports: int) -> bool:
    import socket

    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class Command(BaseCommand):
    help = "Run the portal with two local demo IMAP servers (Debian's dovecot-imapd) and a sample mailbox."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr, **options):
        demo_dir = settings.VAR_DIR / "demo"
        shutil.rmtree(demo_dir, ignore_errors=True)
        demo_dir.mkdir(parents=True)
        source = DovecotServer(Profile.dot(), directory=demo_dir / "source")
        destination = DovecotServer(Profile.slash(), directory=demo_dir / "destination")
        for server, role in ((source, "source"), (destination, "destination")):
            if _ports_free(*DEMO_PORTS[role]):
                server.port, server.tls_port = DEMO_PORTS[role]
        source.start()
        try:
            destination.start()
            source_user = source.new_user(password="demo-source")  # noqa: S106 - a public demo
            destination_user = destination.new_user(password="demo-destination")  # noqa: S106
            self.stdout.write(f"Filling the demo source mailbox with {SAMPLE_MESSAGES} sample messages…")
            account = Account(source.host, source.port, source_user.login, source_user.password, "INBOX.", ".")
            upload(account, build_corpus(seed=7, messages=SAMPLE_MESSAGES))
            bundle = demo_dir / "demo-ca.pem"
            bundle.write_text(source.cert_file.read_text() + destination.cert_file.read_text())
            os.environ.update(
                IMAPCOPY_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
                IMAPCOPY_CA_FILE=str(bundle),
                EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
                EMAIL_FILE_PATH=str(settings.VAR_DIR / "sent-mail"),
            )
            self.stdout.write(
                self.style.SUCCESS("Demo accounts (choose the service “Other”, open “Advanced settings”):")
                + f"\n  source:      login {source_user.login}  password {source_user.password}"
                f"  server localhost  port {source.tls_port}  SSL on"
                f"\n  destination: login {destination_user.login}  password {destination_user.password}"
                f"  server localhost  port {destination.tls_port}  SSL on"
                f"\n  email address: any, e.g. demo@example.org"
                f"\nReports are written to {settings.VAR_DIR / 'sent-mail'}/ (one .log file per email)."
            )
            call_command("runportal", addr=addr)
        finally:
            destination.stop()
            source.stop()
