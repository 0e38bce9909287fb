"""Passwords do not outlive their use."""

import datetime

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync import services
from apps.sync.models import JobStatus

pytestmark = pytest.mark.django_db


def age(account, **delta):
    MailAccount.objects.filter(pk=account.pk).update(created_at=timezone.now() - datetime.timedelta(**delta))


def test_abandoned_accounts_are_deleted_but_recent_ones_kept(make_account):
    abandoned, recent = make_account("old@example.org"), make_account("new@example.org")
    age(abandoned, hours=2)
    call_command("purge_credentials")
    assert list(MailAccount.objects.values_list("email_address", flat=True)) == [recent.email_address]


def test_failed_job_keeps_its_passwords_for_the_grace_period_then_loses_them(make_account, settings):
    source, destination = make_account("a@example.org"), make_account("b@example.net")
    job = services.job_create(source=source, destination=destination)
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code="timeout")
    age(source, days=3)
    age(destination, days=3)
    call_command("purge_credentials")
    source.refresh_from_db()
    assert source.has_password, "staff can still retry a job that failed an hour ago"

    from apps.sync.models import SyncJob

    SyncJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - datetime.timedelta(days=2))
    call_command("purge_credentials")
    source.refresh_from_db()
    destination.refresh_from_db()
    assert not source.has_password and not destination.has_password


def test_running_job_keeps_its_passwords(make_account):
    source, destination = make_account("a@example.org"), make_account("b@example.net")
    job = services.job_create(source=source, destination=destination)
    services.job_claim(job_id=job.pk, worker_name="w")
    age(source, days=30)
    call_command("purge_credentials")
    source.refresh_from_db()
    assert source.has_password
