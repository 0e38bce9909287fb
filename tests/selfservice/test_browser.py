"""The customer pages in a real Chromium, against the live server, a real worker and Dovecot.

Screenshots of each step go to test-artifacts/ (kept by CI as evidence)."""

import re
from pathlib import Path

import pytest
from django.core import mail, signing

from apps.providers.models import Provider
from apps.selfservice.views import STATUS_SALT
from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

ARTIFACTS = REPO / "test-artifacts"


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fill_account(page, server, user, *, password=None):
    page.select_option("select[name=provider]", str(Provider.objects.get(slug="other").pk))
    page.fill("input[name=login]", user.login)
    page.fill("input[name=password]", password or user.password)
    page.fill("input[name=email_address]", f"{user.login}@example.org")
    page.fill("input[name=host]", "localhost")
    page.eval_on_selector("fieldset.server details", "details => { details.open = true; }")
    page.fill("input[name=port]", str(server.tls_port))


def journey(page, live_server, language, source_user, destination_user, run_worker, texts):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    page.goto(f"{live_server.url}/{language}/")
    shot(page, f"{language}-1-source-form")
    fill_account(page, source_server, source)
    page.click("button[type=submit].primary")
    page.wait_for_selector("section.success")
    assert texts["connected"] in page.inner_text("section.success")
    shot(page, f"{language}-2-source-ok")
    page.click("a.button.primary")

    fill_account(page, destination_server, destination)
    page.click("button[type=submit].primary")
    page.wait_for_selector("section.success")
    shot(page, f"{language}-3-destination-ok")
    page.click("a.button.primary")

    shot(page, f"{language}-4-summary")
    page.click("button.primary.big")
    page.wait_for_selector(".state")
    assert texts["queued"] in page.inner_text(".state")
    shot(page, f"{language}-5-queued")

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job = SyncJob.objects.get()
    assert job.status == JobStatus.FINISHED, job.error_code
    # The page updates itself without a reload.
    page.wait_for_selector(".state.state-finished", timeout=15_000)
    assert texts["finished"] in page.inner_text(".state")
    assert page.inner_text("[data-field=copied_text]").startswith("5 ")
    shot(page, f"{language}-6-finished")
    return job


def test_french_journey_in_the_browser(page, live_server, source_user, destination_user, run_worker):
    job = journey(
        page, live_server, "fr", source_user, destination_user, run_worker,
        {"connected": "La connexion à votre compte a été établie.",
         "queued": "Votre copie n’a pas encore commencé",
         "finished": "Terminée"},
    )  # fmt: skip
    assert job.language == "fr"


def test_portuguese_journey_in_the_browser(page, live_server, source_user, destination_user, run_worker):
    job = journey(
        page, live_server, "pt", source_user, destination_user, run_worker,
        {"connected": "A conexão com a sua conta foi estabelecida.",
         "queued": "A sua cópia ainda não começou",
         "finished": "Concluída"},
    )  # fmt: skip
    assert job.language == "pt"


def test_wrong_password_in_the_browser(page, live_server, source_user):
    server, user = source_user
    page.goto(f"{live_server.url}/fr/")
    fill_account(page, server, user, password="not-the-password")
    page.click("button[type=submit].primary")
    page.wait_for_selector(".form-error")
    assert "Le serveur a refusé l’identifiant ou le mot de passe." in page.inner_text(".form-error")
    assert page.input_value("input[name=password]") == ""
    shot(page, "fr-wrong-password")


def test_duplicate_job_in_the_browser(browser, live_server, source_user, destination_user):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    pages = []
    for _ in range(2):
        page = browser.new_context().new_page()
        page.goto(f"{live_server.url}/")
        fill_account(page, source_server, source)
        page.click("button[type=submit].primary")
        page.click("a.button.primary")
        fill_account(page, destination_server, destination)
        page.click("button[type=submit].primary")
        page.click("a.button.primary")
        pages.append(page)
    pages[0].click("button.primary.big")
    pages[0].wait_for_selector(".state")
    pages[1].click("button.primary.big")
    pages[1].wait_for_selector(".messages")
    assert "A synchronization job already exists for this account." in pages[1].inner_text(".messages")
    shot(pages[1], "en-duplicate-job")
    assert SyncJob.objects.count() == 1


def test_status_lookup_in_the_browser(page, live_server, make_account):
    page.goto(f"{live_server.url}/de/status/")
    page.fill("input[name=address]", "nobody@example.org")
    page.click("button[type=submit].primary")
    page.wait_for_selector(".notice")
    assert "Für diese Adresse gibt es keine Synchronisierung." in page.inner_text(".notice")
    assert page.url == f"{live_server.url}/de/status/", "a POST: the address is not in the URL"
    shot(page, "de-status-not-found")

    # A stranger who knows an address sees the state of its copy, and nothing more.
    job = services.job_create(source=make_account("alice@example.org"), destination=make_account("alice@example.net"))
    services.job_confirm_report_address(job=job, address="alice@example.net")
    run = services.job_claim(job_id=job.pk, worker_name="w")
    counters = services.JobCounters(messages_total=322, messages_copied=161, current_folder="INBOX.Trash")
    services.job_record_progress(job_id=job.pk, run=run, counters=counters)
    page.goto(f"{live_server.url}/status/?address=alice@example.org")
    assert page.input_value("input[name=address]") == "" and page.query_selector(".state") is None
    page.fill("input[name=address]", "alice@example.org")
    page.click("button[type=submit].primary")
    page.wait_for_selector(".state")
    main = page.inner_text("main")
    assert "In progress" in page.inner_text(".state")
    assert "322" not in main and "INBOX" not in main and "%" not in main
    assert page.query_selector("progress") is None
    shot(page, "en-status-lookup-state")

    # "Email me the link": the private link goes to the confirmed report address alone.
    mail.outbox.clear()
    page.click("button[name=send_link]")
    page.wait_for_selector(".link-sent")
    assert "If a copy of this mailbox exists, we sent the link" in page.inner_text(".link-sent")
    assert page.query_selector(".state") is None
    (message,) = mail.outbox
    assert message.to == ["alice@example.net"]
    # The token carries its signing time: compare the job it names, not its bytes.
    token = re.search(r"/status/([^/\s]+)/", message.body).group(1)
    assert signing.loads(token, salt=STATUS_SALT) == str(job.public_id)
    shot(page, "en-status-lookup-link-sent")
