"""Redis restarted (without persistence: every queue entry is lost) while jobs wait in the queue
and while a copy runs. The database is the source of truth: recovery enqueues again the jobs
whose queue entry vanished, no job is lost, none runs twice, every mailbox ends exact.

This file restarts a redis-server of its own; the session's shared one is never touched."""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import django_rq
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.localmail import mail
from apps.providers.models import Provider
from apps.sync.models import JobEvent, JobStatus, SyncJob
from apps.sync.recovery import recover_jobs
from portal.localredis import free_port, redis_answers, start_redis
from tests.conftest import _use_redis
from tests.support.workers import kill_tree, start_worker, wait_until
from tests.sync.conftest import all_messages

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@dataclass
class OwnRedis:
    directory: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def crash(self) -> None:
        """Stop as a crash would (SIGKILL: nothing saved)."""
        self.process.kill()
        self.process.wait(timeout=10)
        assert not redis_answers(self.url)

    def start(self) -> None:
        self.process = start_redis(self.directory, self.port, persist=False)

    def restart(self, down_seconds: float = 0.5) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[OwnRedis]:
    """This test's own redis-server; settings (and workers started meanwhile) point at it."""
    port = free_port()
    directory = tmp_path / "redis"
    server = OwnRedis(directory, port, start_redis(directory, port, persist=False))
    shared_url, shared_env = django_settings.REDIS_URL, os.environ.get("REDIS_URL")
    _use_redis(server.url)
    try:
        yield server
    finally:
        _use_redis(shared_url)
        if shared_env is not None:
            os.environ["REDIS_URL"] = shared_env
        server.stop()


def queue_ids() -> list[str]:
    return django_rq.get_queue(django_settings.COPY_QUEUE).job_ids


@pytest.fixture
def jobs(filled_accounts, job_between):
    """make(n, messages): n queued jobs, each between a filled source and an empty destination."""

    def make(count: int, messages: int, seed: int):
        made = []
        for i in range(count):
            source_side, destination_side = filled_accounts(seed=seed + i, messages=messages)
            job = job_between(source_side, destination_side)
            made.append((job, source_side[2], destination_side[2], mail.uid_state(source_side[2])))
        return made

    return make


def assert_ran_once_and_exact(job: SyncJob, source: mail.Account, destination: mail.Account, before: dict) -> None:
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.pk, job.error_code, job.error_detail)
    assert job.attempts == 1, f"job {job.pk} was claimed {job.attempts} times"
    assert not JobEvent.objects.filter(job=job, kind="recovered").exists()
    assert JobEvent.objects.filter(job=job, kind="folder_started").count() == job.folders_total, "copied once"
    assert all_messages(destination) == all_messages(source)
    assert mail.uid_state(source) == before, "the source was modified"


def test_queued_jobs_survive_a_redis_restart(own_redis, jobs, tmp_path):
    queued = jobs(2, messages=40, seed=81)
    assert len(queue_ids()) == 2
    own_redis.crash()
    # A customer asks for a copy while Redis is down: the job is recorded all the same.
    queued += jobs(1, messages=40, seed=83)
    own_redis.start()
    assert queue_ids() == [], "Redis came back empty"
    assert {job.status for job, *_ in queued} == {JobStatus.QUEUED}, "the database still has them"

    # Recovery as cron runs it, once the queued jobs are past their grace period.
    later = timezone.now() + datetime.timedelta(minutes=5)
    assert sorted(recover_jobs(now=later).requeued_lost_deliveries) == sorted(job.pk for job, *_ in queued)
    assert recover_jobs(now=later).requeued_lost_deliveries == [], "a job is enqueued again only once"
    assert len(queue_ids()) == 3

    workers = [start_worker(log=tmp_path / f"worker{i}.log") for i in range(2)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    for job, source, destination, before in queued:
        assert_ran_once_and_exact(job, source, destination, before)


def test_redis_restarted_during_a_copy_loses_no_job_and_runs_none_twice(own_redis, jobs, tmp_path):
    Provider.objects.filter(slug="other").update(max_messages_per_second=150)
    big, *_ = jobs(1, messages=1200, seed=95)
    log = tmp_path / "worker.log"
    worker = start_worker(log=log, burst=False)  # a long-lived worker, as in production
    try:
        wait_until(lambda: SyncJob.objects.get(pk=big[0].pk).messages_copied > 100, timeout=60)
        waiting = jobs(2, messages=40, seed=91)  # queued behind the copy: one worker, one job at a time
        waiting_ids = sorted(job.pk for job, *_ in waiting)
        assert len(queue_ids()) == 2
        assert SyncJob.objects.get(pk=big[0].pk).status == JobStatus.RUNNING

        own_redis.restart(down_seconds=2)
        assert queue_ids() == []
        # Recovery (cron, every minute) while the copy goes on: the copy beats, so it is left
        # alone; the waiting jobs are young, so they get their grace period ...
        report = recover_jobs()
        assert (report.requeued_lost_runs, report.requeued_lost_deliveries) == ([], [])
        # ... and a few minutes later they are enqueued again, once.
        SyncJob.objects.filter(pk__in=waiting_ids).update(created_at=timezone.now() - datetime.timedelta(minutes=5))
        report = recover_jobs()
        assert (report.requeued_lost_runs, sorted(report.requeued_lost_deliveries)) == ([], waiting_ids)
        assert recover_jobs().requeued_lost_deliveries == []

        everything = [big[0].pk, *waiting_ids]
        wait_until(lambda: set(SyncJob.objects.filter(pk__in=everything).values_list("status", flat=True))
                   <= {JobStatus.FINISHED, JobStatus.FAILED}, timeout=90)  # fmt: skip
    finally:
        kill_tree(worker)
    for job, source, destination, before in [big, *waiting]:
        assert_ran_once_and_exact(job, source, destination, before)
    assert "could not connect to Redis" in log.read_text(), "the worker did see Redis go away"
