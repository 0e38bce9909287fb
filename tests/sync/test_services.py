"""The rules every caller relies on: one active job per source, atomic claims, cancel, retry."""

import threading

import pytest
from django.db import connection

from apps.mailboxes.services import account_erase_password
from apps.sync import services
from apps.sync.engine.model import Security
from apps.sync.engine.urls import AccountURL
from apps.sync.models import JobStatus, SyncJob


@pytest.fixture
def accounts(make_account):
    return make_account("Alice@Example.org"), make_account("alice@new.example.net")


@pytest.mark.django_db
def test_second_job_for_the_same_source_is_refused(accounts, make_account):
    source, destination = accounts
    services.job_create(source=source, destination=destination)
    same_address_other_record = make_account("alice@example.ORG")
    with pytest.raises(services.JobAlreadyActive):
        services.job_create(source=same_address_other_record, destination=destination)
    assert SyncJob.objects.count() == 1


@pytest.mark.django_db
def test_one_active_job_per_source_mailbox_whatever_address_is_typed(make_account):
    """The mailbox is its login on its server: typing another address does not start a second
    copy of it beside the first."""
    destination = make_account("dest@example.net")
    first = make_account("alice@example.org", login="alice", host="imap.example.org")
    services.job_create(source=first, destination=destination)
    same_mailbox = make_account("someone-else@example.com", login="ALICE", host="IMAP.Example.org.")
    with pytest.raises(services.JobAlreadyActive):
        services.job_create(source=same_mailbox, destination=destination)
    assert SyncJob.objects.count() == 1


@pytest.mark.django_db
def test_typing_someones_address_does_not_block_their_copy(make_account):
    """An attacker who types the victim's address over their own (slow) server does not lock the
    victim out: the victim's mailbox is another one."""
    destination = make_account("dest@example.net")
    attacker = make_account("victim@example.org", login="attacker", host="slow.attacker.example")
    services.job_create(source=attacker, destination=destination)
    victim = make_account("victim@example.org", login="victim@example.org", host="imap.example.org")
    assert services.job_create(source=victim, destination=destination).status == JobStatus.QUEUED


@pytest.mark.django_db
def test_the_destination_cannot_be_the_source_mailbox_itself(make_account):
    source = make_account("alice@example.org", login="alice", host="imap.example.org")
    itself = make_account("alice.other@example.org", login="Alice", host="imap.example.org")
    with pytest.raises(services.SameMailbox):
        services.job_create(source=source, destination=itself)
    assert not SyncJob.objects.exists()


@pytest.mark.django_db
def test_an_ended_job_lets_a_new_one_start(accounts):
    source, destination = accounts
    first = services.job_create(source=source, destination=destination)
    assert services.job_claim(job_id=first.pk, worker_name="test")
    services.job_finish(job_id=first.pk, status=JobStatus.FAILED, counters=None, error_code="auth_failed")
    source.refresh_from_db()
    second = services.job_create(source=source, destination=destination)
    assert second.status == JobStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_racing_requests_for_one_source_create_exactly_one_job(make_account):
    destination = make_account("dest@example.net")
    sources = [make_account("racer@example.org") for _ in range(6)]
    barrier = threading.Barrier(len(sources))
    outcomes: list[str] = []

    def submit(source):
        try:
            barrier.wait()
            services.job_create(source=source, destination=destination)
            outcomes.append("created")
        except services.JobAlreadyActive:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * 5
    assert SyncJob.objects.filter(source_address="racer@example.org").count() == 1


@pytest.mark.django_db
def test_only_one_claim_of_a_job_wins(accounts):
    job = services.job_create(source=accounts[0], destination=accounts[1])
    assert services.job_claim(job_id=job.pk, worker_name="first")
    assert not services.job_claim(job_id=job.pk, worker_name="second")
    job.refresh_from_db()
    assert (job.status, job.worker_name, job.attempts) == (JobStatus.RUNNING, "first", 1)


@pytest.mark.django_db
def test_a_cancelled_queued_job_never_starts(accounts):
    job = services.job_create(source=accounts[0], destination=accounts[1])
    services.job_cancel(job=job)
    assert job.status == JobStatus.CANCELLED
    assert not services.job_claim(job_id=job.pk, worker_name="worker")


@pytest.mark.django_db
def test_cancelling_a_running_job_asks_it_to_stop(accounts):
    job = services.job_create(source=accounts[0], destination=accounts[1])
    services.job_claim(job_id=job.pk, worker_name="worker")
    services.job_cancel(job=job)
    assert (job.status, job.cancel_requested) == (JobStatus.RUNNING, True)


@pytest.mark.django_db
def test_a_finished_job_cannot_be_cancelled_or_retried(accounts):
    job = services.job_create(source=accounts[0], destination=accounts[1])
    services.job_claim(job_id=job.pk, worker_name="worker")
    services.job_finish(job_id=job.pk, status=JobStatus.FINISHED, counters=services.JobCounters(messages_copied=3))
    with pytest.raises(services.InvalidJobState):
        services.job_cancel(job=job)
    with pytest.raises(services.InvalidJobState):
        services.job_retry(job=job)


@pytest.mark.django_db
def test_finishing_a_job_erases_both_passwords(accounts):
    source, destination = accounts
    job = services.job_create(source=source, destination=destination)
    services.job_claim(job_id=job.pk, worker_name="worker")
    services.job_finish(job_id=job.pk, status=JobStatus.FINISHED, counters=services.JobCounters(messages_copied=3))
    source.refresh_from_db()
    destination.refresh_from_db()
    assert not source.has_password and source.password_erased_at
    assert not destination.has_password and destination.password_erased_at
    job.refresh_from_db()
    assert job.messages_copied == 3


@pytest.mark.django_db
def test_retry_requeues_a_failed_job_unless_another_is_active(accounts, make_account):
    source, destination = accounts
    job = services.job_create(source=source, destination=destination)
    services.job_claim(job_id=job.pk, worker_name="worker")
    services.job_finish(job_id=job.pk, status=JobStatus.FAILED, counters=None, error_code="timeout")
    other = services.job_create(source=make_account("alice@example.org"), destination=destination)
    with pytest.raises(services.JobAlreadyActive):
        services.job_retry(job=job)
    services.job_cancel(job=other)
    services.job_retry(job=job)
    assert (job.status, job.error_code) == (JobStatus.QUEUED, "")


@pytest.mark.django_db
def test_retry_refuses_when_credentials_were_erased(accounts):
    job = services.job_create(source=accounts[0], destination=accounts[1])
    services.job_cancel(job=job)
    account_erase_password(account=accounts[0])
    with pytest.raises(services.CredentialsErased):
        services.job_retry(job=job)


# --- Staff's command line: a rerun resumes the previous job of the same two accounts -------------


def url(login: str, port: int = 993) -> AccountURL:
    return AccountURL(login=login, host="127.0.0.1", port=port, security=Security.TLS)


def resume(source: str = "cli@example.org", destination: str = "cli@example.net", *, port=993, dead=True):
    return services.job_resume_or_create(
        source=url(source, port),
        destination=url(destination, port),
        source_password="source-pw",
        destination_password="destination-pw",
        run_is_dead=lambda job: dead,
    )


@pytest.mark.django_db
def test_the_command_line_resumes_its_previous_job_with_the_accounts_as_now_named():
    job = resume()
    assert job.status == JobStatus.QUEUED and not job.rq_job_id, "left for the command to claim, not enqueued"
    run = services.job_claim(job_id=job.pk, worker_name="copymailbox:here:1")
    services.job_finish(job_id=job.pk, run=run, status=JobStatus.FINISHED, counters=None)
    assert not SyncJob.objects.get(pk=job.pk).source.has_password, "erased at the end"

    again = resume(port=1993)
    assert again.pk == job.pk and again.status == JobStatus.QUEUED
    assert (again.source.port, again.destination.port) == (1993, 1993)
    assert again.source.has_password and again.destination.has_password
    assert SyncJob.objects.count() == 1


@pytest.mark.django_db
def test_the_command_line_takes_over_a_dead_run_but_never_a_live_one():
    job = resume()
    services.job_claim(job_id=job.pk, worker_name="copymailbox:here:1")
    with pytest.raises(services.JobStillRunning):
        resume(dead=False)
    assert SyncJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
    taken = resume(dead=True)
    assert (taken.pk, taken.status) == (job.pk, JobStatus.QUEUED)
    assert taken.events.filter(kind="recovered").exists()
