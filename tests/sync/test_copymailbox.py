"""Staff's command-line copy: same engine, same job records, resumable, scriptable."""

import json
import os
import secrets
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from apps.localmail import mail
from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO, subprocess_env
from tests.selfservice.conftest import seed_mailbox
from tests.support.proxy import TcpProxy
from tests.sync.conftest import all_messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def accounts(imap_servers):
    source_server, destination_server, bundle = imap_servers
    source, destination = source_server.new_user(), destination_server.new_user()
    seed_mailbox(source_server, source)
    urls = (
        f"imaps://{source.login}@localhost:{source_server.tls_port}",
        f"imaps://{destination.login}@localhost:{destination_server.tls_port}",
    )
    passwords = {"IMAPCOPY_SOURCE_PASSWORD": source.password, "IMAPCOPY_DEST_PASSWORD": destination.password}
    return urls, passwords, bundle


def copymailbox(*args, env_extra=None):
    env = {**subprocess_env(), **(env_extra or {})}
    env.pop("IMAPCOPY_CA_FILE", None)
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "copymailbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_copy_prints_a_json_summary_and_exits_zero(accounts):
    (source_url, destination_url), passwords, bundle = accounts
    result = copymailbox(source_url, destination_url, "--cafile", str(bundle), "--json", env_extra=passwords)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "finished"
    assert (summary["messages_copied"], summary["messages_skipped"], summary["messages_failed"]) == (5, 0, 0)
    assert summary["folders"] >= 2 and summary["bytes_copied"] > 0 and summary["seconds"] > 0
    assert SyncJob.objects.get().status == JobStatus.FINISHED
    for password in passwords.values():
        assert password not in result.stdout + result.stderr


def test_rerun_resumes_the_same_job_and_copies_nothing_again(accounts):
    (source_url, destination_url), passwords, bundle = accounts
    first = copymailbox(source_url, destination_url, "--cafile", str(bundle), "--json", env_extra=passwords)
    second = copymailbox(source_url, destination_url, "--cafile", str(bundle), "--json", env_extra=passwords)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["job"] == json.loads(first.stdout)["job"]
    assert SyncJob.objects.count() == 1
    job = SyncJob.objects.get()
    assert job.attempts == 2
    assert job.messages_copied == 5, "the rerun found everything in place"


def test_untrusted_certificate_is_a_fatal_tls_error(accounts):
    (source_url, destination_url), passwords, _bundle = accounts
    result = copymailbox(source_url, destination_url, "--json", env_extra=passwords)
    assert result.returncode == 2
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["error_code"]) == ("failed", "tls_error")


def test_insecure_skips_certificate_checks(accounts):
    (source_url, destination_url), passwords, _bundle = accounts
    result = copymailbox(source_url, destination_url, "--insecure", "--json", env_extra=passwords)
    assert result.returncode == 0, result.stderr


def test_missing_password_without_a_terminal_is_an_error(accounts):
    (source_url, destination_url), _passwords, bundle = accounts
    result = copymailbox(source_url, destination_url, "--cafile", str(bundle))
    assert result.returncode == 2
    assert "Set IMAPCOPY_SOURCE_PASSWORD" in result.stderr
    assert not SyncJob.objects.exists()


def test_wrong_password_exits_two_with_auth_failed(accounts):
    (source_url, destination_url), passwords, bundle = accounts
    wrong = {**passwords, "IMAPCOPY_DEST_PASSWORD": "not-it"}
    result = copymailbox(source_url, destination_url, "--cafile", str(bundle), "--json", env_extra=wrong)
    assert result.returncode == 2
    summary = json.loads(result.stdout)
    assert (summary["error_code"], summary["error_side"]) == ("auth_failed", "destination")


def test_a_killed_run_is_taken_over_by_the_next_one_without_duplicates(imap_servers, filled_accounts):
    import signal
    import time

    from apps.providers.models import Provider

    bundle = imap_servers[2]
    (source_server, source_user, source), (destination_server, destination_user, destination) = filled_accounts(
        seed=9, messages=600
    )
    Provider.objects.filter(slug="other").update(max_messages_per_second=50)
    urls = (
        f"imaps://{source_user.login}@localhost:{source_server.tls_port}",
        f"imaps://{destination_user.login}@localhost:{destination_server.tls_port}",
    )
    env = {
        **subprocess_env(),
        "IMAPCOPY_SOURCE_PASSWORD": source_user.password,
        "IMAPCOPY_DEST_PASSWORD": destination_user.password,
    }
    command = [sys.executable, str(REPO / "manage.py"), "copymailbox", *urls, "--cafile", str(bundle), "--json"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = SyncJob.objects.first()
        if job and job.status == JobStatus.RUNNING and 50 < job.messages_copied < 400:
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert SyncJob.objects.get().status == JobStatus.RUNNING

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    job = SyncJob.objects.get()
    assert (job.status, job.attempts) == (JobStatus.FINISHED, 2)

    assert all_messages(destination) == all_messages(source)


def test_skipped_messages_are_copied_by_a_rerun_once_the_limit_allows_them(imap_servers, filled_accounts):
    from apps.sync.models import FolderProgress

    bundle = imap_servers[2]
    (source_server, source_user, source), (destination_server, destination_user, destination) = filled_accounts(
        seed=12, messages=60, sizes=(500, 40_000)
    )
    urls = (
        f"imaps://{source_user.login}@localhost:{source_server.tls_port}",
        f"imaps://{destination_user.login}@localhost:{destination_server.tls_port}",
    )
    passwords = {"IMAPCOPY_SOURCE_PASSWORD": source_user.password, "IMAPCOPY_DEST_PASSWORD": destination_user.password}
    limited = copymailbox(*urls, "--cafile", str(bundle), "--json",
                          env_extra={**passwords, "IMAPCOPY_MAX_MESSAGE_BYTES": "20000"})  # fmt: skip
    assert limited.returncode == 1, limited.stderr
    summary = json.loads(limited.stdout)
    assert summary["status"] == "finished_with_errors" and summary["messages_skipped"] > 0
    # The staff's folder table adds up to what the command said, although the checkpoints stop
    # below the first skipped message of each folder.
    rows = FolderProgress.objects.filter(job__isnull=False)
    assert sum(row.messages_copied for row in rows) == summary["messages_copied"]
    assert sum(row.messages_skipped for row in rows) == summary["messages_skipped"]

    rerun = copymailbox(*urls, "--cafile", str(bundle), "--json", env_extra=passwords)
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["status"] == "finished"
    assert (again["messages_copied"], again["messages_skipped"]) == (again["messages_total"], 0)
    assert all_messages(destination) == all_messages(source)


# --- OAuth2 accounts: --oauth-token-file (issue 15) ---------------------------------------------


@pytest.fixture
def token_client(oauth_server):
    """The operator's own client at the authorization server, whose tokens the script writes."""
    return oauth_server.register_client(f"operator-script-{secrets.token_hex(4)}")


def plain_url(address: str, port: int) -> str:
    return f"imap+plain://{quote(address, safe='')}@127.0.0.1:{port}"


def write_token(path, token: str) -> str:
    # As an operator's script should: the new file replaces the old one whole.
    partial = path.with_name(path.name + ".new")
    partial.write_text(token + "\n")
    os.replace(partial, path)
    return str(path)


def bearer_logins(server, login: str, method: str = "OAUTHBEARER") -> int:
    return server.log_file.read_text().count(f"Login: user=<{login}>, method={method}")


def without_passwords() -> dict:
    # No password in the environment, and stdin is no terminal: any password asked for fails the run.
    return {"IMAPCOPY_SOURCE_PASSWORD": "", "IMAPCOPY_DEST_PASSWORD": ""}


def test_oauth_token_files_log_both_sides_in_without_any_password(
    oauth_server, oauth_dovecot, oauth_mailbox, token_client, tmp_path
):
    source, destination = oauth_mailbox("cli-source"), oauth_mailbox("cli-destination")
    seed_mailbox(oauth_dovecot, source.user, separator="/")
    tokens = {
        side: oauth_server.issue_tokens(box.address, token_client)["access_token"]
        for side, box in (("source", source), ("destination", destination))
    }
    files = {side: write_token(tmp_path / f"{side}.token", token) for side, token in tokens.items()}
    source_passwords_before = bearer_logins(oauth_dovecot, source.address, "PLAIN")  # the seeding's own login

    result = copymailbox(
        plain_url(source.address, oauth_dovecot.port),
        plain_url(destination.address, oauth_dovecot.port),
        "--oauth-token-file", f"source={files['source']}",
        "--oauth-token-file", f"destination={files['destination']}",
        "--json",
        env_extra=without_passwords(),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["messages_copied"]) == ("finished", 5)
    assert bearer_logins(oauth_dovecot, source.address) >= 1
    assert bearer_logins(oauth_dovecot, destination.address) >= 1
    assert bearer_logins(oauth_dovecot, source.address, "PLAIN") == source_passwords_before
    assert bearer_logins(oauth_dovecot, destination.address, "PLAIN") == 0
    for token in tokens.values():
        assert token not in result.stdout + result.stderr
    source_box = mail.Account("127.0.0.1", oauth_dovecot.port, source.address, source.user.password)
    destination_box = mail.Account("127.0.0.1", oauth_dovecot.port, destination.address, destination.user.password)
    assert all_messages(destination_box) == all_messages(source_box)


@pytest.mark.slow
def test_a_token_file_rewritten_mid_copy_is_read_again_at_the_next_connection(
    oauth_server, oauth_dovecot, oauth_mailbox, token_client, tmp_path
):
    from apps.providers.models import Provider

    source, destination = oauth_mailbox("cli-rewritten"), oauth_mailbox("cli-rewritten-to")
    source_box = mail.Account("127.0.0.1", oauth_dovecot.port, source.address, source.user.password)
    destination_box = mail.Account("127.0.0.1", oauth_dovecot.port, destination.address, destination.user.password)
    mails = mail.build_corpus(seed=151, messages=150, sizes=(500, 2000))
    mail.upload(source_box, mails, [])
    Provider.objects.filter(slug="other").update(max_messages_per_second=10)  # ~15 s of copy
    # Long enough for the command to start and log in with it, short enough to expire mid-copy.
    first_seconds = 8
    first = oauth_server.issue_tokens(source.address, token_client, expires_in=first_seconds)["access_token"]
    first_expires = time.monotonic() + first_seconds
    source_file = write_token(tmp_path / "source.token", first)
    destination_token = oauth_server.issue_tokens(destination.address, token_client, expires_in=300)["access_token"]
    destination_file = write_token(tmp_path / "destination.token", destination_token)

    with TcpProxy("127.0.0.1", oauth_dovecot.port) as proxy:
        env = {**subprocess_env(), **without_passwords()}
        command = [
            sys.executable, str(REPO / "manage.py"), "copymailbox",
            plain_url(source.address, proxy.port), plain_url(destination.address, oauth_dovecot.port),
            "--oauth-token-file", f"source={source_file}",
            "--oauth-token-file", f"destination={destination_file}",
            "--json",
        ]  # fmt: skip
        run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                job = SyncJob.objects.first()
                if job and job.messages_copied >= 10:
                    break
                time.sleep(0.2)
            # The operator's script renews the token; the first one then expires, so a connection
            # that still presented it would be refused.
            second = oauth_server.issue_tokens(source.address, token_client, expires_in=300)["access_token"]
            write_token(tmp_path / "source.token", second)
            time.sleep(max(0.0, first_expires - time.monotonic()) + 1)
            copied_before_the_cut = SyncJob.objects.get().messages_copied
            logins_before_the_cut = bearer_logins(oauth_dovecot, source.address)
            proxy.drop_connections()
            stdout, stderr = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        drops = proxy.drops

    assert copied_before_the_cut < len(mails), "the premise: the cut came mid-copy"
    assert drops >= 1
    assert run.returncode == 0, stderr
    summary = json.loads(stdout)
    assert (summary["status"], summary["messages_copied"]) == ("finished", len(mails)), summary
    assert bearer_logins(oauth_dovecot, source.address) > logins_before_the_cut, "the source logged in again"
    assert first not in stdout + stderr and second not in stdout + stderr
    assert all_messages(destination_box) == all_messages(source_box)


def test_a_malformed_or_unreadable_token_file_fails_before_any_job(tmp_path):
    missing = tmp_path / "nowhere.token"
    for option, expected in (
        (f"source={missing}", "could not be read"),
        (f"sender={missing}", "expected source=PATH or destination=PATH"),
    ):
        result = copymailbox(
            "imap+plain://a@127.0.0.1:1", "imap+plain://b@127.0.0.1:2", "--oauth-token-file", option,
            env_extra=without_passwords(),
        )  # fmt: skip
        assert result.returncode == 2
        assert expected in result.stderr
    assert not SyncJob.objects.exists()
