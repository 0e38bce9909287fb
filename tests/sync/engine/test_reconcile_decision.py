"""The reconciliation decision (engine/reconcile.py) as a pure function: no server."""

from __future__ import annotations

from apps.sync.engine import FolderCheckpoint
from apps.sync.engine.reconcile import apply, decide, same_folder, unchanged


def status(messages: int, uidvalidity: int, uidnext: int) -> dict:
    return {"MESSAGES": messages, "UIDVALIDITY": uidvalidity, "UIDNEXT": uidnext}


def checkpoint(**fields) -> FolderCheckpoint:
    """A folder copied up to source UID 50 (its copies end below destination UID 51)."""
    base = dict(
        uidvalidity=7, last_uid=50, pending_uid=50, dest_uidvalidity=9, dest_uidnext=51, dest_mark_uid=50,
        messages_copied=50, bytes_copied=5000, source_uidnext=51,
    )  # fmt: skip
    return FolderCheckpoint("INBOX", "INBOX", **{**base, **fields})


def test_fresh_folder_into_an_empty_destination():
    ck = FolderCheckpoint("INBOX")
    start = decide(ck, status(10, 7, 11), status(0, 9, 1))
    assert (start.start_uid, start.fingerprint_from, start.restart, start.changed) == (1, None, True, False)
    apply(ck, start, status(10, 7, 11), status(0, 9, 1))
    assert (ck.uidvalidity, ck.dest_uidvalidity, ck.last_uid, ck.pending_uid) == (7, 9, 0, 0)
    assert (ck.dest_uidnext, ck.dest_mark_uid) == (1, 0)


def test_fresh_folder_into_a_destination_holding_mail_fingerprints_all_of_it():
    ck = FolderCheckpoint("INBOX")
    start = decide(ck, status(10, 7, 11), status(4, 9, 5))
    assert start.restart and not start.changed
    assert (start.start_uid, start.fingerprint_from, start.reconcile_from, start.reconcile_upto) == (1, 1, None, None)
    assert (start.pending_uid, start.dest_uidnext, start.dest_mark_uid) == (10, 1, 0)


def test_resume_after_checkpoint_starts_after_last_uid():
    ck = checkpoint(done=False)
    start = decide(ck, status(80, 7, 81), status(50, 9, 51))
    assert not start.restart and start.source_same and start.dest_same
    assert (start.start_uid, start.fingerprint_from) == (51, None)
    assert (start.pending_uid, start.dest_uidnext, start.dest_mark_uid) == (50, 51, 50)
    apply(ck, start, status(80, 7, 81), status(50, 9, 51))
    assert (ck.messages_copied, ck.bytes_copied, ck.last_uid) == (50, 5000, 50)  # counters kept


def test_source_uidvalidity_changed_restarts_and_recognises_the_copies():
    ck = checkpoint()
    start = decide(ck, status(50, 8, 51), status(50, 9, 51))
    assert start.restart and start.changed and not start.source_same and start.dest_same
    assert (start.start_uid, start.fingerprint_from) == (1, 1)
    apply(ck, start, status(50, 8, 51), status(50, 9, 51))
    assert (ck.uidvalidity, ck.last_uid, ck.messages_copied, ck.bytes_copied) == (8, 0, 0, 0)


def test_destination_folder_replaced_new_uidvalidity():
    ck = checkpoint()
    start = decide(ck, status(50, 7, 51), status(0, 10, 1))
    assert start.restart and start.changed and start.source_same and not start.dest_same
    assert (start.start_uid, start.fingerprint_from, start.pending_uid, start.dest_uidnext) == (1, None, 0, 1)
    apply(ck, start, status(50, 7, 51), status(0, 10, 1))
    assert ck.dest_uidvalidity == 10


def test_destination_folder_replaced_uidnext_went_back():
    # Same (time-based) UIDVALIDITY, but a UIDNEXT below the one the checkpoint knows: another folder.
    ck = checkpoint()
    assert not same_folder(ck, status(3, 9, 4))
    start = decide(ck, status(50, 7, 51), status(3, 9, 4))
    assert start.restart and not start.dest_same and start.fingerprint_from == 1


def test_crash_with_an_unconfirmed_window_reconciles_it():
    # An APPEND of source UIDs 51..60 was sent, not confirmed; the destination grew past 51.
    ck = checkpoint(pending_uid=60, done=False)
    start = decide(ck, status(80, 7, 81), status(55, 9, 56))
    assert not start.restart
    assert (start.start_uid, start.fingerprint_from) == (51, 51)
    assert (start.reconcile_from, start.reconcile_upto, start.pending_uid) == (50, 60, 60)
    assert (start.dest_uidnext, start.dest_mark_uid) == (51, 50)


def test_split_folder_window_starts_at_the_mark():
    ck = checkpoint(pending_uid=60, dest_mark_uid=40, done=False)
    start = decide(ck, status(80, 7, 81), status(58, 9, 59))
    assert (start.reconcile_from, start.reconcile_upto) == (40, 60)


def test_unconfirmed_window_where_nothing_landed_is_closed():
    ck = checkpoint(pending_uid=60, done=False)
    start = decide(ck, status(80, 7, 81), status(50, 9, 51))
    assert (start.start_uid, start.fingerprint_from, start.pending_uid) == (51, None, 50)


def test_destination_grew_with_new_source_mail_opens_a_window():
    # Checkpoint writes lost (a restored database): the destination holds more than it knows of.
    ck = checkpoint(done=False)
    start = decide(ck, status(70, 7, 71), status(60, 9, 61))
    assert (start.fingerprint_from, start.reconcile_from, start.reconcile_upto, start.pending_uid) == (51, 50, 70, 70)


def test_done_folder_with_nothing_new_is_unchanged():
    ck = checkpoint(done=True)
    assert unchanged(ck, status(50, 7, 51), status(50, 9, 51))
    assert unchanged(ck, status(50, 7, 51), None)  # dry run: the destination is not looked at
    assert not unchanged(ck, status(51, 7, 52), status(50, 9, 51))  # new mail on the source
    assert not unchanged(ck, status(50, 7, 51), status(0, 11, 1))  # destination folder replaced
    assert not unchanged(checkpoint(done=True, pending_uid=52), status(50, 7, 51), status(50, 9, 51))
    assert not unchanged(checkpoint(done=False), status(50, 7, 51), status(50, 9, 51))
