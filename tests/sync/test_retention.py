import datetime

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import call_command
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync import services
from apps.sync.models import JobStatus, SyncJob

pytestmark = pytest.mark.django_db


def ended_job(make_account, address: str, days_ago: int) -> SyncJob:
    job = services.job_create(source=make_account(address), destination=make_account(f"dest-{address}"))
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FINISHED, counters=None)
    SyncJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - datetime.timedelta(days=days_ago))
    return job


def test_purge_jobs_deletes_old_ended_jobs_and_their_accounts(make_account, settings):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    old = ended_job(make_account, "old@example.org", days_ago=31)
    recent = ended_job(make_account, "recent@example.org", days_ago=29)
    running = services.job_create(source=make_account("busy@example.org"), destination=make_account("x@example.net"))
    call_command("purge_jobs")
    assert set(SyncJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not MailAccount.objects.filter(email_address__in=["old@example.org", "dest-old@example.org"]).exists()
    assert old.pk not in SyncJob.objects.values_list("pk", flat=True)


def test_purge_jobs_takes_the_addresses_out_of_the_admin_history(admin_client, admin_user, make_account, settings):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    old = ended_job(make_account, "gone.history@example.org", days_ago=31)
    LogEntry.objects.log_actions(admin_user.pk, [old], CHANGE, change_message="Report re-sent")
    LogEntry.objects.log_actions(
        admin_user.pk, [old.destination], CHANGE, change_message="Checked dest-gone.history@example.org"
    )
    assert "gone.history@example.org" in admin_client.get("/admin/").content.decode()
    call_command("purge_jobs")
    assert not SyncJob.objects.filter(pk=old.pk).exists()
    assert not [
        entry
        for entry in LogEntry.objects.all()
        if "gone.history@" in f"{entry.object_repr} {entry.change_message}".lower()
    ]
    assert "gone.history@" not in admin_client.get("/admin/").content.decode()  # "Recent actions"


def test_purge_jobs_keeps_an_account_another_job_still_uses(make_account, settings):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    old = ended_job(make_account, "shared@example.org", days_ago=31)
    recent = services.job_create(source=make_account("other@example.org"), destination=old.destination)
    call_command("purge_jobs")
    assert not SyncJob.objects.filter(pk=old.pk).exists()
    assert not MailAccount.objects.filter(pk=old.source_id).exists()
    assert MailAccount.objects.filter(pk=recent.destination_id).exists(), "the recent job's destination stays"


def test_purge_jobs_dry_run_counts_and_deletes_nothing(make_account, settings, capsys):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    old = ended_job(make_account, "counted@example.org", days_ago=31)
    call_command("purge_jobs", "--dry-run")
    out = capsys.readouterr().out
    assert out.startswith("Would delete 1 job that ended before") and "and 2 accounts no other job uses" in out
    assert SyncJob.objects.filter(pk=old.pk).exists()
    assert MailAccount.objects.filter(pk__in=[old.source_id, old.destination_id]).count() == 2
