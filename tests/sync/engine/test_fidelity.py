"""What arrives on the destination: every folder, every byte, flags, dates, names."""

from __future__ import annotations

import dataclasses
import re

from apps.localmail import mail
from apps.sync.engine import CopyOptions, MemoryCheckpointStore, Security, copy_mailbox
from tests.support.proxy import TcpProxy

from .conftest import DOT_TO_SLASH, SLASH_TO_DOT, new_box


def run(src_box, dst_box, store=None, **options):
    store = store if store is not None else MemoryCheckpointStore()
    events = []
    result = copy_mailbox(
        src_box.endpoint(),
        dst_box.endpoint(),
        options=CopyOptions(**options),
        checkpoints=store,
        on_event=events.append,
    )
    return result, events, store


def test_full_copy_is_byte_identical_with_flags_keywords_and_dates(src, dst, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    result, events, _ = run(src, dst)
    assert result.status == "finished", result
    assert result.messages_copied == len(corpus)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
    # nested and empty folders exist and were subscribed
    with dst.account.client() as c:
        subscribed = {name for _, _, name in c.list_sub_folders()}
    assert {"Empty Folder", "Archive/2020/Q1", "Café/Réunions"} <= subscribed
    assert not any(e.kind == "message_failed" for e in events)


def test_awkward_messages_are_copied_as_they_are(src, dst):
    rng_mails = mail.build_corpus(seed=9, messages=16, folders=[("INBOX",), ("Odd",)])
    # bare LF, 8-bit headers, no Message-ID, 20 kB line, plus an in-folder duplicate
    assert any(re.search(rb"[^\r]\n", m.body) for m in rng_mails)
    assert any(b"Message-ID" not in m.body for m in rng_mails)
    assert any(len(line) > 10000 for m in rng_mails for line in m.body.split(b"\n"))
    mail.upload(src.account, rng_mails)
    result, _, _ = run(src, dst)
    assert result.status == "finished"
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_source_is_not_modified(src, dst, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    before = mail.uid_state(src.account)
    assert any(b"\\Seen" not in flags for folder in before.values() for flags, _ in folder.values())
    run(src, dst)
    run(src, dst)
    assert mail.uid_state(src.account) == before


def test_rerun_creates_no_duplicates_and_copies_new_mail(src, dst, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    first, _, store = run(src, dst)
    assert first.status == "finished"
    new = mail.build_corpus(seed=99, messages=7, folders=[("INBOX",), ("Archive", "2020")])
    mail.upload(src.account, new)
    second, _, _ = run(src, dst, store)
    assert second.copied_this_run == len(new)
    third, _, _ = run(src, dst, store)
    assert third.copied_this_run == 0
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_rerun_without_checkpoints_recognises_what_is_there(src, dst, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    run(src, dst)
    result, events, _ = run(src, dst)  # fresh store: every folder is fingerprinted
    assert result.status == "finished"
    assert result.copied_this_run == 0
    assert any(e.kind == "already_present" for e in events)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_noop_rerun_reads_no_message_again(src, dst):
    """What makes a rerun with nothing new fast: its checkpoints and the folders' STATUS say
    nothing changed, so no message is read or fingerprinted again (timings are in bench/)."""
    mails = mail.build_corpus(seed=4, messages=300)
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    mailbox_bytes = sum(len(m.body) for m in mails)
    _, _, store = run(src, dst)
    with TcpProxy("127.0.0.1", src.server.port) as source_proxy, TcpProxy("127.0.0.1", dst.server.port) as dest_proxy:
        source = dataclasses.replace(src.endpoint(), port=source_proxy.port)
        dest = dataclasses.replace(dst.endpoint(), port=dest_proxy.port)
        events = []
        result = copy_mailbox(source, dest, options=CopyOptions(), checkpoints=store, on_event=events.append)
    assert result.status == "finished" and result.copied_this_run == 0
    assert [e.kind for e in events if e.kind in ("folder_started", "already_present")] == [], "no folder reopened"
    # A few STATUS answers (about 10 kB here), not messages (700 kB).
    assert source_proxy.bytes_total + dest_proxy.bytes_total < mailbox_bytes / 20


def test_special_folders_map(src, dst):
    # source: dot profile with SPECIAL-USE attributes; destination: Exchange-like names only
    mails = mail.build_corpus(seed=5, messages=10, folders=[("Sent",), ("Trash",), ("Junk",), ("Drafts",)])
    mail.upload(src.account, mails)
    result, _, _ = run(src, dst)
    assert result.status == "finished"
    snap = mail.snapshot(dst.account)
    assert sum(snap[("Sent Items",)].values()) == sum(1 for m in mails if m.folder == ("Sent",))
    assert sum(snap[("Deleted Items",)].values()) == sum(1 for m in mails if m.folder == ("Trash",))
    assert sum(snap[("Junk E-mail",)].values()) == sum(1 for m in mails if m.folder == ("Junk",))
    assert ("Sent",) not in snap and ("Trash",) not in snap


def test_localized_special_folders_map_back_to_special_use(slash_server, dot_server):
    src_box, dst_box = new_box(slash_server), new_box(dot_server)
    mails = mail.build_corpus(seed=6, messages=8, folders=[("Sent Items",), ("Deleted Items",)])
    mail.upload(src_box.account, mails)
    mail.upload(src_box.account, mail.build_corpus(seed=7, messages=3, folders=[("Envoyés",)]))
    result, _, _ = run(src_box, dst_box)
    assert result.status == "finished"
    snap = mail.snapshot(dst_box.account)
    expected = {f: sum(1 for m in mails if m.folder == (f,)) for f in ("Sent Items", "Deleted Items")}
    assert sum(snap[("Sent",)].values()) == expected["Sent Items"]  # -> the \Sent folder INBOX.Sent
    assert sum(snap[("Trash",)].values()) == expected["Deleted Items"]
    assert sum(snap[("Envoyés",)].values()) == 3  # a second "sent" folder keeps its own name


def test_gmail_virtual_folders_are_skipped_and_sent_mail_maps_to_sent(plain_server, dst):
    gmail = new_box(plain_server)
    folders = [("[Gmail]", "All Mail"), ("[Gmail]", "Important"), ("[Gmail]", "Starred"), ("[Gmail]", "Sent Mail")]
    mails = mail.build_corpus(seed=8, messages=8, folders=folders)
    mail.upload(gmail.account, mails)
    result, _, _ = run(gmail, dst)
    assert result.status == "finished"
    snap = mail.snapshot(dst.account)
    assert sum(snap[("Sent Items",)].values()) == 2
    assert not any(path[:1] == ("[Gmail]",) and path[1:] != () and sum(c.values()) for path, c in snap.items())


def test_separator_translation(slash_server, dot_server):
    src_box, dst_box = new_box(slash_server), new_box(dot_server)
    mails = mail.build_corpus(seed=10, messages=6, folders=[("Archive", "2020"), ("A", "B", "C")])
    mail.upload(src_box.account, mails)
    result, _, _ = run(src_box, dst_box)
    assert result.status == "finished"
    with dst_box.account.client() as c:
        names = {name for _, _, name in c.list_folders()}
    assert {"INBOX.Archive.2020", "INBOX.A.B.C"} <= names
    assert mail.compare(mail.snapshot(src_box.account), mail.snapshot(dst_box.account), SLASH_TO_DOT) == []


def test_unicode_folder_names_round_trip(src, dst, slash_server):
    names = [("Café", "Réunions"), ("日本語",), ("Привет",), ("Spaß & Co",), ("עברית", "دليل")]
    mails = mail.build_corpus(seed=11, messages=10, folders=names)
    mail.upload(src.account, mails)
    run(src, dst)
    back = new_box(slash_server)
    run(dst, back)
    with back.account.client() as c:
        listed = {name for _, _, name in c.list_folders()}
    assert {"Café/Réunions", "日本語", "Привет", "Spaß & Co", "עברית/دليل"} <= listed
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(back.account), DOT_TO_SLASH) == []


def test_refused_folder_name_is_renamed_and_reported(plain_server, dst):
    # LAYOUT=fs accepts '.' in names; the Maildir++ destination refuses it.
    src_box = new_box(plain_server)
    mails = mail.build_corpus(seed=12, messages=4, folders=[("v1.2",), ("Q3.2024",)])
    mail.upload(src_box.account, mails)
    result, events, _ = run(src_box, dst)
    assert result.status == "finished"
    assert set(result.renamed_folders) == {"v1.2", "Q3.2024"}
    assert [e for e in events if e.kind == "folder_renamed"]
    snap = mail.snapshot(dst.account)
    for source_name, dest_name in result.renamed_folders.items():
        assert sum(snap[(dest_name,)].values()) == 2, (source_name, dest_name)


def test_keywords_the_destination_cannot_store_are_reported(slash_server, dot_server):
    src_box, dst_box = new_box(slash_server), new_box(dot_server)  # 200 vs 50 char keywords
    long_kw = "k" * 60
    m = mail.build_corpus(seed=13, messages=3, folders=[("INBOX",)])
    tagged = [mail.Mail(x.folder, x.body, (*x.flags, long_kw, "$Label1"), x.internaldate) for x in m]
    mail.upload(src_box.account, tagged)
    result, events, _ = run(src_box, dst_box)
    assert result.status == "finished"
    assert long_kw in result.dropped_keywords
    # Under the key the report reads; the sentences built from it: tests/sync/test_problem_lines.py
    assert [e.detail["keywords"] for e in events if e.kind == "keyword_dropped"] == [[long_kw]]
    flags = [f for c in mail.snapshot(dst_box.account)[("INBOX",)] for f in c[1]]
    assert "$Label1" in flags and long_kw not in flags


def test_tls_and_starttls_copy(src, dst):
    mail.upload(src.account, mail.build_corpus(seed=14, messages=5, folders=[("INBOX",)]))
    result = copy_mailbox(
        src.endpoint(Security.STARTTLS),
        dst.endpoint(Security.TLS),
        options=CopyOptions(),
        checkpoints=MemoryCheckpointStore(),
    )
    assert result.status == "finished", result
    assert result.messages_copied == 5


def test_dry_run_changes_nothing_and_plans_every_folder(src, dst, corpus):
    mail.upload(src.account, corpus, mail.DEFAULT_FOLDERS)
    before = mail.snapshot(dst.account)
    result, events, store = run(src, dst, dry_run=True)
    assert result.status == "finished"
    assert result.copied_this_run == 0
    planned = {e.folder: e.detail["destination"] for e in events if e.kind == "folder_planned"}
    assert planned["INBOX.Sent"] == "Sent Items" and planned["INBOX.Archive.2020.Q1"] == "Archive/2020/Q1"
    assert mail.snapshot(dst.account) == before
    assert store.load() == {}
