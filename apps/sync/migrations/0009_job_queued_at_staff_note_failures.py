"""The job page and the operations page (issue 14, item 9).

- `queued_at`: when the job last went into the queue; existing jobs take their creation time,
  the best that is known of them.
- `staff_note`: staff's own note on a job; support and operators may write it (the permission to
  change a job lets nothing else be changed: every other field is read-only). The groups receive
  it from apps.sync.staff_groups after migrate.
- `JobFailure`: each failure of a job, kept when the job is retried; the jobs that are failed
  today count once each, at the time they ended."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F


def fill(apps, schema_editor):
    SyncJob = apps.get_model("sync", "SyncJob")
    JobFailure = apps.get_model("sync", "JobFailure")
    SyncJob.objects.filter(queued_at__isnull=True).update(queued_at=F("created_at"))
    failed = SyncJob.objects.filter(status="failed").values_list("id", "finished_at", "created_at", "error_code")
    JobFailure.objects.bulk_create(
        (
            JobFailure(job_id=pk, failed_at=finished_at or created_at, error_code=error_code)
            for pk, finished_at, created_at, error_code in failed.iterator()
        ),
        batch_size=500,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0008_job_report_address"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddField(
            model_name="syncjob",
            name="queued_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="queued"),
        ),
        migrations.AddField(
            model_name="syncjob",
            name="staff_note",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Only staff see this note. Each change is kept in the job's history.",
                verbose_name="staff note",
            ),
        ),
        migrations.CreateModel(
            name="JobFailure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("failed_at", models.DateTimeField(db_index=True, verbose_name="time of failure")),
                ("error_code", models.CharField(blank=True, max_length=40, verbose_name="error code")),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="failures", to="sync.syncjob"
                    ),
                ),
            ],
            options={
                "verbose_name": "job failure",
                "verbose_name_plural": "job failures",
                "ordering": ["-failed_at"],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
