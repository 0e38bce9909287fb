"""The back office as staff use it: what purge_jobs says, the admin's history of every change
or export, what `./dev run` installs, and the jobs pages as people read them."""

import datetime
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.sync import services
from apps.sync.management.commands.purge_jobs import Command as PurgeJobs
from apps.sync.models import FolderProgress, JobEvent, JobStatus, SyncJob

pytestmark = pytest.mark.django_db

ROOT = Path(django_settings.BASE_DIR)


def staff(group_name: str) -> User:
    user = User.objects.create_user(f"{group_name}-member", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


def ended_job(make_account, address: str, days_ago: int, *, events: int = 0) -> SyncJob:
    job = services.job_create(source=make_account(address), destination=make_account(f"dest-{address}"))
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FINISHED, counters=None)
    SyncJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - datetime.timedelta(days=days_ago))
    FolderProgress.objects.create(job=job, source_name="INBOX")
    JobEvent.objects.bulk_create(JobEvent(job=job, kind="folder-done", folder="INBOX") for _ in range(events))
    return job


def purge(*args) -> str:
    out = io.StringIO()
    call_command("purge_jobs", *args, stdout=out)
    return out.getvalue()


# --- 10. purge_jobs ------------------------------------------------------------------------


def test_purge_jobs_counts_jobs_and_accounts_not_database_rows(make_account, settings):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    for number in range(2):
        ended_job(make_account, f"old{number}@example.org", days_ago=31, events=60)
    ended_job(make_account, "recent@example.org", days_ago=2)
    output = purge()
    assert "Deleted 2 jobs that ended before " in output
    assert " and 4 accounts no other job uses." in output
    assert "row" not in output
    assert SyncJob.objects.count() == 1


def test_purge_jobs_dry_run_counts_what_would_go_and_deletes_nothing(make_account, settings):
    settings.IMAPCOPY_RETENTION_DAYS = 30
    old = ended_job(make_account, "old@example.org", days_ago=31, events=5)
    # The destination account is shared with a recent job: it stays.
    recent = services.job_create(source=make_account("recent@example.org"), destination=old.destination)
    output = purge("--dry-run")
    assert "Would delete 1 job that ended before " in output
    assert " and 1 account no other job uses." in output
    assert SyncJob.objects.filter(pk__in=[old.pk, recent.pk]).count() == 2
    assert JobEvent.objects.filter(job=old).count() == 5
    assert MailAccount.objects.filter(email_address="old@example.org").exists()
    # The real run deletes exactly what the dry run announced.
    assert "Deleted 1 job that ended before " in purge()
    assert not MailAccount.objects.filter(email_address="old@example.org").exists()
    assert MailAccount.objects.filter(pk=old.destination_id).exists()


def test_purge_jobs_help_shows_the_options_and_their_defaults(settings):
    settings.IMAPCOPY_RETENTION_DAYS = 45
    text = PurgeJobs().create_parser("manage.py", "purge_jobs").format_help()
    assert "--dry-run" in text
    assert "--days DAYS" in text
    assert "45)" in " ".join(text.split())  # "(default: IMAPCOPY_RETENTION_DAYS, 45)"


# --- 10. admin history -----------------------------------------------------------------------


def test_csv_export_is_in_the_admin_history_with_the_operator(client, make_account):
    operator = staff("operators")
    client.force_login(operator)
    jobs = [services.job_create(source=make_account(f"u{n}@example.org"), destination=make_account()) for n in range(3)]
    response = client.post("/admin/sync/syncjob/", {"action": "export_csv", "_selected_action": [j.pk for j in jobs]})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    entry = LogEntry.objects.get(user=operator)
    assert entry.object_repr == "CSV export of 3 job(s)"
    assert all(f"#{job.pk}" in entry.change_message for job in jobs)
    assert "@" not in entry.change_message  # ids, not the customers' addresses
    assert "CSV export of 3 job(s)" in client.get("/admin/").content.decode()  # "Recent actions"


# --- 10. ./dev run installs only what the portal needs ----------------------------------------


def fake_machine(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of `dev` and the requirements, with apt-get, sudo, python and pip that only log."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dev", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, project / name)
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\n'
    for name in ("apt-get", "sudo", "msgfmt"):
        (bin_dir / name).write_text(fake)
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    venv_python = project / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(fake)  # pip install and manage.py: logged, nothing run
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    venv_python.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return project, log, env


def test_dev_run_installs_the_portal_requirements_only_and_dev_test_the_test_tools(tmp_path):
    project, log, env = fake_machine(tmp_path)
    subprocess.run(["bash", "dev", "run"], cwd=project, env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    installs = [line for line in lines if "install" in line]
    assert any("pip install" in line and "-r requirements.txt" in line for line in installs), lines
    assert not any("requirements-dev.txt" in line or "chromium" in line for line in installs), lines
    # Installed once: a second run installs nothing.
    log.write_text("")
    subprocess.run(["bash", "dev", "run"], cwd=project, env=env, check=True, timeout=60)
    assert not [line for line in log.read_text().splitlines() if "pip install" in line]
    # `test` needs the test tools: it installs them once, after which `run` is satisfied too.
    (project / ".venv" / "bin" / "python").write_text(
        f'#!/bin/sh\necho "python $*" >> {log}\ncase "$*" in *pytest*) exit 0;; esac\n'
    )
    subprocess.run(["bash", "dev", "test"], cwd=project, env=env, check=True, timeout=60)
    assert [line for line in log.read_text().splitlines() if "-r requirements-dev.txt" in line]
    log.write_text("")
    subprocess.run(["bash", "dev", "run"], cwd=project, env=env, check=True, timeout=60)
    subprocess.run(["bash", "dev", "test"], cwd=project, env=env, check=True, timeout=60)
    assert not [line for line in log.read_text().splitlines() if "pip install" in line]


def test_dev_waits_for_another_apt_holding_the_lock(tmp_path):
    project, log, env = fake_machine(tmp_path)
    # A Python without venv: `dev` installs python3-venv with apt-get.
    no_venv = tmp_path / "bin" / "python3-without-venv"
    no_venv.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 1\nexit 0\n')
    no_venv.chmod(0o755)
    subprocess.run(["bash", "dev", "run"], cwd=project, env={**env, "PYTHON": str(no_venv)}, check=True, timeout=60)
    apt_calls = [line for line in log.read_text().splitlines() if line.startswith("apt-get")]
    assert any("install" in line and "python3-venv" in line for line in apt_calls), apt_calls
    assert all("DPkg::Lock::Timeout=300" in line for line in apt_calls), apt_calls


def test_dev_checks_for_dovecot_by_its_imap_server_not_the_master_process():
    # /usr/sbin/dovecot (dovecot-core) stays when dovecot-imapd is removed.
    script = (ROOT / "dev").read_text()
    assert "[ -x /usr/lib/dovecot/imap ] || want+=(dovecot-imapd)" in script
    assert "[ -x /usr/sbin/dovecot ]" not in script


# --- 8. the jobs pages as staff read them ---------------------------------------------------


def at(hour: int, minute: int, second: int) -> datetime.datetime:
    return datetime.datetime(2026, 11, 29, hour, minute, second, tzinfo=datetime.UTC)


def finished_job(make_account, address: str = "ada@example.org", **fields) -> SyncJob:
    job = services.job_create(source=make_account(address), destination=make_account(f"dest-{address}"))
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=fields.pop("status", JobStatus.FINISHED), counters=None)
    values = {
        "created_at": at(14, 58, 1),
        "started_at": at(15, 0, 7),
        "finished_at": at(15, 2, 12),
        "progress_at": at(15, 2, 11),
        **fields,
    }
    SyncJob.objects.filter(pk=job.pk).update(**values)
    job.refresh_from_db()
    return job


def job_page(client, job: SyncJob) -> str:
    response = client.get(f"/admin/sync/syncjob/{job.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def jobs_list(client, **query) -> str:
    response = client.get("/admin/sync/syncjob/", query)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def support_client(client):
    client.force_login(staff("support"))
    return client


def test_times_have_minutes_and_seconds_in_the_list_the_job_page_and_the_event_log(support_client, make_account):
    job = finished_job(make_account)
    event = JobEvent.objects.create(job=job, kind="folder_started", folder="INBOX")
    JobEvent.objects.filter(pk=event.pk).update(created_at=at(15, 0, 9))
    listing = jobs_list(support_client)
    assert "14:58:01" in listing and "15:02:12" in listing
    assert "p.m." not in listing
    page = job_page(support_client, job)
    for shown in ("14:58:01", "15:00:07", "15:02:11", "15:02:12", "15:00:09"):
        assert shown in page, shown
    assert '<time datetime="2026-11-29T15:00:09+00:00">' in page  # the event's own time


def test_job_page_shows_the_duration(support_client, make_account):
    job = finished_job(make_account)
    page = job_page(support_client, job)
    assert "field-duration" in page
    assert "0:02:05" in page


def test_event_details_read_as_lines_not_as_json(support_client, make_account):
    job = finished_job(make_account)
    JobEvent.objects.create(
        job=job, kind="message_skipped", folder="INBOX", detail={"reason": "too_large", "size": 52428800}
    )
    page = job_page(support_client, job)
    assert "<dt>reason:</dt> <dd>too_large</dd>" in page
    assert "<dt>size:</dt> <dd>52428800</dd>" in page
    assert "{&quot;reason&quot;" not in page and '{"reason"' not in page


def test_sizes_are_human_with_the_exact_bytes_in_a_tooltip(support_client, make_account):
    job = finished_job(make_account, bytes_copied=465_912_345, bytes_total=465_912_345)
    FolderProgress.objects.create(job=job, source_name="INBOX", bytes_copied=1_536)
    expected = '<span title="465,912,345 bytes">444.3\xa0MB</span>'
    assert expected in jobs_list(support_client)
    page = job_page(support_client, job)
    assert expected in page
    assert '<span title="1,536 bytes">1.5\xa0KB</span>' in page  # the folder's
    assert "465912345" not in page


def test_a_job_staff_cancelled_says_who_and_when_and_others_say_nothing_of_it(client, make_account):
    operator = staff("operators")
    client.force_login(operator)
    cancelled = services.job_create(source=make_account("gone@example.org"), destination=make_account())
    untouched = finished_job(make_account)
    client.post("/admin/sync/syncjob/", {"action": "cancel_jobs", "_selected_action": [cancelled.pk]})
    page = job_page(client, cancelled)
    assert "Cancelled by operators-member on " in page
    assert "icon-no.svg" not in page.split("field-cancellation")[1].split("</div>")[0]
    page = job_page(client, untouched)
    assert "field-cancellation" not in page and "ancellation requested" not in page


def test_a_refused_action_says_why_in_a_sentence(client, make_account):
    client.force_login(staff("operators"))
    job = finished_job(make_account)
    body = client.post(
        "/admin/sync/syncjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]}, follow=True
    ).content.decode()
    assert f"Job {job.pk} was not cancelled: it has already ended (Finished)." in body
    assert "InvalidJobState" not in body and "not possible" not in body


def test_jobs_list_has_an_error_column_and_a_filter_by_error_code(support_client, make_account):
    timed_out = finished_job(make_account, "a@example.org", status=JobStatus.FAILED, error_code="timeout")
    refused = finished_job(make_account, "b@example.org", status=JobStatus.FAILED, error_code="auth_failed")
    finished_job(make_account, "c@example.org")
    listing = jobs_list(support_client)
    assert "column-error" in listing and 'class="field-error"' in listing
    assert '<span class="job-error" title="' in listing and ">timeout</span>" in listing
    assert "?error_code=auth_failed" in listing  # the filter's choices are the codes in use
    response = support_client.get("/admin/sync/syncjob/", {"error_code": "timeout"})
    assert [job.pk for job in response.context["cl"].result_list] == [timed_out.pk]
    assert refused.pk not in [job.pk for job in response.context["cl"].result_list]


def test_event_log_shows_every_error_and_the_last_events_not_the_first_ones(support_client, make_account):
    job = finished_job(make_account)
    JobEvent.objects.create(job=job, kind="folder_started", folder="First-Folder")
    JobEvent.objects.create(job=job, kind="error", folder="Broken-Folder", detail={"reason": "early-error"})
    JobEvent.objects.bulk_create(
        JobEvent(job=job, kind="message_copied", folder=f"Folder-{number:04}") for number in range(700)
    )
    page = job_page(support_client, job)
    assert "early-error" in page and "Broken-Folder" in page
    assert "Folder-0699" in page  # the last event
    assert "First-Folder" not in page and "Folder-0000" not in page
    assert '<strong class="event-error">error</strong>' in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_jobs_list_fits_a_1920_pixel_screen_in_chromium(live_server, make_account):
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop runs in this thread
    from playwright.sync_api import sync_playwright

    from tests.selfservice.test_browser import CHROMIUM, CHROMIUM_ARGS

    User.objects.create_user("support-screen", password="a long pass phrase", is_staff=True).groups.add(
        Group.objects.get(name="support")
    )
    for number in range(5):
        address = f"firstname.middlename.lastname.{number}@mail.departement-informatique.universite-exemple.example.org"
        finished_job(make_account, address, status=JobStatus.FAILED, error_code="destination_quota", bytes_copied=10**9)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{live_server.url}/admin/login/?next=/admin/sync/syncjob/")
            page.fill("input[name=username]", "support-screen")
            page.fill("input[name=password]", "a long pass phrase")
            page.click("input[type=submit]")
            page.wait_for_selector("#result_list")
            widths = page.evaluate(
                "() => ({page: document.documentElement.scrollWidth, window: window.innerWidth,"
                " table: document.querySelector('#result_list').getBoundingClientRect().right})"
            )
        finally:
            browser.close()
    assert widths["page"] <= widths["window"], widths
    assert widths["table"] <= widths["window"], widths
