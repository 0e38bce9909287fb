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
from django.contrib.admin.models import CHANGE, LogEntry
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
    """A copy of `dev` and the requirements and their locks, with apt-get, sudo, python and pip that only log."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dev", "requirements.txt", "requirements-dev.txt", "requirements.lock", "requirements-dev.lock"):
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
    assert any("pip install" in line and "--require-hashes -r requirements.lock" in line for line in installs), lines
    assert not any("requirements-dev" in line or "chromium" in line for line in installs), lines
    # Installed once: a second run installs nothing.
    log.write_text("")
    subprocess.run(["bash", "dev", "run"], cwd=project, env=env, check=True, timeout=60)
    assert not [line for line in log.read_text().splitlines() if "pip install" in line]
    # `test` needs the test tools: it installs them once, after which `run` is satisfied too.
    (project / ".venv" / "bin" / "python").write_text(
        f'#!/bin/sh\necho "python $*" >> {log}\ncase "$*" in *pytest*) exit 0;; esac\n'
    )
    subprocess.run(["bash", "dev", "test"], cwd=project, env=env, check=True, timeout=60)
    assert [line for line in log.read_text().splitlines() if "--require-hashes -r requirements-dev.lock" in line]
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

    from tests.selfservice.conftest import CHROMIUM, CHROMIUM_ARGS

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


# --- 9. the job page: buttons, the customer's status page, who cancelled, a staff note -------


def failed_job(make_account, address: str = "fay@example.org", **fields) -> SyncJob:
    # The destination login is an address the (fixed-host) provider proved: the report may go to it.
    return finished_job(make_account, address, status=JobStatus.FAILED, error_code="timeout", **fields)


def buttons(page: str) -> dict[str, str]:
    """The job page's action buttons: label -> how it is pressed ("post" at once, "confirm" first)."""
    panel = page.split('class="job-actions"')[1].split("</section>")[0]
    found = {}
    for item in panel.split("<li>")[1:]:
        label = (
            item.split("</button>")[0].split(">")[-1] if "<button" in item else item.split("…</a>")[0].split(">")[-1]
        )
        found[label] = "post" if '<form method="post"' in item else "confirm"
    return found


def action_url(job: SyncJob, name: str) -> str:
    return f"/admin/sync/syncjob/{job.pk}/actions/{name}/"


def test_an_operator_gets_the_buttons_a_failed_job_allows_and_support_only_its_own(client, make_account):
    job = failed_job(make_account)
    SyncJob.objects.filter(pk=job.pk).update(
        report_address="dest@example.org", report_address_confirmed_at=at(15, 3, 0)
    )
    operator, support = staff("operators"), staff("support")
    client.force_login(operator)
    assert buttons(job_page(client, job)) == {
        "Retry the job": "post",
        "Re-send the report": "post",
        "Erase the credentials now": "confirm",
        "Erase personal data (keep the counts)": "confirm",
    }
    client.force_login(support)
    assert buttons(job_page(client, job)) == {"Re-send the report": "post"}
    running = services.job_create(source=make_account("run@example.org"), destination=make_account())
    services.job_claim(job_id=running.pk, worker_name="w")
    assert "No action applies to this job in its current state." in job_page(client, running)
    client.force_login(operator)
    assert buttons(job_page(client, running)) == {"Cancel the job": "confirm"}


def test_the_retry_button_queues_the_job_again_says_so_and_is_in_the_history(client, make_account):
    job = failed_job(make_account)
    operator = staff("operators")
    client.force_login(operator)
    response = client.post(action_url(job, "retry"), follow=True)
    assert response.redirect_chain[-1][0] == f"/admin/sync/syncjob/{job.pk}/change/"
    assert f"Job {job.pk} is queued again: it resumes where it stopped." in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert LogEntry.objects.get(user=operator, object_id=str(job.pk)).change_message == "Retried"


def test_cancel_asks_first_then_the_job_page_says_who_cancelled(client, make_account):
    job = services.job_create(source=make_account("stop@example.org"), destination=make_account())
    client.force_login(staff("operators"))
    page = job_page(client, job)
    assert f'href="{action_url(job, "cancel")}"' in page
    question = client.get(action_url(job, "cancel"))
    body = question.content.decode()
    assert f"Cancel job {job.pk} (stop@example.org → alice@example.org)?" in body
    assert "Yes, cancel the job" in body and "No, go back to the job" in body
    assert 'name="csrfmiddlewaretoken"' in body
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED  # asking changes nothing
    body = client.post(action_url(job, "cancel"), follow=True).content.decode()
    assert f"Job {job.pk} is cancelled." in body
    assert "Cancelled by operators-member on " in body
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_cancelling_a_running_job_says_it_stops_at_its_next_checkpoint(client, make_account):
    job = services.job_create(source=make_account("long@example.org"), destination=make_account())
    services.job_claim(job_id=job.pk, worker_name="w")
    client.force_login(staff("operators"))
    body = client.post(action_url(job, "cancel"), follow=True).content.decode()
    assert f"Job {job.pk} is asked to stop: the copy stops at its next checkpoint." in body
    assert "Asked to stop by operators-member on " in body


def test_erasing_the_passwords_asks_first_and_then_retry_is_no_longer_offered(client, make_account):
    job = failed_job(make_account)
    client.force_login(staff("operators"))
    body = client.get(action_url(job, "erase-credentials")).content.decode()
    assert f"Erase the passwords of job {job.pk} (fay@example.org → dest-fay@example.org)?" in body
    assert "The job can then never run again" in body
    body = client.post(action_url(job, "erase-credentials"), follow=True).content.decode()
    assert f"The passwords of job {job.pk} are erased: it can no longer run again." in body
    assert "Retry the job" not in buttons(body) and "Erase the credentials now" not in buttons(body)
    job.refresh_from_db()
    assert not job.source.has_password and not job.destination.has_password


def test_a_button_the_job_no_longer_allows_says_why_in_a_sentence(client, make_account):
    job = finished_job(make_account)
    client.force_login(staff("operators"))
    body = client.post(action_url(job, "retry"), follow=True).content.decode()
    assert (
        f"Job {job.pk} was not queued again: only a failed or cancelled job can run again (status: Finished)." in body
    )
    body = client.post(action_url(job, "cancel"), follow=True).content.decode()
    assert f"Job {job.pk} was not cancelled: it has already ended (Finished)." in body
    assert not LogEntry.objects.filter(object_id=str(job.pk)).exists()


def test_buttons_need_the_permission_of_their_action_and_a_csrf_token(client, make_account):
    from django.test import Client

    job = failed_job(make_account)
    client.force_login(staff("support"))
    assert client.post(action_url(job, "retry")).status_code == 403
    assert client.get(action_url(job, "erase-personal-data")).status_code == 403
    assert client.post(action_url(job, "no-such-action")).status_code == 404
    nobody = User.objects.create_user("customer", password="x")  # signed in, not staff
    client.force_login(nobody)
    response = client.post(action_url(job, "retry"))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("new-staff", password="x", is_staff=True))  # no group yet
    assert client.post(action_url(job, "retry")).status_code == 403
    assert client.post(f"/admin/sync/syncjob/{job.pk}/note/", {"staff_note": "x"}).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.staff_note == ""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff("operators"))
    assert strict.post(action_url(job, "retry")).status_code == 403  # no token
    page = strict.get(f"/admin/sync/syncjob/{job.pk}/change/")
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    assert strict.post(action_url(job, "retry"), {"csrfmiddlewaretoken": token}).status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_the_job_page_links_to_the_customers_own_status_page(client, make_account):
    job = failed_job(make_account)
    SyncJob.objects.filter(pk=job.pk).update(language="fr")
    client.force_login(staff("support"))
    page = job_page(client, job)
    link = page.split('id="customer-status-page"')[0].rsplit('<a href="', 1)[1].split('"')[0]
    assert link.startswith("/fr/status/")
    assert 'target="_blank" rel="noopener" id="customer-status-page">The customer’s status page</a>' in page
    status_page = client.get(link)
    assert status_page.status_code == 200
    assert status_page.context["job"].pk == job.pk


def test_support_writes_a_staff_note_and_the_history_keeps_every_version(client, make_account):
    job = failed_job(make_account)
    member = staff("support")
    client.force_login(member)
    page = job_page(client, job)
    assert '<textarea name="staff_note"' in page
    note_url = f"/admin/sync/syncjob/{job.pk}/note/"
    SyncJob.objects.filter(pk=job.pk).update(messages_copied=41)  # the worker writes meanwhile
    body = client.post(note_url, {"staff_note": "Customer called: retry after 18:00."}, follow=True).content.decode()
    assert "The staff note is saved." in body
    assert ">Customer called: retry after 18:00.</textarea>" in body
    client.post(note_url, {"staff_note": "Retried, works now."})
    job.refresh_from_db()
    assert job.staff_note == "Retried, works now." and job.messages_copied == 41
    entries = LogEntry.objects.filter(object_id=str(job.pk), user=member).order_by("action_time", "id")
    assert [entry.change_message for entry in entries] == [
        "Staff note: Customer called: retry after 18:00.",
        "Staff note: Retried, works now.",
    ]
    history = client.get(f"/admin/sync/syncjob/{job.pk}/history/").content.decode()
    assert "Customer called: retry after 18:00." in history and "support-member" in history
    assert client.get(note_url).status_code == 405


def test_staff_without_the_change_permission_read_the_note_and_cannot_write_it(client, make_account):
    from django.contrib.auth.models import Permission

    job = failed_job(make_account)
    services.job_set_staff_note(job=job, note="Escalated to the provider.")
    reader = User.objects.create_user("reader", password="x", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    client.force_login(reader)
    page = job_page(client, job)
    assert "Escalated to the provider." in page and '<textarea name="staff_note"' not in page
    assert 'class="job-actions"' not in page  # no action this member may take
    assert client.post(f"/admin/sync/syncjob/{job.pk}/note/", {"staff_note": "changed"}).status_code == 403
    job.refresh_from_db()
    assert job.staff_note == "Escalated to the provider."


def test_erasing_personal_data_takes_the_addresses_out_of_the_note_and_its_history(client, make_account):
    job = failed_job(make_account, "named@example.org")
    client.force_login(staff("operators"))
    client.post(f"/admin/sync/syncjob/{job.pk}/note/", {"staff_note": "named@example.org asked for a retry."})
    client.post(action_url(job, "erase-personal-data"))
    job.refresh_from_db()
    assert job.staff_note == "[erased] asked for a retry."
    assert not LogEntry.objects.filter(change_message__icontains="named@example.org").exists()


def test_a_superuser_gets_every_button_the_job_allows_and_writes_the_note(admin_client, make_account):
    job = services.job_create(source=make_account("boss@example.org"), destination=make_account())
    page = job_page(admin_client, job)
    assert buttons(page) == {"Cancel the job": "confirm"}
    assert '<textarea name="staff_note"' in page
    body = admin_client.post(action_url(job, "cancel"), follow=True).content.decode()
    assert "Cancelled by admin on " in body
    assert buttons(body) == {
        "Retry the job": "post",  # its passwords are kept for a while
        "Erase the credentials now": "confirm",
        "Erase personal data (keep the counts)": "confirm",
    }


def test_the_history_is_shown_in_the_staff_members_language(client, make_account):
    """Entries are stored in English (as Django's own) and read in French by a French browser:
    the retry, a staff note, a provider hidden; Django's own entries keep their translation."""
    job = failed_job(make_account)
    operator = User.objects.create_superuser("history-fr", password="a long pass phrase")
    client.force_login(operator)
    client.post(action_url(job, "retry"))
    LogEntry.objects.log_actions(operator.pk, [job], CHANGE, change_message="Staff note: called the customer")
    stored = LogEntry.objects.filter(object_id=str(job.pk)).order_by("id").values_list("change_message", flat=True)
    assert stored[0] == "Retried", "stored in English"
    french = client.get(f"/admin/sync/syncjob/{job.pk}/history/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    assert "Relancée" in french and "Retried" not in french
    assert "Note interne : called the customer" in french
    provider = job.source.provider
    LogEntry.objects.log_actions(operator.pk, [provider], CHANGE, change_message="Hidden from customers")
    french = client.get(f"/admin/providers/provider/{provider.pk}/history/", HTTP_ACCEPT_LANGUAGE="fr")
    assert "Masqué aux clients" in french.content.decode()
    english = client.get(f"/admin/sync/syncjob/{job.pk}/history/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Retried" in english and "Staff note: called the customer" in english
