"""Copy new mail again (issue 14, item 7): a job whose customer ticked "keep my passwords" keeps
them (encrypted) until `credentials_keep_until`; purge_credentials erases them after it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0009_job_queued_at_staff_note_failures"),
    ]

    operations = [
        migrations.AddField(
            model_name="syncjob",
            name="credentials_keep_until",
            field=models.DateTimeField(
                blank=True,
                help_text="The customer asked to keep the passwords to copy new mail again later.",
                null=True,
                verbose_name="passwords kept until",
            ),
        ),
    ]
