"""The admin's operations page as staff read it (issue 14, item 9): how long the oldest queued job
has waited since it was queued, failures counted even when the jobs were retried since, failures
by error code and by provider over 24 hours and 7 days, each number opening the jobs it counts,
and the page closed to anyone without the permission to see jobs."""

import datetime
import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from apps.providers.models import Provider
from apps.sync import services
from apps.sync.models import JobFailure, JobStatus, SyncJob
from apps.sync.operations import age_text

pytestmark = pytest.mark.django_db

OPERATIONS = "/admin/sync/syncjob/operations/"


def staff(group_name: str) -> User:
    user = User.objects.create_user(f"{group_name}-member", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def support_client(client):
    client.force_login(staff("support"))
    return client


def page(client) -> str:
    response = client.get(OPERATIONS)
    assert response.status_code == 200
    return response.content.decode()


def cell(body: str, table_id: str, row: str) -> str:
    """The cells of a row of one of the page's tables, as HTML."""
    table = body.split(f'id="{table_id}"')[1].split("</table>")[0]
    (line,) = [line for line in table.split("<tr>") if f">{row}<" in line.split("<td")[0]]
    return line


def links(html: str) -> list[tuple[str, str]]:
    """(number, link) of each number of a row; no link: ""."""
    cells = re.findall(r'<td class="number">(.*?)</td>', html)
    found = []
    for text in cells:
        match = re.match(r'<a href="([^"]+)">(\d+)</a>', text)
        found.append((match.group(2), match.group(1).replace("&amp;", "&")) if match else (text, ""))
    return found


def failed(make_account, address: str, code: str, *, hours_ago: float = 1, **accounts) -> SyncJob:
    source = make_account(address, **accounts.get("source", {}))
    destination = make_account(f"dest-{address}", **accounts.get("destination", {}))
    job = services.job_create(source=source, destination=destination)
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code=code)
    when = timezone.now() - datetime.timedelta(hours=hours_ago)
    SyncJob.objects.filter(pk=job.pk).update(finished_at=when)
    JobFailure.objects.filter(job=job).update(failed_at=when)
    job.refresh_from_db()
    return job


def listed(client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200  # a filter the list does not know redirects to ?e=1
    return {job.pk for job in response.context["cl"].result_list}


# --- the oldest queued job ----------------------------------------------------------------------


def test_waits_read_in_seconds_minutes_hours_and_days():
    assert age_text(0) == "0 s"
    assert age_text(45) == "45 s"
    assert age_text(192) == "3 min 12 s"
    assert age_text(2 * 3600 + 5 * 60 + 59) == "2 h 5 min"
    assert age_text(86400 + 3600) == "1 day 1 h"
    assert age_text(3 * 86400 + 4 * 3600) == "3 days 4 h"


def test_the_oldest_queued_job_waits_since_it_was_queued_not_since_it_was_created(support_client, make_account):
    job = failed(make_account, "old@example.org", "timeout", hours_ago=5)
    SyncJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - datetime.timedelta(days=2))
    services.job_retry(job=job)
    job.refresh_from_db()
    assert timezone.now() - job.queued_at < datetime.timedelta(seconds=30)
    SyncJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - datetime.timedelta(minutes=3, seconds=12))
    # Created two days after the first one but queued since just now: a shorter wait.
    services.job_create(source=make_account("new@example.org"), destination=make_account())
    oldest = cell(page(support_client), "queue", "How long the oldest queued job has been waiting")
    link = f'<a href="/admin/sync/syncjob/{job.pk}/change/">job {job.pk}</a>'
    assert re.search(r">3 min 1[234] s \(" + re.escape(link) + r"\)", oldest), oldest
    assert "day" not in oldest and not re.search(r"\d:\d\d:\d\d", oldest)  # no 2 days, no 0:03:12.345678


def test_a_job_given_back_to_the_queue_by_recovery_waits_from_then(make_account):
    job = services.job_create(source=make_account("lost@example.org"), destination=make_account())
    run = services.job_claim(job_id=job.pk, worker_name="w")
    SyncJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - datetime.timedelta(hours=3))
    services.job_requeue_lost_run(job_id=job.pk, run=run, silent_since=timezone.now() + datetime.timedelta(seconds=1))
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert timezone.now() - job.queued_at < datetime.timedelta(seconds=30)


def test_no_queued_job_shows_a_dash(support_client, make_account):
    assert ">—</td>" in cell(page(support_client), "queue", "How long the oldest queued job has been waiting")


# --- failures, retried or not -----------------------------------------------------------------


def test_a_failure_retried_since_still_counts_in_the_failure_rate(support_client, make_account):
    job = failed(make_account, "retried@example.org", "timeout")
    services.job_retry(job=job)  # queued again: no end time, no error code now
    fine = failed(make_account, "fine@example.org", "timeout")
    SyncJob.objects.filter(pk=fine.pk).update(status=JobStatus.FINISHED, error_code="")
    JobFailure.objects.filter(job=fine).delete()  # it never failed
    body = page(support_client)
    assert ">2</td>" in cell(body, "last-day", "Jobs that ended")
    [(count, url)] = links(cell(body, "last-day", "Jobs that failed, even if retried since"))
    assert count == "1" and listed(support_client, url) == {job.pk}
    assert 'id="failure-rate">50.0%<' in body


def test_failures_by_error_code_over_24_hours_and_7_days_each_open_their_jobs(support_client, make_account):
    recent = failed(make_account, "a@example.org", "timeout", hours_ago=2)
    services.job_retry(job=recent)  # retried since: still counted, still listed
    older = failed(make_account, "b@example.org", "timeout", hours_ago=3 * 24)
    refused = failed(make_account, "c@example.org", "auth_failed", hours_ago=5)
    failed(make_account, "d@example.org", "timeout", hours_ago=9 * 24)  # too old for both periods
    body = page(support_client)
    assert "In the last 24 hours" in body and "In the last 7 days" in body
    timeout = links(cell(body, "failures-by-code", "timeout"))
    assert [count for count, _url in timeout] == ["1", "2"]
    assert listed(support_client, timeout[0][1]) == {recent.pk}
    assert listed(support_client, timeout[1][1]) == {recent.pk, older.pk}
    auth = links(cell(body, "failures-by-code", "auth_failed"))
    assert [count for count, _url in auth] == ["1", "1"]
    assert listed(support_client, auth[0][1]) == {refused.pk}
    # The code's meaning is in the tooltip.
    assert re.search(r'<span class="job-error" title="[^"]+">timeout</span>', body)


def test_a_job_that_failed_twice_with_one_code_counts_once_and_with_another_code_in_each(support_client, make_account):
    job = failed(make_account, "twice@example.org", "timeout", hours_ago=30)
    services.job_retry(job=job)
    services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code="destination_quota")
    body = page(support_client)
    assert [count for count, _ in links(cell(body, "failures-by-code", "timeout"))] == ["0", "1"]
    quota = links(cell(body, "failures-by-code", "destination_quota"))
    assert [count for count, _ in quota] == ["1", "1"]
    # The 24-hour link lists the job for its quota failure, not for the older timeout.
    assert listed(support_client, quota[0][1]) == {job.pk}
    assert listed(support_client, "/admin/sync/syncjob/?failed_within=24h&failure_code=timeout") == set()


def test_failures_by_provider_count_a_job_for_both_its_providers_and_open_their_jobs(support_client, make_account):
    gmail = Provider.objects.get(slug="gmail")
    other = Provider.objects.get(slug="other")
    to_gmail = failed(make_account, "x@example.org", "timeout", destination={"provider": gmail})
    between_others = failed(make_account, "y@example.org", "auth_failed", hours_ago=4 * 24)
    body = page(support_client)
    gmail_row = links(cell(body, "failures-by-provider", gmail.name))
    other_row = links(cell(body, "failures-by-provider", other.name))
    assert [count for count, _ in gmail_row] == ["1", "1"]
    assert [count for count, _ in other_row] == ["1", "2"]
    assert listed(support_client, gmail_row[1][1]) == {to_gmail.pk}
    assert listed(support_client, other_row[1][1]) == {to_gmail.pk, between_others.pk}
    assert listed(support_client, other_row[0][1]) == {to_gmail.pk}


def test_without_failures_the_page_says_so(support_client):
    body = page(support_client)
    assert body.count("No failure in the last 7 days.") == 2


def test_stuck_jobs_show_their_last_sign_of_life_to_the_second(support_client, make_account, settings):
    job = services.job_create(source=make_account("stuck@example.org"), destination=make_account())
    services.job_claim(job_id=job.pk, worker_name="host:42")
    silent = datetime.datetime(2026, 11, 29, 14, 7, 9, tzinfo=datetime.UTC)
    SyncJob.objects.filter(pk=job.pk).update(heartbeat_at=silent)
    body = page(support_client)
    row = body.split('id="stuck-jobs"')[1].split("</table>")[0]
    assert "stuck@example.org" in row and "host:42" in row and "14:07:09" in row


# --- who may see it -----------------------------------------------------------------------------


def test_the_operations_page_is_for_staff_who_may_see_jobs(client, make_account):
    response = client.get(OPERATIONS)  # not signed in
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("customer", password="x"))  # not staff
    response = client.get(OPERATIONS)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    bare = User.objects.create_user("new-staff", password="x", is_staff=True)  # staff, no permission
    client.force_login(bare)
    assert client.get(OPERATIONS).status_code == 403
    bare.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    bare = User.objects.get(pk=bare.pk)  # permissions are cached on the object
    client.force_login(bare)
    assert client.get(OPERATIONS).status_code == 200
    for group in ("support", "operators"):
        client.force_login(staff(group))
        assert client.get(OPERATIONS).status_code == 200


def test_only_operators_get_the_queue_dashboard_link(client):
    client.force_login(staff("support"))
    assert "/admin/django_rq/" not in page(client)
    client.force_login(staff("operators"))
    assert "/admin/django_rq/" in page(client)


def test_the_failure_filters_of_the_jobs_list_are_for_staff_who_may_see_jobs(client, make_account):
    failed(make_account, "f@example.org", "timeout")
    client.force_login(User.objects.create_user("new-staff", password="x", is_staff=True))
    assert client.get("/admin/sync/syncjob/?failed_within=7d&failure_code=timeout").status_code == 403
