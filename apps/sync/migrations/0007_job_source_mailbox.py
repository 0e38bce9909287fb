"""One active job per source mailbox (login @ server), not per typed address."""

from django.db import migrations, models


def fill_source_mailbox(apps, schema_editor):
    SyncJob = apps.get_model("sync", "SyncJob")
    active_seen = set()
    for job in SyncJob.objects.select_related("source").order_by("created_at", "id").iterator():
        login, host = job.source.login.strip().lower(), job.source.host.strip().rstrip(".").lower()
        mailbox = f"{login}@{host}"
        if job.status in ("queued", "running"):
            if mailbox in active_seen:
                # Two active copies of one mailbox under two typed addresses (allowed before):
                # both go on; the newer one is told apart so the constraint can hold.
                mailbox = f"{mailbox}#job-{job.pk}"
            active_seen.add(mailbox)
        SyncJob.objects.filter(pk=job.pk).update(source_mailbox=mailbox)


class Migration(migrations.Migration):
    dependencies = [
        ("mailboxes", "0002_connection_test_findings"),
        ("sync", "0006_job_all_mail_option"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="syncjob",
            name="one_active_job_per_source",
        ),
        migrations.AddField(
            model_name="syncjob",
            name="source_mailbox",
            field=models.CharField(blank=True, default="", max_length=600, verbose_name="source mailbox"),
        ),
        migrations.RunPython(fill_source_mailbox, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="syncjob",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["queued", "running"])),
                fields=("source_mailbox",),
                name="one_active_job_per_source_mailbox",
                violation_error_message="A synchronization job already exists for this account.",
            ),
        ),
    ]
