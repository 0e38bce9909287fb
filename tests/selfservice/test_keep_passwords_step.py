"""The Synchronize step's "keep my passwords" (issue 14, item 7): unticked by default; ticked, the
job keeps them IMAPCOPY_DELTA_KEEP_DAYS days; not offered when that setting is 0."""

from __future__ import annotations

import datetime
import re

import pytest
from django.test import Client
from django.utils import timezone

from apps.sync.models import SyncJob

pytestmark = pytest.mark.django_db


def verified_session(client, source, destination) -> None:
    type(source).objects.filter(pk__in=[source.pk, destination.pk]).update(verified_at=timezone.now())
    session = client.session
    session["source_account_id"], session["destination_account_id"] = source.pk, destination.pk
    session.save()


def test_the_synchronize_step_offers_to_keep_the_passwords_unticked(make_account, settings):
    settings.IMAPCOPY_DELTA_KEEP_DAYS = 7
    client = Client()
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    html = client.get("/synchronize/").content.decode()
    box = re.search(r"<input[^>]*name=\"keep_credentials\"[^>]*>", html).group(0)
    assert 'type="checkbox"' in box and "checked" not in box
    assert "Keep my passwords (encrypted) for 7 days so that I can copy new mail again later" in html
    assert "your passwords are erased as soon as the copy ends" in html


def test_ticked_the_job_keeps_its_passwords_for_the_days_set(make_account, settings):
    settings.IMAPCOPY_DELTA_KEEP_DAYS = 5
    client = Client()
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    client.post("/synchronize/", {"keep_credentials": "on"})
    job = SyncJob.objects.get()
    left = job.credentials_keep_until - timezone.now()
    assert datetime.timedelta(days=5) - datetime.timedelta(minutes=1) < left <= datetime.timedelta(days=5)


def test_unticked_the_job_keeps_nothing(make_account):
    client = Client()
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    client.post("/synchronize/")
    assert SyncJob.objects.get().credentials_keep_until is None


def test_not_offered_when_the_setting_is_zero(make_account, settings):
    settings.IMAPCOPY_DELTA_KEEP_DAYS = 0
    client = Client()
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    assert 'name="keep_credentials"' not in client.get("/synchronize/").content.decode()
    client.post("/synchronize/", {"keep_credentials": "on"})
    assert SyncJob.objects.get().credentials_keep_until is None
