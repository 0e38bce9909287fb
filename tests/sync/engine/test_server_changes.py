"""A destination that changes between two runs of one job: every run learns the servers afresh."""

from __future__ import annotations

from apps.localmail import mail
from apps.sync.engine import CopyOptions, MemoryCheckpointStore, copy_mailbox

from .conftest import DOT_TO_SLASH, new_box

NESTED = [("INBOX",), ("Archive",), ("Archive", "2019"), ("Archive", "2019", "Q1"), ("Projects", "Ünïcödé")]


def test_destination_separator_changed_between_runs_keeps_the_hierarchy(dot_server, slash_server, plain_server):
    """The destination moved to a server with another hierarchy separator ('/' then '.'): the
    second run maps the folders afresh (INBOX.Archive.2019, not a flattened Archive_2019) and
    copies every message once, although the checkpoints call every folder done."""
    src = new_box(plain_server)
    mails = mail.build_corpus(seed=41, messages=60, folders=NESTED)
    mail.upload(src.account, mails, NESTED)
    store = MemoryCheckpointStore()
    first = new_box(slash_server)
    result = copy_mailbox(src.endpoint(), first.endpoint(), options=CopyOptions(), checkpoints=store)
    assert result.status == "finished"
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(first.account)) == []

    moved = new_box(dot_server)  # separator ".", prefix "INBOX."
    events = []
    result = copy_mailbox(
        src.endpoint(), moved.endpoint(), options=CopyOptions(), checkpoints=store, on_event=events.append
    )
    assert result.status == "finished", result
    assert result.renamed_folders == {}
    with moved.account.client() as client:
        names = {name for _flags, _sep, name in client.list_folders()}
    assert {"INBOX.Archive.2019", "INBOX.Archive.2019.Q1", "INBOX.Projects.Ünïcödé"} <= names
    assert not [name for name in names if "_" in name or "/" in name]
    # Every message exactly once in its folder, the special folders where the dot server keeps them.
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(moved.account)) == []
    assert {e.folder for e in events if e.kind == "folder_remapped"} >= {"Archive/2019", "Archive/2019/Q1"}


def test_a_destination_folder_deleted_between_runs_is_copied_again(src, dst):
    """The checkpoint says done, but the destination lost the folder (deleted by its owner, or a
    new server): the next run sees it and copies it again, once."""
    mails = mail.build_corpus(seed=42, messages=30, folders=[("INBOX",), ("Work",)])
    mail.upload(src.account, mails, [("INBOX",), ("Work",)])
    store = MemoryCheckpointStore()
    assert copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store).status == "finished"
    with dst.account.client() as client:
        client.delete_folder("Work")
    again = copy_mailbox(src.endpoint(), dst.endpoint(), options=CopyOptions(), checkpoints=store)
    assert again.status == "finished"
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
