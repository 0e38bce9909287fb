"""kill -9 of the worker and its work horse, twenty times during one copy, at seeded random
moments (while the worker starts, claims, connects, plans, fetches, appends ...). After each
kill a new worker is started and recovery runs, as cron would; the job resumes every time and
ends FINISHED with every message exactly once and its runs counted honestly."""

from __future__ import annotations

import datetime
import random
import time

import django_rq
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.localmail import mail
from apps.providers.models import Provider
from apps.sync.models import JobEvent, JobStatus, SyncJob
from apps.sync.recovery import recover_jobs
from tests.support.workers import kill_tree, start_worker, wait_until
from tests.sync.conftest import all_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KILLS = 20
SEED = 20261127


def queued_for_delivery(job: SyncJob) -> bool:
    return job.status == JobStatus.QUEUED and job.rq_job_id in django_rq.get_queue(django_settings.COPY_QUEUE).job_ids


def test_twenty_kill_9_during_one_copy_leave_every_message_exactly_once(
    filled_accounts, job_between, redis_connection, tmp_path, settings
):
    rng = random.Random(SEED)
    # Runs killed before they copy anything (while the worker starts) count toward the limit of
    # runs lost in a row without progress, which is 5 by default; a storm like this one would
    # reach it. Runs killed in the middle of a copy do not count (recovery.runs_lost_without_progress).
    settings.IMAPCOPY_MAX_RUNS = KILLS + 1
    # ~3,200 small messages in 12 folders, copied at 100 messages a second: long enough that
    # every kill lands before the end.
    source_side, destination_side = filled_accounts(seed=SEED % 1000, messages=3000)
    source, destination = source_side[2], destination_side[2]
    source_before = mail.uid_state(source)
    Provider.objects.filter(slug="other").update(max_messages_per_second=100)
    job = job_between(source_side, destination_side)
    log = tmp_path / "workers.log"

    moments, lost_runs, kills_while_running = [], 0, 0
    for kill in range(KILLS):
        attempts_before = SyncJob.objects.get(pk=job.pk).attempts
        worker = start_worker(log=log)
        if rng.random() < 0.3:
            # While the worker starts, takes the delivery, claims the job, connects ...
            moment = ("after start", rng.uniform(0.2, 2.5))
            time.sleep(moment[1])
        else:
            # ... or in the middle of the copy: planning, fetching, appending, checkpointing.
            moment = ("after claim", rng.uniform(0.1, 2.0))
            wait_until(lambda before=attempts_before: SyncJob.objects.get(pk=job.pk).attempts > before, timeout=30)
            time.sleep(moment[1])
            kills_while_running += 1
        kill_tree(worker)
        job.refresh_from_db()
        assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), (
            f"kill {kill + 1} came too late: the job is {job.status}; slow the copy down"
        )
        lost_runs += job.attempts - attempts_before
        moments.append((moment[0], round(moment[1], 2), job.status, job.messages_copied))
        # Recovery as cron would run it a few minutes later (heartbeat long silent).
        recover_jobs(now=timezone.now() + datetime.timedelta(minutes=5))
        job.refresh_from_db()
        assert queued_for_delivery(job), f"after kill {kill + 1} the job is not back on the queue: {moments}"

    Provider.objects.filter(slug="other").update(max_messages_per_second=None)  # the rest at full speed
    worker = start_worker(log=log)
    assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail, moments)
    assert all_messages(destination) == all_messages(source), moments
    assert mail.uid_state(source) == source_before, "the source was modified"

    # Runs counted honestly: every claim is a run, the killed ones and the last one.
    assert job.attempts == lost_runs + 1
    assert JobEvent.objects.filter(job=job, kind="recovered").count() == lost_runs
    assert lost_runs >= kills_while_running >= KILLS // 2, moments
    assert job.messages_copied == job.messages_total > 3000
