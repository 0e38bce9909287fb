#!/usr/bin/env python3
"""How fast the admin's jobs list is with many jobs (default 100,000), on a scratch database.

    .venv/bin/python bench/admin_jobs_list.py [--jobs 100000] [--database-url postgres://postgres@127.0.0.1/imapcopy_bench]

Prints the time and the number of queries of the list page, a filtered page, a search and
the operations page."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="imapcopy-admin-bench-")
    os.environ["IMAPCOPY_VAR_DIR"] = scratch
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.mailboxes.models import MailAccount
    from apps.providers.models import Provider
    from apps.sync.models import JobStatus, SyncJob

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    providers = list(Provider.objects.all())
    started = time.perf_counter()
    statuses = [JobStatus.FINISHED] * 8 + [JobStatus.FAILED, JobStatus.CANCELLED]
    with transaction.atomic():
        batch = 5000
        for start in range(0, args.jobs, batch):
            count = min(batch, args.jobs - start)
            accounts = MailAccount.objects.bulk_create(
                MailAccount(provider=providers[(start + i) % len(providers)], login=f"user{start + i}",
                            email_address=f"user{start + i}@example.org", host="imap.example.org", port=993,
                            security="tls")
                for i in range(count * 2)
            )  # fmt: skip
            now = timezone.now()
            SyncJob.objects.bulk_create(
                SyncJob(source=accounts[2 * i], destination=accounts[2 * i + 1],
                        source_address=f"user{start + i}@example.org", status=statuses[i % len(statuses)],
                        messages_total=1000, messages_copied=990, messages_skipped=i % 3, bytes_copied=10**8,
                        started_at=now, finished_at=now)
                for i in range(count)
            )  # fmt: skip
    print(f"created {args.jobs} jobs in {time.perf_counter() - started:.1f} s ({connection.vendor})")
    admin = User.objects.create_superuser("bench", "bench@example.org", "bench-password")
    client = Client()
    client.force_login(admin)
    for label, url in [
        ("jobs list", "/admin/sync/syncjob/"),
        ("jobs list, page 100", "/admin/sync/syncjob/?p=100"),
        ("filtered: failed", "/admin/sync/syncjob/?status__exact=failed"),
        ("filtered: has errors", "/admin/sync/syncjob/?has_errors=yes"),
        ("search by address", "/admin/sync/syncjob/?q=user4242%40example.org"),
        ("operations page", "/admin/sync/syncjob/operations/"),
    ]:
        client.get(url)  # warm
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (url, response.status_code)
        times.sort()
        print(f"{label:24} median {times[2] * 1000:7.1f} ms   {len(queries):3d} queries")


if __name__ == "__main__":
    main()
