"""The status pages as the customer reads them (issue 14, items 3 and 6): copied apart from what
was already there, one unit system, readable durations and folders, one sentence per state, the
report's address, "Start another copy", a lookup that says when its answer was true, the
synchronize step when a copy of the mailbox is under way, the 404 and 500 pages.

The browser tests at the end drive Chromium in French and Portuguese; they look for translated
text, so they pass once the catalogs carry this work's translations."""

from __future__ import annotations

import datetime
import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone, translation

from apps.selfservice import status_views
from apps.sync import formatting, links, reports, services
from apps.sync.links import status_url
from apps.sync.models import JobEvent, JobStatus, SyncJob
from tests.support.report_address import confirmed_report_address

pytestmark = pytest.mark.django_db


def counters(**values) -> services.JobCounters:
    return services.JobCounters(**values)


def started_job(make_account, *, source="alice@example.org", destination="alice@example.net") -> tuple[SyncJob, int]:
    job = services.job_create(source=make_account(source), destination=make_account(destination), enqueue=False)
    confirmed_report_address(job)
    run = services.job_claim(job_id=job.pk, worker_name="w")
    return job, run


def ended_job(make_account, *, status=JobStatus.FINISHED, events=(), seconds=2, **figures) -> SyncJob:
    job, run = started_job(make_account)
    for kind, folder, detail in events:
        services.job_record_event(job_id=job.pk, kind=kind, folder=folder, detail=detail)
    values = dict(folders_total=3, folders_done=3, messages_total=5, messages_copied=5, bytes_copied=12_345)
    values.update(figures)
    services.job_finish(
        job_id=job.pk,
        run=run,
        status=status,
        counters=counters(**values),
        error_code="auth_failed" if status == JobStatus.FAILED else "",
        error_side="source" if status == JobStatus.FAILED else "",
    )
    finished = timezone.now()
    SyncJob.objects.filter(pk=job.pk).update(
        started_at=finished - datetime.timedelta(seconds=seconds), finished_at=finished
    )
    job.refresh_from_db()
    return job


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("\xa0", " ")


def page_text(job: SyncJob, client: Client | None = None) -> str:
    response = (client or Client()).get(status_url(job))
    assert response.status_code == 200
    return text_of(response.content.decode())


# --- Item 3: what was copied, in one unit system ------------------------------------------------

ALL_THERE = [
    ("already_present", "INBOX", {"messages": 15_000, "bytes": 400_000_000}),
    ("already_present", "INBOX.Archives", {"messages": 718, "bytes": 44_300_000}),
]


def test_a_rerun_onto_a_full_destination_says_nothing_was_copied(make_account):
    job = ended_job(
        make_account,
        events=ALL_THERE,
        messages_total=15_718,
        messages_copied=15_718,
        bytes_copied=444_300_000,
        bytes_total=444_300_000,
    )
    text = page_text(job)
    assert "Every message was already in the destination mailbox: nothing needed to be copied." in text
    assert "Copied into the destination 0 messages (0 bytes)" in text
    assert "Already in the destination, not copied again 15,718 messages (444.3 MB)" in text
    assert "15,718 of 15,718" not in text and "copied 15,718" not in text.lower()
    assert "Not copied none" in text


def test_copied_and_already_there_are_counted_apart(make_account):
    job = ended_job(
        make_account,
        events=[("already_present", "INBOX", {"messages": 2, "bytes": 2_000})],
        messages_total=1_234_567,
        messages_copied=1_234_567,
        bytes_copied=3_002_000_000,
    )
    figures = reports.copy_figures(job)
    assert (figures.copied, figures.present) == (1_234_565, 2)
    assert (figures.copied_bytes, figures.present_bytes) == (3_002_000_000 - 2_000, 2_000)
    text = page_text(job)
    assert "Copied into the destination 1,234,565 messages (3.0 GB)" in text
    assert "Already in the destination, not copied again 2 messages (2.0 kB)" in text
    assert "Your copy is finished: every message of the source mailbox is in the destination mailbox." in text


def test_already_there_never_exceeds_what_the_job_counts(make_account):
    # A run killed before its checkpoint finds the same messages again: their events add up twice.
    twice = [("already_present", "INBOX", {"messages": 5, "bytes": 10_000})] * 2
    job = ended_job(make_account, events=twice, messages_copied=5, bytes_copied=10_000)
    figures = reports.copy_figures(job)
    assert (figures.copied, figures.present, figures.copied_bytes, figures.present_bytes) == (0, 5, 0, 10_000)


def test_events_without_sizes_are_given_the_average_size(make_account):
    job = ended_job(
        make_account, events=[("already_present", "INBOX", {"messages": 2})], messages_copied=4, bytes_copied=4_000
    )
    assert reports.copy_figures(job).present_bytes == 2_000


def test_messages_not_copied_are_said_apart_from_each_other(make_account):
    job = ended_job(make_account, messages_total=10, messages_copied=7, messages_skipped=2, messages_failed=1)
    text = page_text(job)
    assert "Not copied 3 messages: 2 too large, 1 refused by the destination" in text
    assert "skipped or failed" not in text.lower() and "0 / 0" not in text
    assert "Finished, some messages not copied" in text


@pytest.mark.parametrize(
    ("value", "english"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (999, "999 bytes"),
        (1_000, "1.0 kB"),
        (465_900_000, "465.9 MB"),
        (999_960_000, "1.0 GB"),
        (15_000_000_000, "15.0 GB"),
    ],
)
def test_sizes_are_decimal_units(value, english):
    assert formatting.size_text(value).replace("\xa0", " ") == english


@pytest.mark.parametrize(
    ("seconds", "english"),
    [(2, "2 seconds"), (1, "1 second"), (59, "59 seconds"), (130, "2 minutes"), (3600, "1 hour"), (7500, "2 h 05 min")],
)
def test_durations_are_in_seconds_under_a_minute(seconds, english):
    assert formatting.duration_text(seconds) == english


def test_a_two_second_copy_lasts_two_seconds(make_account):
    job = ended_job(make_account, seconds=2)
    assert "Duration 2 seconds" in page_text(job)


def test_counts_use_the_languages_thousands_separator():
    with translation.override("fr"):
        assert formatting.count_text(15_718) in ("15\xa0718", "15 718", "15\u202f718")
        assert formatting.size_text(444_300_000).startswith("444,3")
    with translation.override("de"):
        assert formatting.count_text(15_718) == "15.718"


def test_the_connection_summary_and_the_synchronize_step_use_the_same_units(client, make_account):
    source, destination = make_account("s@example.org"), make_account("d@example.net")
    verified_session(client, source, destination)
    type(source).objects.filter(pk=source.pk).update(found_messages=15_718, found_bytes=465_900_000, found_folders=3)
    for path in ("/", "/synchronize/"):
        text = text_of(client.get(path).content.decode())
        assert "15,718" in text and "465.9 MB" in text, path
        assert "444.3 MB" not in text, "binary units (465,900,000 bytes are 444.3 MiB) are gone"


# --- Item 6: one sentence per state, the report, what comes next --------------------------------

STATE_SENTENCES = {
    JobStatus.QUEUED: "Your copy has not started yet",
    JobStatus.RUNNING: "Your copy is in progress.",
    JobStatus.FINISHED: "Your copy is finished: every message",
    JobStatus.FAILED: "Your copy stopped because of an error.",
    JobStatus.CANCELLED: "Your copy was cancelled.",
}


@pytest.mark.parametrize("status", list(STATE_SENTENCES))
def test_each_state_has_its_own_sentence(make_account, status):
    if status == JobStatus.QUEUED:
        job = services.job_create(source=make_account("q@example.org"), destination=make_account(), enqueue=False)
    elif status == JobStatus.RUNNING:
        job, _run = started_job(make_account)
    else:
        job = ended_job(make_account, status=status)
    text = page_text(job)
    assert STATE_SENTENCES[status] in text
    assert "being processed" not in text and "form below" not in text
    for other, sentence in STATE_SENTENCES.items():
        if other != status:
            assert sentence not in text
    ended = status not in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert ("Start another copy" in text) == ended


def test_the_finished_page_names_the_address_the_report_went_to(make_account):
    job = ended_job(make_account)
    services.job_send_report(job=job)
    response = Client().get(status_url(job))
    html = response.content.decode()
    assert "The report was emailed to alice@example.net." in text_of(html)
    assert re.search(r'<a class="button primary" href="/">Start another copy</a>', html)


def test_the_report_address_waiting_for_confirmation_is_said_so(make_account):
    job = services.job_create(
        source=make_account(), destination=make_account("bob@example.net"), enqueue=False
    )  # not confirmed
    text = page_text(job)
    assert "The report will be emailed to bob@example.net only once you confirm this address" in text


def test_the_first_view_of_the_status_page_says_nothing_of_a_form_below(client, make_account):
    # The synchronize step used to flash "being processed, follow it with the form below" onto
    # the status page (no form there), whatever the copy's state when it opened.
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    response = client.post("/synchronize/", follow=True)
    text = text_of(response.content.decode())
    assert "State of your copy" in text
    assert "being processed" not in text and "form below" not in text
    assert "Your copy has not started yet" in text


def test_the_current_folder_is_shown_with_slashes(make_account):
    job, run = started_job(make_account)
    services.job_record_event(
        job_id=job.pk, kind="folder_started", folder="INBOX.Archives2020", detail={"separator": "."}
    )
    services.job_record_progress(
        job_id=job.pk, run=run, counters=counters(messages_total=10, current_folder="INBOX.Archives2020")
    )
    job.refresh_from_db()
    assert status_views.job_state(job)["current_folder"] == "INBOX/Archives2020"
    # A "/" server's folder keeps its dots.
    services.job_record_event(job_id=job.pk, kind="folder_started", folder="Lists/v1.2", detail={"separator": "/"})
    services.job_record_progress(job_id=job.pk, run=run, counters=counters(current_folder="Lists/v1.2"))
    job.refresh_from_db()
    assert status_views.job_state(job)["current_folder"] == "Lists/v1.2"


def test_the_time_left_follows_the_slower_of_bytes_and_messages(make_account):
    """96 % of the bytes after 100 minutes, but half of the messages (the small ones) still to go:
    the old estimate said "about 5 min" (elapsed x 4 / 96); the pace of the messages says more."""
    job, run = started_job(make_account)
    services.job_record_progress(
        job_id=job.pk,
        run=run,
        counters=counters(
            messages_total=10_000, messages_copied=5_000, bytes_total=100_000_000, bytes_copied=96_000_000
        ),
    )
    SyncJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - datetime.timedelta(minutes=100))
    job.refresh_from_db()
    assert job.percent_done == 96
    eta = status_views.job_state(job)["eta"]
    assert eta in ("about 1 h 40 min", "about 1 h 45 min"), eta  # 100 minutes, rounded up to 5


def test_the_time_left_uses_the_recent_pace(make_account):
    job, run = started_job(make_account)
    services.job_record_progress(
        job_id=job.pk, run=run, counters=counters(messages_total=1_000, messages_copied=100, bytes_total=0)
    )
    SyncJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - datetime.timedelta(minutes=10))
    job.refresh_from_db()
    status_views.job_state(job)  # the first sample
    # 60 s later, 600 more messages: 10 a second, so 300 left take about 30 s, not the
    # 10-minute average's pace (700 in 11 minutes: 3 more minutes).
    key = f"selfservice:eta:{job.pk}:{job.attempts}"
    from django.core.cache import cache

    (sample,) = cache.get(key)
    cache.set(key, [(sample[0] - 60, *sample[1:])], 600)
    services.job_record_progress(
        job_id=job.pk, run=run, counters=counters(messages_total=1_000, messages_copied=700, bytes_total=0)
    )
    job.refresh_from_db()
    assert status_views.job_state(job)["eta"] == "less than a minute"


def test_the_progress_json_carries_the_same_texts(make_account):
    job = ended_job(make_account, events=ALL_THERE, messages_total=15_718, messages_copied=15_718)
    state = Client().get(status_url(job) + "progress/").json()
    assert state["sentence"].startswith("Your copy is finished. Every message was already")
    assert state["messages_present"] == 15_718 and state["messages_new"] == 0
    assert state["messages_copied"] == 15_718  # the job's own counter, as before
    assert state["copied_text"].replace("\xa0", " ") == "0 messages (0 bytes)"


# --- The public lookup: the state alone, and when it was so -------------------------------------


def test_the_lookup_says_when_its_answer_was_true_and_how_to_follow_live(client, make_account):
    job, _run = started_job(make_account)
    response = client.post("/status/", {"address": "alice@example.org"})
    html = response.content.decode()
    text = text_of(html)
    assert "In progress" in text
    assert re.search(r"This was the state at \d\d:\d\d:\d\d \(UTC\)\. This page does not update by itself\.", text)
    assert "The details and the live progress of a copy are on its private page." in text
    assert html.count('name="send_link"') == 2  # in the answer, and in the form
    # Still the state alone: no figure, no progress bar, no folder.
    assert "<progress" not in html and "%" not in text and "data-progress-url" not in html
    # Its button sends the link to the proven report address, as the form's does.
    mail.outbox.clear()
    client.post("/status/", {"address": "alice@example.org", "send_link": ""})
    (message,) = mail.outbox
    assert message.to == ["alice@example.net"]
    assert job.public_id


# --- The synchronize step when a copy of the mailbox is under way -------------------------------


def verified_session(client, source, destination) -> None:
    type(source).objects.filter(pk__in=[source.pk, destination.pk]).update(verified_at=timezone.now())
    session = client.session
    session["source_account_id"], session["destination_account_id"] = source.pk, destination.pk
    session.save()


def test_after_already_exists_the_page_says_so_and_leads_to_the_copy(make_account):
    source, destination = make_account("s@example.org"), make_account("d@example.net")
    first, second = Client(), Client()
    verified_session(first, source, destination)
    response = first.post("/synchronize/")
    job = SyncJob.objects.get()
    assert response.status_code == 302 and response.url == status_url(job)

    # The same mailbox again, from this browser (a second tab, a double click).
    verified_session(first, source, destination)
    response = first.post("/synchronize/", follow=True)
    html = response.content.decode()
    text = text_of(html)
    assert "A synchronization job already exists for this account." in text
    assert "A copy of this mailbox is already under way" in text
    assert "Ready to copy" not in text and 'class="primary big"' not in html
    assert f'href="{status_url(job)}"' in html and "Follow this copy" in text

    # From another browser (the mailbox's login proven there too): the link goes by email only.
    other_source = make_account("s@example.org")
    verified_session(second, other_source, make_account("e@example.net"))
    html = second.get("/synchronize/").content.decode()
    assert "A copy of this mailbox is already under way" in text_of(html)
    assert status_url(job).split("/status/")[1][:20] not in html and "Follow this copy" not in html
    mail.outbox.clear()
    confirmed_report_address(job)
    response = second.post("/synchronize/", {"send_link": ""}, follow=True)
    assert "We sent the link to the page of this copy" in text_of(response.content.decode())
    (message,) = mail.outbox
    assert message.to == [job.report_address]
    assert SyncJob.objects.count() == 1


# --- The report's link: the portal's address the customer used ----------------------------------


def test_the_emails_links_use_the_address_the_customer_used(make_account, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "copy.example.com"]
    settings.SITE_URL = "http://127.0.0.1:8000"
    client = Client(HTTP_HOST="copy.example.com:8443")
    source, destination = make_account("s@example.org"), make_account("d@example.net")
    verified_session(client, source, destination)
    mail.outbox.clear()
    client.post("/synchronize/")
    job = SyncJob.objects.get()
    (confirmation,) = mail.outbox  # the typed address gets its confirmation link
    assert "http://copy.example.com:8443/report/" in confirmation.body
    assert status_url(job, absolute=True).startswith("http://copy.example.com:8443/status/")


def test_a_host_outside_allowed_hosts_never_reaches_an_email(make_account, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    client = Client(HTTP_HOST="evil.example")
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    assert client.post("/synchronize/").status_code == 400
    assert not SyncJob.objects.exists()


def test_a_wildcard_allowed_hosts_keeps_site_url(make_account, settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.SITE_URL = "https://imapcopy.example.com"
    client = Client(HTTP_HOST="evil.example")
    verified_session(client, make_account("s@example.org"), make_account("d@example.net"))
    mail.outbox.clear()
    client.post("/synchronize/")
    job = SyncJob.objects.get()
    assert "evil.example" not in mail.outbox[0].body
    assert status_url(job, absolute=True).startswith("https://imapcopy.example.com/status/")
    assert not JobEvent.objects.filter(job=job, kind=links.SITE_ADDRESS_EVENT).exists()


# --- The link's lifetime is the setting's --------------------------------------------------------


@pytest.mark.parametrize(("days", "said"), [(7, "for 7 days"), (1, "for 1 day")])
def test_the_page_says_how_long_its_link_works_as_configured(make_account, settings, days, said):
    settings.IMAPCOPY_STATUS_LINK_DAYS = days
    job = ended_job(make_account)
    text = page_text(job)
    assert f"it shows the state of your copy {said}." in text
    assert "30 days" not in text


# --- 404 and 500 --------------------------------------------------------------------------------


def test_a_mistyped_status_link_gets_the_sites_404_page():
    response = Client().get("/status/not-a-token/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found" in html and "Not Found" not in html
    assert 'class="brand"' in html and 'href="/"' in html and 'href="/status/"' in html
    assert "favicon.svg" in html


def test_the_500_page_is_in_the_sites_look(rf):
    from django.views.defaults import server_error

    request = rf.get("/")
    with translation.override("fr"):
        response = server_error(request)
    html = response.content.decode()
    assert response.status_code == 500
    assert '<html lang="fr">' in html and 'href="/fr/"' in html and "portal.css" in html


# --- In the browser, in French and Portuguese (wait for the catalogs' merge) --------------------

BROWSER_TEXTS = {
    "fr": {
        "finished": "Votre copie est terminée : chaque message de la boîte mail source se trouve dans la boîte mail "
        "de destination.",
        "another": "Commencer une autre copie",
        "report": "Le rapport a été envoyé par e-mail à alice@example.net.",
        "duration": "2 secondes",
        "not_found": "Page introuvable",
        "start": "Commencer une copie",
        "running": "Votre copie est en cours.",
        "as_of": "C’était l’état à",
    },
    "pt": {
        "finished": "A sua cópia foi concluída: todas as mensagens da caixa de correio de origem estão na caixa de "
        "correio de destino.",
        "another": "Iniciar outra cópia",
        "report": "O relatório foi enviado por e-mail para alice@example.net.",
        "duration": "2 segundos",
        "not_found": "Página não encontrada",
        "start": "Iniciar uma cópia",
        "running": "A sua cópia está em curso.",
        "as_of": "Este era o estado às",
    },
}


def shot(page, name: str) -> None:
    """A screenshot for the record (test-artifacts/, kept by CI as evidence)."""
    from tests.conftest import REPO

    (REPO / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "test-artifacts" / f"{name}.png"), full_page=True)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_the_finished_page_in_the_browser(page, live_server, make_account, language):
    job = ended_job(make_account, seconds=2)
    services.job_send_report(job=job)
    page.goto(f"{live_server.url}/{language}{status_url(job)}")
    texts = BROWSER_TEXTS[language]
    state = page.inner_text(".state")
    assert texts["finished"] in state and texts["duration"] in state
    assert texts["report"] in page.inner_text(".report-address")
    body = page.inner_text("main")
    assert "en cours de traitement" not in body and "em processamento" not in body
    assert page.get_attribute("link[rel=icon]", "href").endswith("favicon.svg")
    shot(page, f"{language}-status-finished-390")
    # "Start another copy": a big enough target, and it leads to the first step in the same language.
    link = page.get_by_role("link", name=texts["another"])
    box = link.bounding_box()
    assert box["height"] >= 40, box
    link.click()
    page.wait_for_url(f"{live_server.url}/{language}/")
    assert page.query_selector("form.account select[name=provider]") is not None


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_the_page_shows_the_end_of_a_copy_without_a_reload(page, live_server, make_account, language):
    job, run = started_job(make_account)
    services.job_record_progress(job_id=job.pk, run=run, counters=counters(messages_total=5, messages_copied=2))
    page.goto(f"{live_server.url}/{language}{status_url(job)}")
    texts = BROWSER_TEXTS[language]
    assert texts["running"] in page.inner_text(".state")
    assert page.query_selector(f"text={texts['another']}") is None
    services.job_finish(
        job_id=job.pk, run=run, status=JobStatus.FINISHED, counters=counters(messages_total=5, messages_copied=5)
    )
    page.wait_for_selector(".state.state-finished", timeout=15_000)
    page.get_by_role("link", name=texts["another"]).wait_for()
    assert texts["finished"] in page.inner_text(".state")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_a_mistyped_status_link_in_the_browser(page, live_server, language):
    response = page.goto(f"{live_server.url}/{language}/status/not-a-valid-token/")
    assert response.status == 404
    texts = BROWSER_TEXTS[language]
    assert texts["not_found"] in page.inner_text("h1")
    shot(page, f"{language}-404-390")
    assert "Not Found" not in page.content()
    page.get_by_role("link", name=texts["start"], exact=True).click()
    page.wait_for_url(f"{live_server.url}/{language}/")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_the_lookup_says_its_answer_is_a_snapshot_in_the_browser(page, live_server, make_account, language):
    started_job(make_account)
    page.goto(f"{live_server.url}/{language}/status/")
    page.fill("input[name=address]", "alice@example.org")
    page.click("button[name=show]")
    page.wait_for_selector(".lookup-result")
    assert BROWSER_TEXTS[language]["as_of"] in page.inner_text(".lookup-result")
    shot(page, f"{language}-status-lookup-390")
    assert page.query_selector(".lookup-result button[name=send_link]") is not None
    assert page.query_selector("progress") is None
