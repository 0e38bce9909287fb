"""The run's patience with servers it had reached (runner.copy_job_mailbox), with a scripted engine:
a server that goes away is waited for and the copy resumes; a server never reached fails at once;
figures of engine runs that never got to the folders do not wipe the job's progress."""

from __future__ import annotations

import pytest

from apps.sync import engine, runner, services
from apps.sync.models import JobStatus, SyncJob

pytestmark = pytest.mark.django_db(transaction=True)


def result(status: str, code: engine.ErrorCode | None = None, *, copied: int = 0, folders: int = 0, total: int = 0):
    return engine.CopyResult(
        status=status, error_code=code, error_side="destination" if code else None, error_detail="",
        folders_total=folders, folders_done=0, messages_total=total, messages_copied=copied, messages_skipped=0,
        messages_failed=0, bytes_copied=copied * 100, seconds=0.1,
    )  # fmt: skip


@pytest.fixture
def claimed_job(make_account, redis_connection):
    job = services.job_create(source=make_account("a@example.org"), destination=make_account("b@example.net"))
    run = services.job_claim(job_id=job.pk, worker_name="host:1")
    return SyncJob.objects.select_related("source__provider", "destination__provider").get(pk=job.pk), run


@pytest.fixture
def scripted_engine(monkeypatch):
    """Replace engine.copy_mailbox by a script of (events, progress, result) per engine run."""
    calls: list[int] = []
    monkeypatch.setattr(runner, "RECONNECT_FIRST_DELAY", 0.01)

    def install(*runs):
        def fake(source, destination, *, options, checkpoints, on_progress, on_event, should_cancel):
            step = runs[len(calls)]
            calls.append(1)
            for side in step.get("connected", ()):
                on_event(engine.Event("connected", detail={"side": side}))
            outcome = step["result"]
            on_progress(engine.Progress(
                outcome.folders_total, 0, outcome.messages_total, outcome.messages_copied, 0, 0,
                outcome.messages_total * 100, outcome.bytes_copied, None,
            ))  # fmt: skip
            return outcome

        monkeypatch.setattr(engine, "copy_mailbox", fake)
        return calls

    return install


BOTH = ("source", "destination")
REFUSED = engine.ErrorCode.CONNECTION_REFUSED


def test_a_server_that_went_away_is_waited_for_and_the_copy_resumes(claimed_job, scripted_engine, settings):
    job, run = claimed_job
    calls = scripted_engine(
        {"connected": BOTH, "result": result("failed", REFUSED, folders=3, total=90, copied=40)},
        {"connected": ("source",), "result": result("failed", REFUSED)},  # still down
        {"connected": BOTH, "result": result("finished", folders=3, total=90, copied=90)},
    )
    outcome = runner.copy_job_mailbox(job, run=run, check_hosts=False)
    assert (outcome.status, len(calls)) == ("finished", 3)
    assert [e.detail["reason"] for e in job.events.filter(kind="reconnecting")] == ["connection_refused"] * 2


def test_a_server_never_reached_fails_at_once(claimed_job, scripted_engine):
    job, run = claimed_job
    calls = scripted_engine({"connected": ("source",), "result": result("failed", REFUSED)})
    outcome = runner.copy_job_mailbox(job, run=run, check_hosts=False)
    assert (outcome.status, outcome.error_code, len(calls)) == ("failed", REFUSED, 1)
    assert not job.events.filter(kind="reconnecting").exists()


def test_when_patience_runs_out_the_job_fails_and_keeps_the_progress_made(claimed_job, scripted_engine, settings):
    job, run = claimed_job
    settings.IMAPCOPY_NETWORK_PATIENCE_SECONDS = 0.5
    scripted_engine(
        {"connected": BOTH, "result": result("failed", REFUSED, folders=3, total=90, copied=40)},
        *[{"result": result("failed", REFUSED)}] * 100,  # the server stays down
    )
    outcome = runner.copy_job_mailbox(job, run=run, check_hosts=False)
    assert runner.record_result(job.pk, outcome, run=run)
    job.refresh_from_db()
    assert (job.status, job.error_code) == (JobStatus.FAILED, "connection_refused")
    # The status page still says how far the copy got, not "0 of 0".
    assert (job.folders_total, job.messages_total, job.messages_copied) == (3, 90, 40)
