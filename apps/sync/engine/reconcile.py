"""Where a folder's copy starts: the reconciliation decision, as pure functions.

In: the folder's checkpoint, the source folder's STATUS and the destination folder's STATUS (dicts
with "MESSAGES", "UIDVALIDITY", "UIDNEXT").  Out: a `StartPoint` — the first source UID to copy,
whether the destination folder is still the one the checkpoint knows, which destination UIDs to
fingerprint and the source window they may account for, and the checkpoint fields to set.
`apply()` writes those fields into the checkpoint; nothing here talks to a server."""

from __future__ import annotations

from dataclasses import dataclass

from .model import FolderCheckpoint


@dataclass(frozen=True)
class StartPoint:
    start_uid: int  # first source UID to consider
    source_same: bool  # the source folder's UIDVALIDITY is the checkpoint's
    dest_same: bool  # the destination folder is the one the checkpoint knows (same_folder)
    # Destination UIDs >= fingerprint_from may hold copies of source messages: fingerprint them
    # (None: nothing to reconcile).
    fingerprint_from: int | None
    # The source window those copies may account for: (reconcile_from, reconcile_upto]; None, None
    # with fingerprint_from set: the whole folder.
    reconcile_from: int | None
    reconcile_upto: int | None
    # The checkpoint as it must be saved before copying.
    pending_uid: int
    dest_uidnext: int | None
    dest_mark_uid: int | None
    restart: bool  # the checkpoint no longer applies: start the folder afresh (counters reset)
    # A restart of a folder the checkpoint knew (not a first copy): report `uidvalidity_changed`.
    changed: bool = False


def same_folder(checkpoint: FolderCheckpoint, dest_status: dict) -> bool:
    """Whether the destination folder is still the one the checkpoint knows: same UIDVALIDITY,
    and a UIDNEXT that has not gone back (it never does in one folder; a new server's folder
    created in the same second can share a time-based UIDVALIDITY)."""
    if checkpoint.dest_uidvalidity is None or checkpoint.dest_uidvalidity != dest_status.get("UIDVALIDITY"):
        return False
    uidnext = dest_status.get("UIDNEXT")
    return checkpoint.dest_uidnext is None or uidnext is None or uidnext >= checkpoint.dest_uidnext


def unchanged(checkpoint: FolderCheckpoint, source_status: dict, dest_status: dict | None) -> bool:
    """Nothing to do in this folder: done, nothing new on the source, the destination folder
    still the one the checkpoint knows (`dest_status` None: not looked at, as in a dry run)."""
    return (
        checkpoint.done
        and checkpoint.uidvalidity == source_status.get("UIDVALIDITY")
        and checkpoint.source_uidnext == source_status.get("UIDNEXT")
        and checkpoint.pending_uid <= checkpoint.last_uid
        and (dest_status is None or same_folder(checkpoint, dest_status))
    )


def decide(checkpoint: FolderCheckpoint, source_status: dict, dest_status: dict) -> StartPoint:
    """Decide where to start in a folder and what may already be on the destination.

    * checkpoint valid on both sides: start after ``last_uid``; if an APPEND was sent but not
      confirmed (``pending_uid > last_uid``) and the destination grew past ``dest_uidnext``,
      fingerprint the destination from ``dest_uidnext`` for the window (dest_mark_uid, pending_uid];
      a destination that grew with no window open while the source has messages past
      ``last_uid`` opens the window up to the source's UIDNEXT - 1 (copies whose checkpoint
      writes were lost, mail delivered there since);
    * otherwise (no checkpoint, a UIDVALIDITY changed, the destination folder replaced): start
      afresh, fingerprinting the whole destination folder if it holds anything."""
    source_uidnext = source_status.get("UIDNEXT", 0)
    dest_uidnext = dest_status.get("UIDNEXT")
    source_same = checkpoint.uidvalidity == source_status["UIDVALIDITY"]
    dest_same = same_folder(checkpoint, dest_status)
    if source_same and dest_same:
        pending = checkpoint.pending_uid
        window_open = pending > checkpoint.last_uid
        dest_grew = checkpoint.dest_uidnext is not None and (dest_uidnext or 0) > checkpoint.dest_uidnext
        if dest_grew and not window_open and source_uidnext - 1 > checkpoint.last_uid:
            pending, window_open = source_uidnext - 1, True
        if window_open and dest_grew:
            return StartPoint(
                start_uid=checkpoint.last_uid + 1, source_same=True, dest_same=True,
                fingerprint_from=checkpoint.dest_uidnext,
                reconcile_from=checkpoint.last_uid if checkpoint.dest_mark_uid is None else checkpoint.dest_mark_uid,
                reconcile_upto=pending,
                pending_uid=pending, dest_uidnext=checkpoint.dest_uidnext, dest_mark_uid=checkpoint.dest_mark_uid,
                restart=False,
            )  # fmt: skip
        return StartPoint(
            start_uid=checkpoint.last_uid + 1, source_same=True, dest_same=True,
            fingerprint_from=None, reconcile_from=None, reconcile_upto=None,
            pending_uid=checkpoint.last_uid, dest_uidnext=dest_uidnext, dest_mark_uid=checkpoint.last_uid,
            restart=False,
        )  # fmt: skip
    changed = checkpoint.uidvalidity is not None or checkpoint.dest_uidvalidity is not None
    if dest_status.get("MESSAGES", 0):
        # No usable checkpoint but mail already there: recognise it, copy only the rest.
        return StartPoint(
            start_uid=1, source_same=source_same, dest_same=dest_same,
            fingerprint_from=1, reconcile_from=None, reconcile_upto=None,
            pending_uid=max(source_status.get("UIDNEXT", 1) - 1, 1), dest_uidnext=1, dest_mark_uid=0, restart=True,
            changed=changed,
        )  # fmt: skip
    return StartPoint(
        start_uid=1, source_same=source_same, dest_same=dest_same,
        fingerprint_from=None, reconcile_from=None, reconcile_upto=None,
        pending_uid=0, dest_uidnext=dest_uidnext, dest_mark_uid=0, restart=True, changed=changed,
    )  # fmt: skip


def apply(checkpoint: FolderCheckpoint, start: StartPoint, source_status: dict, dest_status: dict) -> None:
    """Write the decision into the checkpoint (a restart resets its UIDVALIDITYs and counters)."""
    if start.restart:
        checkpoint.uidvalidity = source_status["UIDVALIDITY"]
        checkpoint.dest_uidvalidity = dest_status.get("UIDVALIDITY")
        checkpoint.last_uid = 0
        checkpoint.messages_copied = checkpoint.messages_skipped = checkpoint.messages_failed = 0
        checkpoint.bytes_copied = checkpoint.flags_dropped = checkpoint.altered = 0
    checkpoint.pending_uid = start.pending_uid
    checkpoint.dest_uidnext = start.dest_uidnext
    checkpoint.dest_mark_uid = start.dest_mark_uid
