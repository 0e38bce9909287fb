"""Sign in with Google and Microsoft (issue 15) in a real Chromium, in French and Portuguese: the
customer signs in and consents on the tests' authorization server's own pages (django-oauth-toolkit
under gunicorn), sees each connected address, synchronizes; a real worker copies from and into the
OAuth Dovecot with the tokens, and the report is emailed to the address the ID token proved.

The sign-in buttons' words are this work's translated text ("Se connecter avec Google", …): they
pass once the catalogs carry it."""

from __future__ import annotations

import email
from email import policy

import pytest

from apps.mailboxes.models import MailAccount
from apps.sync.models import JobStatus, SyncJob
from tests.selfservice.conftest import seed_mailbox
from tests.selfservice.test_browser import shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


TEXTS = {
    "fr": {
        "google": "Se connecter avec Google",
        "microsoft": "Se connecter avec Microsoft",
        "connected": "La connexion à votre compte a été établie.",
        "synchronize": "Synchroniser",
        "finished": "Terminée",
        "report": "Votre copie de boîte mail est terminée",
    },
    "pt": {
        "google": "Iniciar sessão com Google",
        "microsoft": "Iniciar sessão com Microsoft",
        "connected": "A conexão com a sua conta foi estabelecida.",
        "synchronize": "Sincronizar",
        "finished": "Concluída",
        "report": "A cópia da sua caixa de correio foi concluída",
    },
}


@pytest.fixture
def portal(live_server, settings, request):
    """The OAuth set-up, with the live server's address as SITE_URL: the redirect URI the portal
    sends and the one registered at the authorization server are both built from it."""
    settings.SITE_URL = live_server.url
    return request.getfixturevalue("oauth_portal")


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """The worker is another process: it writes its emails to files the test reads back."""
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))

    def sent() -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(tmp_path.iterdir())
        ]

    return sent


def sign_in_at_the_provider(page, portal, mailbox, button_text: str, provider) -> None:
    """On the step: press "Sign in with …", then do at the provider what the customer does."""
    button = page.locator(f"section.sign-in button[name=provider][value='{provider.pk}']")
    assert button.inner_text().strip() == button_text
    button.click()
    page.wait_for_url(f"{portal.server.url}/**")
    page.fill("input[name=username]", mailbox.address)
    page.fill("input[name=password]", mailbox.password)
    page.click("button[type=submit]")
    page.wait_for_selector("#authorizationForm")
    page.click("input[name=allow]")


def connected_address(page, texts) -> str:
    page.wait_for_selector("section.success")
    section = page.inner_text("section.success")
    assert texts["connected"] in section
    return section


@pytest.mark.parametrize("language", ["fr", "pt"])
def test_sign_in_with_google_and_microsoft_then_copy_in_the_browser(
    page, live_server, portal, oauth_mailbox, oauth_dovecot, run_worker, reports, language
):
    texts = TEXTS[language]
    source_box, destination_box = oauth_mailbox("source"), oauth_mailbox("destination")
    found = seed_mailbox(oauth_dovecot, source_box.user, separator="/")

    page.goto(f"{live_server.url}/{language}/")
    shot(page, f"{language}-oauth-1-source-sign-in")
    sign_in_at_the_provider(page, portal, source_box, texts["google"], portal.google)
    assert source_box.address in connected_address(page, texts)
    assert page.url == f"{live_server.url}/{language}/", "back on the source step, in the customer's language"
    shot(page, f"{language}-oauth-2-source-connected")
    page.click("section.success a.button.primary")

    # Another person's mailbox: the provider forgets who signed in before (Microsoft would offer
    # its account picker, prompt=select_account).
    page.context.clear_cookies(domain="127.0.0.1")
    sign_in_at_the_provider(page, portal, destination_box, texts["microsoft"], portal.microsoft)
    assert destination_box.address in connected_address(page, texts)
    shot(page, f"{language}-oauth-3-destination-connected")
    page.click("section.success a.button.primary")

    main = page.inner_text("main")
    assert source_box.address in main and destination_box.address in main
    page.get_by_role("button", name=texts["synchronize"]).click()
    page.wait_for_selector(".state")
    job = SyncJob.objects.get()
    assert job.language == language
    assert job.source.oauth_service == "google" and job.destination.oauth_service == "microsoft"
    assert job.report_address == destination_box.address and job.report_address_proven, "proven by the ID token"

    worker = run_worker()
    assert worker.returncode == 0, worker.stderr
    job.refresh_from_db()
    assert job.status == JobStatus.FINISHED, (job.error_code, job.error_detail)
    assert job.messages_copied == found
    page.wait_for_selector(".state.state-finished", timeout=15_000)
    assert texts["finished"] in page.inner_text(".state")
    shot(page, f"{language}-oauth-4-finished")

    (report,) = reports()
    assert report["To"] == destination_box.address
    assert report["Subject"] == texts["report"]
    # The tokens went with the job, as passwords do.
    assert not any(account.has_password for account in MailAccount.objects.all())
