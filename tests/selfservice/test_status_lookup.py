"""The public lookup by source address (issue 12, finding 4): a POST that shows a stranger the state
of a copy and nothing more; the details stay behind the private link, which it emails only to
the address proven to receive the job's report, answering the same whatever the case."""

from __future__ import annotations

import re

import pytest
from django.core import mail, signing
from django.test import Client

from apps.sync import services
from apps.sync.links import STATUS_SALT, status_url
from apps.sync.models import JobStatus

pytestmark = pytest.mark.django_db

LINK_SENT = "If a copy of this mailbox exists, we sent the link to its details to the address that receives its report."


def running_job(make_account, source="alice@example.org", destination="alice@example.net"):
    job = services.job_create(source=make_account(source), destination=make_account(destination))
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_record_progress(
        job_id=job.pk,
        run=run,
        counters=services.JobCounters(
            folders_total=7, folders_done=2, messages_total=322, messages_copied=161, bytes_total=10_000_000,
            bytes_copied=5_000_000, current_folder="INBOX.Secret-project",
        ),
    )  # fmt: skip
    job.refresh_from_db()
    return job


def answer(response) -> str:
    """The page's main content, without the CSRF token (which differs between two answers)."""
    body = response.content.decode()
    main = re.search(r"<main.*</main>", body, re.S).group(0)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", main)


def test_a_get_with_an_address_looks_nothing_up(client, make_account):
    running_job(make_account)
    response = client.get("/status/", {"address": "alice@example.org"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "In progress" not in body and "There is no synchronization" not in body
    assert "alice@example.org" not in body, "the form is not filled from the query string"
    assert '<form method="post" class="lookup"' in body


def test_the_lookup_is_a_post_protected_against_csrf(make_account):
    running_job(make_account)
    browser = Client(enforce_csrf_checks=True)
    form = browser.get("/status/").content.decode()
    token = re.search(r'<form method="post" class="lookup"[^>]*><input type="hidden" name="csrfmiddlewaretoken" '
                      r'value="([^"]+)"', form).group(1)  # fmt: skip
    posted = browser.post("/status/", {"address": "alice@example.org", "csrfmiddlewaretoken": token})
    assert "In progress" in posted.content.decode()
    forged = Client(enforce_csrf_checks=True).post("/status/", {"address": "alice@example.org"})
    assert forged.status_code == 403


def test_a_stranger_sees_the_state_label_and_nothing_else(client, make_account):
    job = running_job(make_account)
    body = answer(client.post("/status/", {"address": "Alice@Example.org"}))
    assert "In progress" in body
    for detail in ("322", "161", "50%", "%", "INBOX", "Secret-project", "alice@example.net", "<progress", "5.0"):
        assert detail not in body, detail
    assert job.created_at.strftime("%Y") not in body, "no dates"

    services.job_finish(
        job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code="timeout", error_detail="NO server said"
    )
    body = answer(client.post("/status/", {"address": "alice@example.org"}))
    assert "Failed" in body
    assert "server said" not in body and "did not answer" not in body.lower() and "destination" not in body.lower()


@pytest.mark.parametrize(
    "status, label",
    [
        (JobStatus.QUEUED, "Not started yet"),
        (JobStatus.RUNNING, "In progress"),
        (JobStatus.FINISHED, "Finished"),
        (JobStatus.FAILED, "Failed"),
        (JobStatus.CANCELLED, "Cancelled"),
    ],
)
def test_each_state_has_its_label(client, make_account, status, label):
    job = services.job_create(source=make_account("alice@example.org"), destination=make_account("bob@example.net"))
    type(job).objects.filter(pk=job.pk).update(status=status)
    assert f"<strong>{label}</strong>" in answer(client.post("/status/", {"address": "alice@example.org"}))


def test_email_me_the_link_goes_to_the_proven_address_only_and_says_the_same_in_every_case(client, make_account):
    confirmed = running_job(make_account, "alice@example.org", "alice@example.net")
    services.job_confirm_report_address(job=confirmed, address="alice@example.net")
    running_job(make_account, "bob@example.org", "victim@example.net")  # typed, never confirmed
    mail.outbox.clear()

    answers = {
        # The form shows back what was typed; the rest must be the same.
        address: answer(client.post("/status/", {"address": address, "send_link": ""})).replace(address, "…")
        for address in ("alice@example.org", "bob@example.org", "nobody@example.org")
    }
    assert len(set(answers.values())) == 1, "the answer tells nothing about the job or its address"
    (same,) = set(answers.values())
    assert LINK_SENT in same
    assert "In progress" not in same and "There is no synchronization" not in same

    (message,) = mail.outbox
    assert message.to == ["alice@example.net"]
    # The link's token is signed with a timestamp: compare what it names, not its bytes (the
    # test's own status_url() may be made in the next second).
    link = re.search(r"https?://\S+/status/(?P<token>[^/\s]+)/", message.body)
    assert link and link.group(0).startswith(status_url(confirmed, absolute=True).split("/status/")[0])
    assert signing.loads(link.group("token"), salt=STATUS_SALT) == str(confirmed.public_id)
    assert "alice@example.org" not in message.body


def test_email_me_the_link_is_limited_per_job_and_per_client(make_account):
    job = running_job(make_account)
    services.job_confirm_report_address(job=job, address="alice@example.net")
    mail.outbox.clear()
    # Per job: a stranger from many addresses cannot flood its owner; the answer stays the same.
    for number in range(5):
        client = Client(REMOTE_ADDR=f"198.51.100.{number}")
        response = client.post("/status/", {"address": "alice@example.org", "send_link": ""})
        assert response.status_code == 200 and LINK_SENT in response.content.decode()
    assert len(mail.outbox) == 3
    # Per client: past its limit a client is told to wait, whatever the address.
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post("/status/", {"address": f"user{n}@example.org", "send_link": ""}).status_code for n in range(6)
    ]
    assert statuses == [200] * 5 + [429]


def test_the_lookup_is_limited_per_client(make_account):
    running_job(make_account)
    client = Client(REMOTE_ADDR="203.0.113.7")
    statuses = [client.post("/status/", {"address": "alice@example.org"}).status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]
    assert Client(REMOTE_ADDR="203.0.113.8").post("/status/", {"address": "alice@example.org"}).status_code == 200
