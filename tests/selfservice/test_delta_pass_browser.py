"""Copy new mail again (issue 14, item 7) in a real Chromium, in French and Portuguese: the button
of a finished copy whose passwords were kept, and the form that asks for them again when they
were erased (a wrong one refused beside its field, by a real login to Dovecot).

These look for this work's translated text ("Copier les nouveaux messages", …): they pass once
the catalogs carry it. The refusal beside the field uses the form step's own words, already
translated."""

from __future__ import annotations

import django_rq
import pytest
from django.conf import settings

from apps.selfservice.status_views import status_url
from apps.sync import services
from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO
from tests.support.report_address import confirmed_report_address

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

TEXTS = {
    "fr": {
        "button": "Copier les nouveaux messages",
        "kept": "Vos mots de passe sont conservés (chiffrés) jusqu’au",
        "asked": "Nous avons effacé vos mots de passe à la fin de la copie",
        "source": "Compte source",
        "refused": "Le serveur a refusé cet identifiant ou ce mot de passe.",
        "works": "Compte de destination : la connexion fonctionne.",
        "queued": "Votre copie n’a pas encore commencé",
        "new": "Nouveaux messages copiés cette fois : 5 messages",
    },
    "pt": {
        "button": "Copiar novamente o correio novo",
        "kept": "As suas senhas estão guardadas (cifradas) até",
        "asked": "Apagámos as suas senhas no fim da cópia",
        "source": "Conta de origem",
        "refused": "O servidor recusou este login ou esta senha.",
        "works": "Conta de destino: a conexão funciona.",
        "queued": "A sua cópia ainda não começou",
        "new": "Correio novo copiado desta vez: 5 mensagens",
    },
}


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def empty_copy_queue():
    yield
    django_rq.get_queue(settings.COPY_QUEUE).empty()


def shot(page, name: str) -> None:
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "test-artifacts" / f"{name}.png"), full_page=True)


def finished_job(source, destination, *, keep_days: int, copied: int = 5) -> SyncJob:
    """A copy that ended (as the worker ends it: the passwords erased unless kept), recorded
    without running: it leaves no checkpoint, so a rerun copies the whole mailbox."""
    job = services.job_create(source=source, destination=destination, enqueue=False, keep_credentials_days=keep_days)
    confirmed_report_address(job)
    run = services.job_claim(job_id=job.pk, worker_name="w")
    services.job_finish(
        job_id=job.pk, run=run, status=JobStatus.FINISHED,
        counters=services.JobCounters(folders_total=2, folders_done=2, messages_total=5, messages_copied=copied,
                                      bytes_copied=200 * copied),
    )  # fmt: skip
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("language", ["fr", "pt"])
def test_the_button_copies_new_mail_again_with_the_kept_passwords(
    page, live_server, make_account, language, empty_copy_queue
):
    job = finished_job(make_account("alice@example.org"), make_account("alice@example.net"), keep_days=7)
    texts = TEXTS[language]
    page.goto(f"{live_server.url}/{language}{status_url(job)}")
    section = page.locator("section.new-mail")
    assert texts["kept"] in section.inner_text()
    assert page.query_selector("section.new-mail input[type=password]") is None, "kept: no password asked"
    button = page.get_by_role("button", name=texts["button"])
    assert button.bounding_box()["height"] >= 40
    shot(page, f"{language}-new-mail-kept-390")
    button.click()
    page.wait_for_selector(".state.state-queued")
    assert texts["queued"] in page.inner_text(".state")
    assert page.query_selector("section.new-mail") is None, "the copy is under way: no second button"
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and SyncJob.objects.count() == 1


@pytest.mark.parametrize("language", ["fr", "pt"])
def test_erased_passwords_are_asked_again_and_a_wrong_one_is_refused_beside_its_field(
    page, live_server, make_account, source_user, destination_user, run_worker, language
):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    job = finished_job(
        make_account(f"{source.login}@example.org", login=source.login, password=source.password,
                     host="localhost", port=source_server.tls_port),
        make_account(f"{destination.login}@example.org", login=destination.login, password=destination.password,
                     host="localhost", port=destination_server.tls_port),
        keep_days=0, copied=0,
    )  # fmt: skip
    texts = TEXTS[language]
    page.goto(f"{live_server.url}/{language}{status_url(job)}")
    assert texts["asked"] in page.inner_text("section.new-mail")
    # The logins are the job's, read-only; only the passwords are typed.
    assert page.input_value("input[name=source_login]") == source.login
    assert page.is_disabled("input[name=destination_login]")
    assert texts["source"] in page.inner_text("#new-mail-source legend")
    page.fill("input[name=source_password]", "not-the-password")
    page.fill("input[name=destination_password]", destination.password)
    shot(page, f"{language}-new-mail-passwords-390")
    page.get_by_role("button", name=texts["button"]).click()

    # Tested by a real login: the wrong one is refused beside its field, the right one is kept.
    page.wait_for_selector("#field-source_password .errorlist")
    assert texts["refused"] in page.inner_text("#field-source_password .errorlist")
    assert page.query_selector("input[name=destination_password]") is None
    assert texts["works"] in page.inner_text("section.new-mail")
    assert page.input_value("input[name=source_login]") == source.login
    shot(page, f"{language}-new-mail-refused-390")
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED

    page.fill("input[name=source_password]", source.password)
    page.get_by_role("button", name=texts["button"]).click()
    page.wait_for_selector(".state.state-queued")
    assert texts["queued"] in page.inner_text(".state")

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, job.error_code
    page.wait_for_selector(".state.state-finished", timeout=15_000)
    page.wait_for_selector(".new-mail-result")
    # The first copy was recorded as having copied nothing: the 5 messages are new this time.
    assert texts["new"] in page.inner_text(".new-mail-result")
    shot(page, f"{language}-new-mail-copied-390")


KEEP_LABELS = {
    "fr": "Conserver mes mots de passe (chiffrés) pendant 7 jours pour pouvoir copier plus tard les nouveaux messages",
    "pt": "Guardar as minhas senhas (cifradas) durante 7 dias para poder copiar mais tarde o correio novo",
}


@pytest.mark.parametrize("language", ["fr", "pt"])
def test_the_synchronize_step_offers_to_keep_the_passwords(
    browser, live_server, make_account, language, settings, empty_copy_queue
):
    from importlib import import_module

    from django.utils import timezone

    settings.IMAPCOPY_DELTA_KEEP_DAYS = 7
    source, destination = make_account("s@example.org"), make_account("d@example.net")
    type(source).objects.filter(pk__in=[source.pk, destination.pk]).update(verified_at=timezone.now())
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session["source_account_id"], session["destination_account_id"] = source.pk, destination.pk
    session.create()
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session.session_key, "url": live_server.url}])
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/{language}/synchronize/")
        box = page.get_by_label(KEEP_LABELS[language])
        assert not box.is_checked(), "unticked unless the customer ticks it"
        label_box = page.locator("label[for=id_keep_credentials]").bounding_box()
        assert label_box["height"] >= 40, label_box
        page.locator("label[for=id_keep_credentials]").click()  # the label ticks it
        assert box.is_checked()
        shot(page, f"{language}-synchronize-keep-passwords-390")
        page.click("button.primary.big")
        page.wait_for_selector(".state")
        job = SyncJob.objects.get()
        assert job.credentials_keep_until is not None and job.keeps_credentials
    finally:
        context.close()
