"""Against servers that behave like the providers customers leave and join: Gmail (labels as
folders, archived mail, LITERAL-, no MULTIAPPEND), Exchange / Microsoft 365 (estimated sizes,
no keywords, no MULTIAPPEND), Yahoo, a bare IMAP4rev1 server.  Each sits behind a proxy that
refuses whatever it did not advertise, so an extension used without being offered fails the test."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.sync.engine import CopyOptions, Endpoint, MemoryCheckpointStore, Security, copy_mailbox
from tests.support import gmail
from tests.support.imap_proxy import ImapProxy, Quirks

from .conftest import DOT_TO_SLASH, Box, new_box
from .test_resume import REPO, cli_command, run_then_kill


@pytest.fixture(scope="module")
def gmail_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.gmail_like()) as server:
        yield server


def proxied(box: Box, proxy: ImapProxy) -> tuple[Endpoint, mail.Account]:
    """The engine's and the test's view of `box` through `proxy`."""
    user = box.user
    endpoint = Endpoint(proxy.host, proxy.port, Security.NONE, user.login, user.password, timeout=20.0)
    account = mail.Account(proxy.host, proxy.port, user.login, user.password, box.account.prefix, box.account.separator)
    return endpoint, account


def expected_contents(messages) -> Counter:
    return Counter(
        (hashlib.sha256(m.body).hexdigest(), frozenset(m.flags), int(m.internaldate.timestamp())) for m in messages
    )


# Where the Gmail folders land on each destination: the dot profile has every special folder
# (\Archive included); the slash one (Exchange-like names) has no Drafts and no Archive.
DOT_DESTINATION = {
    gmail.SENT: ("Sent",), gmail.DRAFTS: ("Drafts",), gmail.TRASH: ("Trash",), gmail.SPAM: ("Junk",),
    "archive": ("Archive",),
}  # fmt: skip
SLASH_DESTINATION = {
    gmail.SENT: ("Sent Items",), gmail.DRAFTS: ("[Gmail]", "Drafts"), gmail.TRASH: ("Deleted Items",),
    gmail.SPAM: ("Junk E-mail",), "archive": ("Archive",),
}  # fmt: skip


@pytest.mark.parametrize(
    ("quirks", "method", "destination"),
    [
        (Quirks(gmail=True, refuse_unadvertised=True), "x-gm-msgid", "dot"),
        (Quirks(objectid=True, refuse_unadvertised=True), "emailid", "slash"),
        (Quirks(refuse_unadvertised=True), "fingerprint", "dot"),
    ],
    ids=["x-gm-msgid", "emailid", "fingerprints"],
)
def test_gmail_archived_mail_arrives_once_in_archive_and_nothing_twice(
    gmail_server, dot_server, slash_server, quirks, method, destination
):
    """Every message of a Gmail-like account arrives at least once and none twice in one folder:
    labelled ones in their label's folder, archived ones (in All Mail only) in Archive; All Mail,
    Starred and Important are not copied as folders; the result and the summary say how many."""
    src = new_box(gmail_server)
    layout = gmail.build_gmail_mailbox(src.account)
    assert len(layout.archived) == 4
    dst = new_box(dot_server if destination == "dot" else slash_server)
    where = DOT_DESTINATION if destination == "dot" else SLASH_DESTINATION
    events = []
    with ImapProxy(gmail_server.port, quirks) as proxy:
        source, _ = proxied(src, proxy)
        store = MemoryCheckpointStore()
        result = copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=store, on_event=events.append)
        assert proxy.refused == [], proxy.reasons
        assert result.status == "finished", result
        archive_name = dst.account.server_name(where["archive"])
        assert result.archived == {"folder": archive_name, "found": 4, "copied": 4}
        assert [(e.detail["messages"], e.detail["method"]) for e in events if e.kind == "archived_found"] == [
            (4, method)
        ]
        assert [e.detail["archived"] for e in events if e.kind == "summary"] == [result.archived]

        expected = {}
        for folder, messages in layout.folders.items():
            if folder in gmail.VIEWS:
                continue
            path = where.get(folder) or mail.Account("", 0, "", "", "", "/").path_of(folder)
            expected[path] = expected.get(path, Counter()) + expected_contents(messages)
        expected[where["archive"]] = expected_contents(layout.archived)
        after = mail.snapshot(dst.account)
        assert mail.compare(expected, after) == []
        arrived = {fp[0] for counter in after.values() for fp in counter}
        assert arrived == {hashlib.sha256(m.body).hexdigest() for m in layout.messages}

        # A rerun, with and without checkpoints: nothing more.
        for again_store in (store, MemoryCheckpointStore()):
            again = copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=again_store)
            assert again.status == "finished" and again.copied_this_run == 0, again
        assert mail.snapshot(dst.account) == after
        assert proxy.refused == []


def test_staff_can_have_all_mail_copied_whole_as_a_folder(gmail_server, dot_server):
    """After a first copy (archived messages into Archive), staff have All Mail copied whole: the
    same job then fills a folder with all of All Mail, touching nothing else; switching back
    copies nothing more."""
    src = new_box(gmail_server)
    layout = gmail.build_gmail_mailbox(src.account)
    dst = new_box(dot_server)
    store = MemoryCheckpointStore()
    with ImapProxy(gmail_server.port, Quirks(gmail=True, refuse_unadvertised=True)) as proxy:
        source, _ = proxied(src, proxy)
        assert copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=store).archived["copied"] == 4
        before = mail.snapshot(dst.account)
        whole = CopyOptions(copy_all_mail_as_folder=True)
        result = copy_mailbox(source, dst.endpoint(), options=whole, checkpoints=store)
        assert result.status == "finished" and result.archived == {}
        after = mail.snapshot(dst.account)
        assert after[("[Gmail]", "All Mail")] == expected_contents(layout.folders[gmail.ALL_MAIL])
        assert {path: c for path, c in after.items() if path != ("[Gmail]", "All Mail")} == {
            path: c for path, c in before.items() if path != ("[Gmail]", "All Mail")
        }
        back = copy_mailbox(source, dst.endpoint(), options=CopyOptions(), checkpoints=store)
        assert back.status == "finished" and back.copied_this_run == 0, back
        assert mail.snapshot(dst.account) == after


@pytest.fixture(scope="module")
def exchange_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.exchange_like()) as server:
        yield server


@pytest.fixture(scope="module")
def yahoo_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.yahoo_like()) as server:
        yield server


@pytest.fixture(scope="module")
def bare_server() -> Iterator[DovecotServer]:
    with DovecotServer(Profile.bare()) as server:
        yield server


def cli(source_port: int, src: Box, dest_port: int, dst: Box, state, *extra: str) -> tuple[list[str], dict]:
    return cli_command(src, dst, state, *extra, source_port=source_port, dest_port=dest_port)


@pytest.mark.parametrize("side", ["source", "destination"])
def test_with_estimated_sizes_kill_9_then_rerun_and_a_new_job_duplicate_nothing(
    dot_server, slash_server, tmp_path, side
):
    """RFC822.SIZE off by 13 bytes on one side (Exchange estimates sizes): a copy killed with
    kill -9 several times then run to the end, and then a new job (no checkpoints) onto the
    destination that now holds the whole mailbox, leave exactly one copy of every message."""
    src, dst = new_box(dot_server), new_box(slash_server)
    mail.upload(src.account, mail.build_corpus(seed=61, messages=240, sizes=(0, 3000)), mail.DEFAULT_FOLDERS)
    shifted = src.server if side == "source" else dst.server
    with ImapProxy(shifted.port, Quirks(size_shift=13)) as proxy:
        ports = (proxy.port, dst.server.port) if side == "source" else (src.server.port, proxy.port)
        state = tmp_path / "state.json"
        cmd, env = cli(ports[0], src, ports[1], dst, state, "--batch-mb", "0.02", "--max-messages-per-second", "100")
        for delay in (0.35, 0.5, 0.2, 0.65):
            run_then_kill(cmd, env, state, delay)
        assert json.loads(state.read_text()), "the killed runs checkpointed nothing"
        final = subprocess.run(cmd[:-4], env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stdout + final.stderr
        expected = mail.snapshot(src.account)
        assert mail.compare(expected, mail.snapshot(dst.account), DOT_TO_SLASH) == []

        new_job, env = cli(ports[0], src, ports[1], dst, tmp_path / "new-job.json", "--json")
        again = subprocess.run(new_job, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads(again.stdout)["copied_this_run"] == 0
        assert mail.compare(expected, mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_an_exchange_like_destination_drops_keywords_and_the_summary_counts_them(dot_server, exchange_server, tmp_path):
    """No keywords kept (no \\* in PERMANENTFLAGS), sizes estimated, no MULTIAPPEND: everything
    arrives with its system flags, the messages stored without their keywords are counted, the
    exit status is 1, and no extension that was not offered is used."""
    src, dst = new_box(dot_server), new_box(exchange_server)
    mails = mail.build_corpus(seed=62, messages=90, folders=[("INBOX",), ("Work",), ("Archive", "2020")])
    mail.upload(src.account, mails)
    with_keywords = sum(1 for m in mails if any(not f.startswith("\\") for f in m.flags))
    assert with_keywords
    quirks = Quirks(no_keywords=True, size_shift=-7, refuse_unadvertised=True)
    with ImapProxy(exchange_server.port, quirks) as proxy:
        cmd, env = cli(src.server.port, src, proxy.port, dst, tmp_path / "state.json", "--json")
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert done.returncode == 1, done.stdout + done.stderr
        summary = json.loads(done.stdout)
        assert summary["status"] == "finished" and summary["not_copied"] == []
        assert summary["flags_dropped"] == with_keywords
        assert set(summary["dropped_keywords"]) == {f for m in mails for f in m.flags if not f.startswith("\\")}
        assert proxy.refused == [] and proxy.commands["MULTIAPPEND"] == 0

        def system_flags_only(snapshot):
            return {
                path: Counter(
                    {(h, frozenset(f for f in flags if f.startswith("\\")), d): n for (h, flags, d), n in c.items()}
                )
                for path, c in snapshot.items()
            }

        expected = system_flags_only(mail.snapshot(src.account))
        dst_view = mail.Account(proxy.host, proxy.port, dst.user.login, dst.user.password, "", "/")
        assert mail.compare(expected, system_flags_only(mail.snapshot(dst_view)), DOT_TO_EXCHANGE) == []
        new_job, env = cli(src.server.port, src, proxy.port, dst, tmp_path / "new-job.json", "--json")
        again = json.loads(
            subprocess.run(new_job, env=env, cwd=REPO, capture_output=True, text=True, timeout=180).stdout
        )
        assert again["copied_this_run"] == 0


# Where the dot profile's special folders land, by role.
SPECIAL = {
    "gmail_server": {("Sent",): ("[Gmail]", "Sent Mail"), ("Drafts",): ("[Gmail]", "Drafts"),
                     ("Trash",): ("[Gmail]", "Trash"), ("Junk",): ("[Gmail]", "Spam")},
    "yahoo_server": {("Junk",): ("Bulk Mail",), ("Drafts",): ("Draft",)},
    "bare_server": {},
    "exchange_server": {},
}  # fmt: skip
DOT_TO_EXCHANGE = {("Sent",): ("Sent Items",), ("Trash",): ("Deleted Items",), ("Junk",): ("Junk Email",)}


@pytest.mark.parametrize(
    ("source_server", "source_quirks", "dest_server", "dest_quirks"),
    [
        ("dot_server", None, "gmail_server", Quirks(gmail=True, refuse_unadvertised=True)),
        ("dot_server", None, "yahoo_server", Quirks(objectid=True, refuse_unadvertised=True)),
        ("dot_server", None, "bare_server", Quirks(refuse_unadvertised=True)),
        ("bare_server", Quirks(refuse_unadvertised=True), "exchange_server", Quirks(refuse_unadvertised=True)),
    ],
    ids=["into-gmail", "into-yahoo", "into-bare", "bare-into-exchange"],
)
def test_only_advertised_extensions_are_used_and_the_copy_is_exact(
    request, source_server, source_quirks, dest_server, dest_quirks
):
    src, dst = new_box(request.getfixturevalue(source_server)), new_box(request.getfixturevalue(dest_server))
    mails = mail.build_corpus(seed=63, messages=60, folders=[("INBOX",), ("Projects",), ("Projects", "Alpha")])
    mail.upload(src.account, mails)
    with (
        ImapProxy(src.server.port, source_quirks or Quirks()) as source_proxy,
        ImapProxy(dst.server.port, dest_quirks) as dest_proxy,
    ):
        source, _ = proxied(src, source_proxy)
        dest, _ = proxied(dst, dest_proxy)
        result = copy_mailbox(source, dest, options=CopyOptions(), checkpoints=MemoryCheckpointStore())
        assert source_proxy.refused == [] and dest_proxy.refused == [], source_proxy.reasons + dest_proxy.reasons
        assert result.status == "finished" and result.exact, result
        assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), SPECIAL[dest_server]) == []
        again = copy_mailbox(source, dest, options=CopyOptions(), checkpoints=MemoryCheckpointStore())
        assert again.copied_this_run == 0 and dest_proxy.refused == []


def test_a_destination_that_ignores_the_dates_it_is_given_is_reported(dot_server, slash_server):
    """A server that stores the arrival time instead of the date given in APPEND: every message
    is listed as changed (date_changed), the copy is not called exact, a rerun adds nothing."""
    src, dst = new_box(dot_server), new_box(slash_server)
    mails = mail.build_corpus(seed=64, messages=30, folders=[("INBOX",), ("Work",)], duplicate_every=0)
    mail.upload(src.account, mails)
    with ImapProxy(slash_server.port, Quirks(ignore_append_date=True)) as proxy:
        dest, _ = proxied(dst, proxy)
        result = copy_mailbox(src.endpoint(), dest, options=CopyOptions(), checkpoints=MemoryCheckpointStore())
        assert result.status == "finished" and not result.exact
        assert result.altered_total == len(mails)
        assert {m.reason for m in result.altered} == {"date_changed"}
        again = copy_mailbox(src.endpoint(), dest, options=CopyOptions(), checkpoints=MemoryCheckpointStore())
        assert again.copied_this_run == 0


def test_a_destination_that_keeps_what_it_is_given_is_trusted_after_a_sample(dot_server, slash_server):
    """Dovecot stores messages as given: after a sample of each kind the engine stops reading
    messages back (the proxy counts the FETCHes sent to the destination)."""
    src, dst = new_box(dot_server), new_box(slash_server)
    mails = mail.build_corpus(seed=65, messages=400, folders=[("INBOX",)], duplicate_every=0)
    mail.upload_fast(src.account, mails)
    with ImapProxy(slash_server.port) as proxy:
        dest, _ = proxied(dst, proxy)
        options = CopyOptions(parallelism=1, batch_bytes=20_000)  # many small batches
        result = copy_mailbox(src.endpoint(), dest, options=options, checkpoints=MemoryCheckpointStore())
        assert result.status == "finished" and result.exact and result.altered == []
        # A third of these messages have raw 8-bit subjects: read back in every batch, there would
        # be an EXAMINE per APPEND (16 and 16 here without the sample).
        assert proxy.commands["APPEND"] >= 12
        assert proxy.commands["EXAMINE"] <= proxy.commands["APPEND"] / 2, proxy.commands


def test_a_big_folder_is_split_between_pipelines_without_status_size(bare_server, slash_server, caplog):
    """Gmail, Microsoft 365 and Yahoo give no folder sizes: a big INBOX is still copied by several
    pipelines at once (its bytes estimated from its message count), and the copy stays exact."""
    from apps.localmail.dovecot import BARE_CAPABILITY

    assert "STATUS=SIZE" not in BARE_CAPABILITY
    src, dst = new_box(bare_server), new_box(slash_server)
    mails = mail.build_corpus(seed=64, messages=400, folders=[("INBOX",)])
    mail.upload(src.account, mails)
    with ImapProxy(src.server.port, Quirks(refuse_unadvertised=True)) as source_proxy:
        source, _ = proxied(src, source_proxy)
        dest = Endpoint(dst.server.host, dst.server.port, Security.NONE, dst.user.login, dst.user.password)
        options = CopyOptions(parallelism=4, batch_bytes=256 * 1024)
        with caplog.at_level("INFO", logger="imapcopy.engine"):
            result = copy_mailbox(source, dest, options=options, checkpoints=MemoryCheckpointStore())
        assert source_proxy.refused == [], source_proxy.reasons
    assert result.status == "finished" and result.exact, result
    assert any("copying folder INBOX in" in record.getMessage() for record in caplog.records)
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
