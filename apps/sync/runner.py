"""Connects a SyncJob row to the Django-free copy engine: endpoints from the accounts,
checkpoints in FolderProgress rows, progress and events into the job's tables."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.endpoints import endpoint_for
from apps.mailboxes.netguard import HostNotAllowed, HostNotFound
from apps.sync import engine, services
from apps.sync.models import FolderProgress, JobStatus, SyncJob
from apps.sync.options import copy_options_from_settings

_CHECKPOINT_COLUMNS = {
    field.name
    for field in FolderProgress._meta.get_fields()
    if field.concrete and field.name not in {"id", "job", "extra", "updated_at"}
}


# FolderProgress column -> FolderCheckpoint.past_checkpoint key
_PAST_CHECKPOINT = {
    "messages_copied": "copied",
    "bytes_copied": "bytes",
    "messages_skipped": "skipped",
    "messages_failed": "failed",
}


class FolderProgressCheckpoints:
    """engine.CheckpointStore backed by the job's FolderProgress rows."""

    def __init__(self, job_id: int):
        self.job_id = job_id

    def load(self) -> dict[str, engine.FolderCheckpoint]:
        known = {field.name for field in dataclasses.fields(engine.FolderCheckpoint)}
        checkpoints = {}
        for row in FolderProgress.objects.filter(job_id=self.job_id):
            values = {name: getattr(row, name) for name in _CHECKPOINT_COLUMNS if name in known}
            values.update({name: value for name, value in row.extra.items() if name in known})
            # The columns show work past the checkpoint too; the engine counts only what it covers.
            for column, kind in _PAST_CHECKPOINT.items():
                if column in values:
                    values[column] = max(0, values[column] - values.get("past_checkpoint", {}).get(kind, 0))
            values["past_checkpoint"] = {}
            checkpoints[row.source_name] = engine.FolderCheckpoint(**values)
        return checkpoints

    def save(self, checkpoint: engine.FolderCheckpoint) -> None:
        values = dataclasses.asdict(checkpoint)
        columns = {name: values.pop(name) for name in list(values) if name in _CHECKPOINT_COLUMNS}
        columns.pop("source_name")
        for column, kind in _PAST_CHECKPOINT.items():
            if column in columns:
                columns[column] += checkpoint.past_checkpoint.get(kind, 0)
        columns["extra"] = values
        # One UPDATE (the row exists from the folder's first save on): a checkpoint is saved
        # before every batch, and update_or_create() would add a SELECT … FOR UPDATE each time.
        updated = FolderProgress.objects.filter(job_id=self.job_id, source_name=checkpoint.source_name).update(
            **columns, updated_at=timezone.now()
        )
        if not updated:
            FolderProgress.objects.update_or_create(
                job_id=self.job_id, source_name=checkpoint.source_name, defaults=columns
            )

    def save_many(self, checkpoints: list[engine.FolderCheckpoint]) -> None:
        with transaction.atomic():  # one commit for several folders' checkpoints
            for checkpoint in checkpoints:
                self.save(checkpoint)


def counters_from(result_or_progress) -> services.JobCounters:
    # A final result carries no total size (bytes_total None): keep the one progress recorded.
    figures = {f.name: getattr(result_or_progress, f.name, None) for f in dataclasses.fields(engine.Counters)}
    return services.JobCounters(**figures, current_folder=getattr(result_or_progress, "current_folder", None) or "")


def listed_folders(result_or_progress) -> bool:
    """False for figures of an engine run that ended before it listed the folders (a server
    down, a cancel): they are all zero and say nothing about the copy, so the job keeps the
    figures an earlier run recorded instead of showing "0 of 0" (every mailbox has an INBOX)."""
    return result_or_progress.folders_total > 0


class StopPoller:
    """The engine's should_cancel: true when staff asked to cancel, or when this run no longer
    owns the job. Touches the database at most every `interval` seconds (the engine asks
    between every two batches) and doubles as the run's heartbeat."""

    def __init__(self, job_id: int, run: int | None, interval: float = 2.0):
        self.job_id, self.run, self.interval = job_id, run, interval
        self._checked_at = 0.0
        self._stop = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._checked_at >= self.interval:
            self._checked_at = now
            owned = self.run is None or services.job_heartbeat(job_id=self.job_id, run=self.run)
            self._stop = not owned or SyncJob.objects.filter(id=self.job_id, cancel_requested=True).exists()
        return self._stop


def _endpoint_error(exc: Exception, side: str) -> engine.CopyResult:
    code = {HostNotAllowed: "host_not_allowed", HostNotFound: engine.ErrorCode.DNS_FAILED}[type(exc)]
    return engine.CopyResult(
        status="failed",
        error_code=code,
        error_side=side,
        error_detail="",
        folders_total=0,
        folders_done=0,
        messages_total=0,
        messages_copied=0,
        messages_skipped=0,
        messages_failed=0,
        bytes_copied=0,
        seconds=0.0,
        renamed_folders={},
        dropped_keywords=[],
    )


@sensitive_variables()
def copy_job_mailbox(
    job: SyncJob,
    *,
    run: int | None = None,
    options: engine.CopyOptions | None = None,
    check_hosts: bool = True,
    ca_file: str | None = None,
    verify_tls: bool = True,
    progress_listener: Callable[[engine.Progress], None] | None = None,
    event_listener: Callable[[engine.Event], None] | None = None,
    oauth_tokens: Mapping[str, Callable[[], str]] | None = None,
) -> engine.CopyResult:
    """Run the engine for a claimed (running) job and return its result; records nothing final.

    The worker and `manage.py copymailbox` both come through here, so a copy started by one
    resumes from the checkpoints the other left. `oauth_tokens` ("source"/"destination": a token
    source) logs those sides in with a token in place of their stored password: staff's
    `--oauth-token-file`."""
    tls = dict(
        check_host=check_hosts, ca_file=ca_file, verify_tls=verify_tls, timeout=settings.IMAPCOPY_IMAP_TIMEOUT_SECONDS
    )
    try:
        source = endpoint_for(job.source, side="source", **tls)
    except (HostNotAllowed, HostNotFound) as exc:
        return _endpoint_error(exc, "source")
    try:
        destination = endpoint_for(job.destination, side="destination", **tls)
    except (HostNotAllowed, HostNotFound) as exc:
        return _endpoint_error(exc, "destination")
    for side, token_source in (oauth_tokens or {}).items():
        if side == "source":
            source = dataclasses.replace(source, password="", oauth_token=token_source)
        else:
            destination = dataclasses.replace(destination, password="", oauth_token=token_source)

    def on_progress(progress: engine.Progress) -> None:
        if listed_folders(progress):
            services.job_record_progress(job_id=job.pk, run=run, counters=counters_from(progress))
        if progress_listener:
            progress_listener(progress)

    connected_sides: set[str] = set()

    def on_event(event: engine.Event) -> None:
        if event.kind == "connected":
            connected_sides.add(str(event.detail.get("side")))
        services.job_record_event(job_id=job.pk, kind=event.kind, folder=event.folder or "", detail=event.detail)
        if event_listener:
            event_listener(event)

    options = options or copy_options_from_settings(copy_all_mail_as_folder=job.copy_all_mail_as_folder)
    should_cancel = StopPoller(job.pk, run)
    patience_ends = time.monotonic() + settings.IMAPCOPY_NETWORK_PATIENCE_SECONDS
    delay = RECONNECT_FIRST_DELAY
    try:
        while True:
            result = engine.copy_mailbox(
                source,
                destination,
                options=options,
                checkpoints=FolderProgressCheckpoints(job.pk),
                on_progress=on_progress,
                on_event=on_event,
                should_cancel=should_cancel,
            )
            # The engine gives up after a few seconds of failed reconnects, and at once when a
            # connection is refused: a server restarting, or a link down for a minute, would fail
            # the job. Servers this run did reach get more patience; the next engine run resumes
            # from the checkpoints. A server never reached (a wrong port) still fails at once.
            retry = (
                result.status == "failed"
                and result.error_code in NETWORK_ERROR_CODES
                and connected_sides >= {"source", "destination"}
                and time.monotonic() + delay < patience_ends
            )
            if not retry:
                return result
            services.job_record_event(
                job_id=job.pk,
                kind="reconnecting",
                detail={"side": result.error_side, "reason": str(result.error_code), "wait_seconds": delay},
            )
            _wait(delay, should_cancel)  # heartbeats; a cancel makes the next engine run return at once
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
    finally:
        del source, destination


# Failures of a connection that worked earlier in the run, worth another engine run later.
# NOT_IMAP too: a load balancer in front of a restarting server accepts the connection and
# closes it before any greeting, which the engine reports as "did not greet like an IMAP
# server"; a server that greeted earlier in this run is an IMAP server.
NETWORK_ERROR_CODES = {
    engine.ErrorCode.NETWORK_ERROR,
    engine.ErrorCode.TIMEOUT,
    engine.ErrorCode.CONNECTION_REFUSED,
    engine.ErrorCode.NOT_IMAP,
}
RECONNECT_FIRST_DELAY = 2.0
RECONNECT_MAX_DELAY = 60.0


def _wait(seconds: float, should_cancel: StopPoller) -> None:
    """Sleep, asking should_cancel (the run's heartbeat) as often as it wants to be asked."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_cancel():
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


ENGINE_STATUS_TO_JOB = {
    "finished": JobStatus.FINISHED,
    "finished_with_errors": JobStatus.FINISHED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}


def record_result(job_id: int, result: engine.CopyResult, *, run: int | None = None) -> bool:
    """Record the run's outcome; False when the run no longer owned the job (nothing written)."""
    error_code = str(result.error_code or "")
    if result.status == "cancelled":
        error_code = "cancelled"
    return services.job_finish(
        job_id=job_id,
        run=run,
        status=ENGINE_STATUS_TO_JOB[result.status],
        counters=counters_from(result) if listed_folders(result) else None,
        error_code=error_code,
        error_side=result.error_side or "",
        error_detail=result.error_detail,
    )
