"""Staff's command-line copy: same engine, same job records, resumable, scriptable."""

import json
import subprocess
import sys

import pytest

from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO, subprocess_env
from tests.selfservice.conftest import seed_mailbox
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
