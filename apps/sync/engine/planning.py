"""Folder planning, the first half of a copy attempt: LIST both sides, map and create folders,
STATUS both sides, and decide where each folder starts (reconcile.decide, a pure function), then
cut big folders into parts for parallel pipelines.

`FolderPlanning` is a part of the copy run (copier._CopyRun): it uses the run's options,
checkpoints, ledger and reporting (`event`, `save`, `check_cancel`)."""

from __future__ import annotations

import dataclasses
import logging

from . import reconcile
from .archive import find_archived
from .connection import MailboxState, Session, quote
from .errors import EngineError, ErrorCode
from .fingerprint import fetch_fingerprints
from .folders import FolderPlan, Listing, encode_name, list_folders, plan_archive, plan_folders, safe_part
from .ledger import Ledger
from .model import CopyOptions, Counters, FolderCheckpoint
from .pipeline import FolderSplit, FolderTask, Segment, fetch_sizes

# Without STATUS=SIZE (Gmail, Microsoft 365, Yahoo) a folder's bytes are estimated from its
# message count, so that big folders are still split between pipelines (the split itself uses
# the real sizes) and the biggest handed out first.
ESTIMATED_MESSAGE_BYTES = 50_000
# When each message waits a round trip on the destination (appends_wait_round_trips), its count
# matters as much as its bytes: each message weighs this much more when folders are shared out and
# split (about what a 12 Mbit/s link carries in a 40 ms round trip).
ROUND_TRIP_MESSAGE_BYTES = 64 * 1024

log = logging.getLogger("imapcopy.engine")


class FolderPlanning:
    # Set by the copy run (copier._CopyRun); besides, it provides event(), save(), check_cancel()
    # and _parallelism().
    options: CopyOptions
    checkpoints: dict[str, FolderCheckpoint]
    active: list[str]
    totals: Counters
    ledger: Ledger
    renamed: dict[str, str]
    refused_folders: dict[str, str]
    archive: dict
    _append_round_trips: bool

    def _message_weight(self) -> int:
        """What one message adds to a folder's weight on top of its bytes."""
        return ROUND_TRIP_MESSAGE_BYTES if self._append_round_trips else 0

    def _plan(self, src: Session, dst: Session) -> list[FolderTask]:
        """The folders to copy in this attempt, each with its start point (checkpoints saved)."""
        source_listing = list_folders(src)
        for folder in source_listing.refused:  # no IMAP command can carry its name: reported, not copied
            if folder.name not in self.refused_folders:
                self.refused_folders[folder.name] = folder.refused
                self.event("folder_refused", folder.name, side="source", reason=folder.refused)
        dest_listing = list_folders(dst)
        whole = self.options.copy_all_mail_as_folder
        plans = plan_folders(source_listing, dest_listing, self.options.skip_gmail_virtual_folders, keep_all_mail=whole)
        if self.options.skip_gmail_virtual_folders and not whole:
            archive = plan_archive(source_listing, dest_listing)
            if archive is not None:
                plans.append(archive)
        self._apply_previous_names(plans, dest_listing)
        missing: list[FolderPlan] = []
        create_tags: list[bytes] = []
        if not self.options.dry_run:
            missing = sorted((p for p in plans if not p.dest_exists), key=lambda p: len(p.source.path))
            # Every plain name in one round trip, answered while the source counts its folders;
            # refused ones go through _create's fallbacks.
            create_tags = dst.send_commands([b"CREATE " + quote(p.dest_raw) for p in missing])

        items = b"MESSAGES UIDNEXT UIDVALIDITY" + (b" SIZE" if src.has("STATUS=SIZE") else b"")
        statuses = src.status([p.source.raw for p in plans], items)

        if missing:
            answers = dst.collect(create_tags)
            created = [p for p, done in zip(missing, answers, strict=True) if done.ok]
            dst.pipeline([b"SUBSCRIBE " + quote(p.dest_raw) for p in created])
            for plan in created:
                plan.dest_exists = plan.created = True
                if plan.renamed:
                    self.renamed[plan.source.name] = plan.dest_name
                    self.event("folder_renamed", plan.source.name, to=plan.dest_name, reason="separator")
                self.event("folder_created", plan.source.name, destination=plan.dest_name)
            for plan in missing:
                if not plan.dest_exists:
                    self._create(dst, plan, dest_listing)
        self.active = [p.source.name for p in plans]
        self.totals = Counters(folders_total=len(plans))
        # The destination folders' state in one round trip (not one SELECT per folder): a folder
        # the checkpoint calls done is skipped only if the destination still holds that folder.
        dest_statuses = (
            dst.status([p.dest_raw for p in plans if p.dest_exists], b"MESSAGES UIDNEXT UIDVALIDITY")
            if not self.options.dry_run
            else {}
        )
        to_prepare: list[tuple[FolderPlan, FolderCheckpoint, dict]] = []
        archived: dict[str, set[int]] = {}
        for plan in plans:
            source_status = statuses.get(plan.source.raw, {})
            checkpoint = self.checkpoints.get(plan.source.name)
            if checkpoint is None:
                checkpoint = self.checkpoints[plan.source.name] = FolderCheckpoint(
                    plan.source.name, archive_only=plan.archive
                )
            checkpoint.destination_name = plan.dest_name
            if plan.archive and "UIDVALIDITY" in source_status:
                # Only All Mail's archived messages are copied: they are the folder's total.
                if not self._unchanged(checkpoint, source_status, plan, dest_statuses):
                    found = self._find_archived(src, plan, plans)
                    archived[plan.source.name] = found
                    checkpoint.messages_total = len(found)
                self.archive = {
                    "source": plan.source.name,
                    "folder": plan.dest_name,
                    "found": checkpoint.messages_total,
                }
                size = 0
            else:
                checkpoint.messages_total, size = source_status.get("MESSAGES", 0), source_status.get("SIZE", 0)
            totals = self.totals
            self.totals = dataclasses.replace(
                totals,
                messages_total=totals.messages_total + checkpoint.messages_total,
                bytes_total=totals.bytes_total + size,
            )
            if "UIDVALIDITY" not in source_status:
                # Deleted or made unreadable since LIST: report it, copy the rest.
                self.event("error", plan.source.name, code=ErrorCode.PROTOCOL_ERROR.value, side="source",
                           detail="the folder could not be opened (STATUS failed)")  # fmt: skip
                continue
            if self._unchanged(checkpoint, source_status, plan, dest_statuses):
                continue
            checkpoint.done = False
            if self.options.dry_run:
                self.event(
                    "folder_planned", plan.source.name, destination=plan.dest_name, exists=plan.dest_exists,
                    messages=source_status.get("MESSAGES", 0), bytes=source_status.get("SIZE", 0),
                )  # fmt: skip
                continue
            to_prepare.append((plan, checkpoint, source_status))
        tasks = [
            self._prepare(dst, plan, checkpoint, source_status, dest_statuses.get(plan.dest_raw, {}))
            for plan, checkpoint, source_status in to_prepare
        ]
        for task in tasks:
            if task.plan.archive:
                task.only_uids = archived.get(task.plan.source.name, set())
                task.size_hint = len(task.only_uids) * (ESTIMATED_MESSAGE_BYTES + self._message_weight())
        return tasks

    def _unchanged(
        self, checkpoint: FolderCheckpoint, source_status: dict, plan: FolderPlan, dest_statuses: dict
    ) -> bool:
        """Nothing to do in this folder (reconcile.unchanged), and its destination not just created."""
        dest_status = None if self.options.dry_run else dest_statuses.get(plan.dest_raw, {})
        return not plan.created and reconcile.unchanged(checkpoint, source_status, dest_status)

    def _find_archived(self, src: Session, plan: FolderPlan, plans: list[FolderPlan]) -> set[int]:
        """All Mail's messages that none of the folders copied holds (Gmail's archived mail)."""
        labels = [p.source for p in plans if not p.archive]
        found = find_archived(src, plan.source, labels, self.check_cancel)
        self.event(
            "archived_found", plan.source.name, messages=len(found.uids), destination=plan.dest_name,
            method=found.method,
        )  # fmt: skip
        return found.uids

    def _apply_previous_names(self, plans: list[FolderPlan], dest: Listing) -> None:
        """Keep writing where the previous run wrote (a folder renamed then because the destination
        refused its name), but only where the destination agrees: the folder is still there.  A
        destination that moved to another server, or changed its separator or namespace, gets the
        mapping planned afresh from what it shows now (the old name would be a flattened one)."""
        names = {f.name: f for f in dest.folders}
        for plan in plans:
            checkpoint = self.checkpoints.get(plan.source.name)
            if checkpoint and checkpoint.archive_only != plan.archive:
                # Gmail's All Mail switched between "archived messages into Archive" and "whole,
                # as a folder": what the checkpoint covers is not what is asked now.  Start the
                # folder afresh; what is already on the destination is recognised, not copied twice.
                checkpoint.archive_only = plan.archive
                checkpoint.uidvalidity = checkpoint.dest_uidvalidity = None
                checkpoint.destination_name = plan.dest_name
                checkpoint.done = False
            if checkpoint and checkpoint.destination_name and checkpoint.destination_name != plan.dest_name:
                found = names.get(checkpoint.destination_name)
                if found is not None and found.selectable:
                    plan.dest_name, plan.dest_raw, plan.dest_exists = found.name, found.raw, True
                else:
                    self.event(
                        "folder_remapped", plan.source.name, before=checkpoint.destination_name, to=plan.dest_name
                    )
                    # Nothing known of the new folder: whatever it holds is recognised, not trusted.
                    checkpoint.dest_uidvalidity = None
            if plan.renamed:
                self.renamed[plan.source.name] = plan.dest_name

    def _create(self, dst: Session, plan: FolderPlan, dest: Listing) -> None:
        """CREATE + SUBSCRIBE; a refused name is replaced by a safe one and reported."""
        sep = dest.namespace.separator or "/"
        candidates = [plan.dest_name]
        relative = (
            plan.dest_name[len(dest.namespace.prefix) :]
            if plan.dest_name.startswith(dest.namespace.prefix)
            else plan.dest_name
        )
        safe = dest.namespace.prefix + sep.join(safe_part(p) for p in relative.split(sep))
        if safe not in candidates:
            candidates.append(safe)
        candidates.append(dest.namespace.prefix + "IMAPCopy-" + safe_part(plan.source.name.replace(sep, "-")))
        last = None
        for name in candidates:
            raw = encode_name(name)
            done = dst.command(b"CREATE " + quote(raw))
            if done.ok or done.code == b"ALREADYEXISTS":
                dst.command(b"SUBSCRIBE " + quote(raw))
                if name != plan.dest_name or plan.renamed:
                    self.renamed[plan.source.name] = name
                    self.event(
                        "folder_renamed",
                        plan.source.name,
                        to=name,
                        reason=done.text[:120].decode("utf-8", "replace")
                        if last is None
                        else last.text[:120].decode("utf-8", "replace"),
                    )
                plan.dest_name, plan.dest_raw, plan.dest_exists = name, raw, True
                plan.created = done.ok
                if done.ok:
                    self.event("folder_created", plan.source.name, destination=name)
                return
            last = done
        raise EngineError(
            ErrorCode.PROTOCOL_ERROR,
            f"could not create a destination folder for {plan.source.name}",
            "destination",
        )

    def _prepare(
        self, dst: Session, plan: FolderPlan, checkpoint: FolderCheckpoint, source_status: dict, dest_status: dict
    ) -> FolderTask:
        """Decide where to start in this folder and what may already be on the destination."""
        if "UIDVALIDITY" in dest_status:
            dest_state = MailboxState(
                dest_status.get("MESSAGES", 0), dest_status["UIDVALIDITY"], dest_status.get("UIDNEXT")
            )
            examined = False
        else:  # a server whose STATUS leaves something out
            dest_state, examined = dst.select(plan.dest_raw, readonly=True), True
        task = FolderTask(plan, checkpoint, source_status["UIDVALIDITY"], source_status.get("UIDNEXT", 0), start_uid=1)
        self.ledger.forget(checkpoint)
        messages = source_status.get("MESSAGES", 0)
        task.size_hint = (
            source_status.get("SIZE") or messages * ESTIMATED_MESSAGE_BYTES
        ) + messages * self._message_weight()
        dest_now = {"MESSAGES": dest_state.exists, "UIDVALIDITY": dest_state.uidvalidity, "UIDNEXT": dest_state.uidnext}
        start = reconcile.decide(checkpoint, source_status, dest_now)
        if start.changed:
            self.event(
                "uidvalidity_changed",
                plan.source.name,
                source_changed=not start.source_same,
                destination_changed=not start.dest_same,
            )
        reconcile.apply(checkpoint, start, source_status, dest_now)
        task.start_uid = start.start_uid
        if start.fingerprint_from is not None:
            # Copies may already be there (an APPEND sent but not confirmed, or no usable
            # checkpoint): recognise them, copy only the rest.
            if not examined:
                dst.select(plan.dest_raw, readonly=True)
            task.present = [fp for _, fp in fetch_fingerprints(dst, None, start.fingerprint_from)]
            task.reconcile_upto = start.reconcile_upto
            task.reconcile_from = start.reconcile_from
        self.save(checkpoint)
        return task

    # ----------------------------------------------------------------- big folders
    def _split_big_folders(self, src: Session, tasks: list[FolderTask]) -> list[FolderTask]:
        """Cut folders much bigger than their share into UID-range segments, so that parallel
        pipelines are not left idle while one of them copies a huge INBOX."""
        n = self._parallelism()
        if n < 2:
            return tasks
        max_pieces = max(8, n)
        total = sum(t.size_hint for t in tasks)
        target = max(total / (n * 3), 4 * self.options.batch_bytes)
        out: list[FolderTask] = []
        for task in tasks:
            # A folder being reconciled keeps its simpler one-pipeline path.
            if task.present is not None or task.size_hint < 1.5 * target:
                out.append(task)
                continue
            src.select(task.plan.source.raw, readonly=True)
            sizes = fetch_sizes(src, task.start_uid, task.only_uids)
            per_message = self._message_weight()
            cost = sum(size for _, size in sizes) + len(sizes) * per_message
            weight = cost
            if not src.has("STATUS=SIZE"):
                # The target came from estimates: weigh the folder the same way, or a folder of
                # small messages (where round trips, not bytes, set the pace) is never split.
                weight = max(weight, len(sizes) * (ESTIMATED_MESSAGE_BYTES + per_message))
            pieces = min(max_pieces, max(1, round(weight / target)))
            if pieces < 2 or len(sizes) < 2 * pieces:
                out.append(task)
                continue
            per_piece = cost / pieces
            segments: list[Segment] = []
            current: list[tuple[int, int]] = []
            acc = 0
            for uid, size in sizes:
                current.append((uid, size))
                acc += size + per_message
                if acc >= per_piece and len(segments) < pieces - 1:
                    segments.append(Segment(lo=0, hi=uid, sizes=current))
                    current, acc = [], 0
            if current:
                segments.append(Segment(lo=0, hi=current[-1][0], sizes=current))
            lo = task.start_uid - 1
            for seg in segments:
                seg.lo = seg.confirmed = lo
                lo = seg.hi
            split = FolderSplit(task.start_uid, segments)
            log.info("copying folder %s in %d parallel parts", task.plan.source.name, len(segments))
            for seg in segments:
                out.append(
                    dataclasses.replace(
                        task,
                        segment=seg,
                        split=split,
                        size_hint=sum(sz for _, sz in seg.sizes) + len(seg.sizes) * per_message,
                    )
                )
        return out
