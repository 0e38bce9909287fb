"""Staff's back office: the jobs list stays cheap, actions go through services, groups limit who does what."""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.sync import services
from apps.sync.models import JobStatus, SyncJob

pytestmark = pytest.mark.django_db


def staff(group_name: str) -> User:
    user = User.objects.create_user(f"{group_name}-member", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


def make_jobs(make_account, count: int) -> list[SyncJob]:
    destination = make_account("dest@example.net")
    jobs = []
    for number in range(count):
        job = services.job_create(source=make_account(f"user{number}@example.org"), destination=destination)
        jobs.append(job)
    return jobs


def list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/sync/syncjob/")
    assert response.status_code == 200
    return len(queries)


def test_jobs_list_query_count_does_not_grow_with_rows(admin_client, make_account):
    make_jobs(make_account, 3)
    few = list_queries(admin_client)
    make_jobs(make_account, 0)
    destination = make_account("other-dest@example.net")
    for number in range(3, 40):
        services.job_create(source=make_account(f"more{number}@example.org"), destination=destination)
    many = list_queries(admin_client)
    assert many == few


def test_jobs_list_shows_status_accounts_and_progress(admin_client, make_account):
    make_jobs(make_account, 1)
    body = admin_client.get("/admin/sync/syncjob/").content.decode()
    assert "user0@example.org → dest@example.net" in body
    assert "Not started yet" in body
    assert "<progress" in body


def test_search_and_filters_find_jobs(admin_client, make_account):
    jobs = make_jobs(make_account, 3)
    services.job_claim(job_id=jobs[1].pk, worker_name="w")
    services.job_finish(job_id=jobs[1].pk, status=JobStatus.FAILED, counters=None, error_code="timeout")
    found = admin_client.get("/admin/sync/syncjob/", {"q": "user2@"}).context["cl"].result_list
    assert [job.pk for job in found] == [jobs[2].pk]
    failed = admin_client.get("/admin/sync/syncjob/", {"has_errors": "yes"}).context["cl"].result_list
    assert [job.pk for job in failed] == [jobs[1].pk]


def test_cancel_action_goes_through_the_service_and_is_logged(client, make_account):
    operator = staff("operators")
    client.force_login(operator)
    (job,) = make_jobs(make_account, 1)
    response = client.post("/admin/sync/syncjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]}, follow=True)
    assert "1 job cancelled." in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert LogEntry.objects.filter(user=operator, object_id=str(job.pk), change_message="Cancelled").exists()


def test_export_csv_lists_the_selected_jobs(client, make_account):
    client.force_login(staff("operators"))
    jobs = make_jobs(make_account, 2)
    response = client.post(
        "/admin/sync/syncjob/", {"action": "export_csv", "_selected_action": [job.pk for job in jobs]}
    )
    lines = response.content.decode().splitlines()
    assert lines[0].startswith("id,status,source,destination")
    assert len(lines) == 3
    assert any("user1@example.org" in line for line in lines)


def job_state(job: SyncJob) -> tuple:
    """What the cancel, retry and erase actions change, as staff and the customer see it."""
    job.refresh_from_db()
    job.source.refresh_from_db()
    job.destination.refresh_from_db()
    return (
        job.status,
        job.source.has_password,
        job.destination.has_password,
        job.source_address,
        job.destination.email_address,
        LogEntry.objects.filter(object_id=str(job.pk)).count(),
    )


def job_an_operator_could(make_account, list_action: str) -> SyncJob:
    """A job in the state where `list_action` works for someone allowed to do it: a queued job can
    be cancelled, a failed one retried or erased."""
    (job,) = make_jobs(make_account, 1)
    if list_action != "cancel_jobs":
        services.job_claim(job_id=job.pk, worker_name="w")
        services.job_finish(job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code="timeout")
    return job


@pytest.mark.parametrize(
    ("list_action", "button"),
    [
        ("cancel_jobs", "cancel"),
        ("retry_jobs", "retry"),
        ("erase_credentials", "erase-credentials"),
        ("erase_personal_data", "erase-personal-data"),
    ],
)
def test_support_cannot_cancel_retry_or_erase(client, make_account, list_action, button):
    job = job_an_operator_could(make_account, list_action)
    before = job_state(job)
    client.force_login(staff("support"))

    listed = client.post("/admin/sync/syncjob/", {"action": list_action, "_selected_action": [job.pk]})
    assert listed.status_code == 302  # Django's answer to an action the member is not offered
    assert job_state(job) == before
    pressed = client.post(f"/admin/sync/syncjob/{job.pk}/actions/{button}/")
    assert pressed.status_code == 403
    assert job_state(job) == before

    # The same request from an operator does change the job: support was refused by its group alone.
    client.force_login(staff("operators"))
    client.post("/admin/sync/syncjob/", {"action": list_action, "_selected_action": [job.pk]})
    assert job_state(job) != before


def test_support_sees_jobs_but_cannot_edit_providers(client, make_account):
    client.force_login(staff("support"))
    make_jobs(make_account, 1)
    assert client.get("/admin/sync/syncjob/").status_code == 200
    page = client.get("/admin/providers/provider/1/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = client.post("/admin/providers/provider/1/change/", {"name": "Hacked"})
    assert response.status_code == 403


def test_operators_can_edit_providers(client):
    client.force_login(staff("operators"))
    page = client.get("/admin/providers/provider/1/change/")
    assert 'name="_save"' in page.content.decode()


def test_erase_personal_data_keeps_counts_and_drops_addresses(client, make_account):
    client.force_login(staff("operators"))
    (job,) = make_jobs(make_account, 1)
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(
        job_id=job.pk, status=JobStatus.FINISHED, counters=services.JobCounters(messages_total=9, messages_copied=9)
    )
    client.post("/admin/sync/syncjob/", {"action": "erase_personal_data", "_selected_action": [job.pk]})
    job.refresh_from_db()
    job.source.refresh_from_db()
    assert job.source_address == ""
    assert job.source.email_address == services.ERASED_ADDRESS
    assert job.source.login == ""
    assert job.messages_copied == 9


def test_operations_page_counts_jobs_per_status(admin_client, make_account):
    make_jobs(make_account, 2)
    body = admin_client.get("/admin/sync/syncjob/operations/").content.decode()
    assert "Jobs per status" in body
    assert "<th>Not started yet</th><td>2</td>" in body


def test_operators_can_have_gmails_all_mail_copied_whole_and_support_cannot(client, make_account):
    (job,) = make_jobs(make_account, 1)
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, run=run, status=JobStatus.FAILED, counters=None, error_code="timeout")
    selected = {"action": "copy_all_mail_whole", "_selected_action": [job.pk]}

    client.force_login(staff("support"))
    client.post("/admin/sync/syncjob/", selected, follow=True)
    job.refresh_from_db()
    assert (job.status, job.copy_all_mail_as_folder) == (JobStatus.FAILED, False)

    operator = staff("operators")
    client.force_login(operator)
    response = client.post("/admin/sync/syncjob/", selected, follow=True)
    assert "1 job queued again to copy All Mail whole." in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.copy_all_mail_as_folder) == (JobStatus.QUEUED, True)
    assert LogEntry.objects.filter(
        user=operator, object_id=str(job.pk), change_message="All Mail copied whole"
    ).exists()


def test_export_csv_cells_never_start_a_formula(client, make_account):
    """A customer types the addresses: a cell starting with = + - @ would run as a formula in
    the spreadsheet staff open the export with."""
    client.force_login(staff("operators"))
    hostile = services.job_create(
        source=make_account('=HYPERLINK("http://x.example")@example.org'),
        destination=make_account("+cmd@example.net"),
    )
    response = client.post("/admin/sync/syncjob/", {"action": "export_csv", "_selected_action": [hostile.pk]})
    import csv
    import io

    (header, row) = list(csv.reader(io.StringIO(response.content.decode())))
    cells = dict(zip(header, row, strict=True))
    assert cells["source"].startswith("'=") and cells["destination"].startswith("'+")
    assert not any(cell[:1] in ("=", "+", "-", "@") for cell in row)


def test_credentials_of_an_active_job_are_not_erased(client, make_account):
    """Erasing the passwords of a queued or running job would make it fail with internal_error:
    refused, the passwords kept."""
    client.force_login(staff("operators"))
    (job,) = make_jobs(make_account, 1)
    response = client.post("/admin/sync/syncjob/", {"action": "erase_credentials", "_selected_action": [job.pk]},
                           follow=True)  # fmt: skip
    assert "were not erased: it is still queued or running" in response.content.decode()
    job.refresh_from_db()
    assert job.source.has_password and job.destination.has_password


def test_the_report_of_an_erased_job_is_not_sent_again(client, make_account, mailoutbox):
    client.force_login(staff("operators"))
    (job,) = make_jobs(make_account, 1)
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FINISHED, counters=None)
    client.post("/admin/sync/syncjob/", {"action": "erase_personal_data", "_selected_action": [job.pk]})
    mailoutbox.clear()
    response = client.post("/admin/sync/syncjob/", {"action": "resend_reports", "_selected_action": [job.pk]},
                           follow=True)  # fmt: skip
    assert f"No report was sent for job {job.pk}: its personal data has been erased." in response.content.decode()
    assert mailoutbox == []


def history_mentions(*personal: str) -> list[str]:
    """Every admin history entry that names one of these (its title or its message)."""
    return [
        f"{entry.object_repr} | {entry.change_message}"
        for entry in LogEntry.objects.all()
        if any(value.lower() in f"{entry.object_repr} {entry.change_message}".lower() for value in personal)
    ]


def test_erasing_personal_data_takes_the_addresses_out_of_the_admin_history(client, make_account):
    operator = staff("operators")
    client.force_login(operator)
    source = make_account("alice.history@example.org")
    destination = make_account("bob.history@example.net", login="bob-login-42")
    job = services.job_create(source=source, destination=destination)
    # History written before: a cancel through the admin, a note about an account.
    client.post("/admin/sync/syncjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    LogEntry.objects.log_actions(
        operator.pk, [destination], CHANGE, change_message="Login bob-login-42 checked for Bob.History@example.net"
    )
    personal = ("alice.history@example.org", "bob.history@example.net", "bob-login-42")
    assert history_mentions(*personal) and "alice.history@example.org" in client.get("/admin/").content.decode()

    response = client.post(
        "/admin/sync/syncjob/", {"action": "erase_personal_data", "_selected_action": [job.pk]}, follow=True
    )
    assert "Personal data of 1 job erased." in response.content.decode()
    assert history_mentions(*personal) == []
    index = client.get("/admin/").content.decode()  # its "Recent actions" box
    assert not any(value in index.lower() for value in personal)
    # Who did what, and when, stays.
    titles = set(LogEntry.objects.filter(user=operator).values_list("object_repr", "change_message"))
    assert {(f"#{job.pk}", "Cancelled"), (f"#{job.pk}", "Personal data erased")} <= titles
