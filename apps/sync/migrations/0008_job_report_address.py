"""The report goes to an address proven to belong to the destination mailbox (issue 12, finding 2).

Existing jobs get the address the rule gives today: the destination login when a provider's own
server accepted it and it is an address, else the typed address, which then waits for a
confirmation (none was ever sent: the customer asks for one from the private status page)."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import migrations, models


def _login_address(account) -> str:
    """The same rule as apps.sync.reports.report_recipient, frozen here as it is today."""
    provider = account.provider
    fixed = provider.imap_host.strip().rstrip(".").lower()
    if not fixed or account.host.strip().rstrip(".").lower() != fixed:
        return ""
    login = account.login.strip()
    if provider.login_format == "local_part" and provider.email_domain:
        login = f"{login.split('@', 1)[0]}@{provider.email_domain}"
    try:
        validate_email(login)
    except ValidationError:
        return ""
    return login.lower()


def fill_report_address(apps, schema_editor):
    SyncJob = apps.get_model("sync", "SyncJob")
    for job in SyncJob.objects.select_related("destination__provider").iterator():
        if job.destination.email_address == "erased@invalid":
            continue  # personal data erased: nobody to send anything to
        proven = _login_address(job.destination)
        if proven:
            values = {
                "report_address": proven,
                "report_address_proof": "login",
                "report_address_confirmed_at": job.created_at,
            }
        else:
            values = {
                "report_address": job.destination.email_address.strip().lower()[:254],
                "report_address_proof": "link",
            }
        SyncJob.objects.filter(pk=job.pk).update(**values)


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0002_seed_presets"),
        ("mailboxes", "0002_connection_test_findings"),
        ("sync", "0007_job_source_mailbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="syncjob",
            name="report_address",
            field=models.EmailField(blank=True, default="", max_length=254, verbose_name="report address"),
        ),
        migrations.AddField(
            model_name="syncjob",
            name="report_address_confirmed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="report address proven"),
        ),
        migrations.AddField(
            model_name="syncjob",
            name="report_address_proof",
            field=models.CharField(
                blank=True,
                choices=[("login", "the destination login"), ("link", "a confirmation link")],
                default="",
                max_length=10,
                verbose_name="report address proven by",
            ),
        ),
        migrations.AddField(
            model_name="syncjob",
            name="report_confirmation_sent_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="confirmation link sent"),
        ),
        migrations.RunPython(fill_report_address, migrations.RunPython.noop),
    ]
