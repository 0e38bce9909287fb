"""Sign in with Google or Microsoft on the source and destination steps (issue 15), through
Django's test client against the tests' real authorization server (django-oauth-toolkit) and a
Dovecot that checks each bearer token there: which steps offer it, the account it gives, the
connection test on a real checks worker, and each way a sign-in can go wrong.

Transactional tests: the connection test is queued when the request's transaction commits."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import translation

from apps.mailboxes import oauth
from apps.mailboxes.models import MailAccount
from apps.mailboxes.oauth_tokens import tokens_from_secret
from apps.providers.models import Provider
from apps.selfservice.oauth_views import FLOW_KEY
from tests.selfservice.conftest import seed_mailbox

CONNECTED = "The connection to your account was established."
STILL_TESTING = '<meta http-equiv="refresh"'
DENIED = {
    "en": "You did not allow our service to access this mailbox, so it cannot be copied.",
    "fr": "Vous n’avez pas autorisé notre service à accéder à cette boîte mail : elle ne peut donc pas être copiée.",
}
EXPIRED = "This sign-in took too long or was already used. Please sign in again."
SAME_MAILBOX = "This is the source mailbox itself: choose another mailbox as the destination of the copy."


def service(**overrides) -> dict:
    """A service's settings, as the environment would give them (never contacted here)."""
    return {
        "client_id": "portal-client",
        "client_secret": "portal-secret",
        "authorize_url": "https://accounts.example.test/authorize",
        "token_url": "https://accounts.example.test/token",
        "jwks_url": "https://accounts.example.test/jwks",
        "issuer": "https://accounts.example.test",
        "scopes": "openid email",
        **overrides,
    }


def sign_in_buttons(client) -> dict[str, str]:
    """The step's "Sign in with …" buttons: {provider id: label}."""
    body = client.get("/").content.decode()
    section = re.search(r'<section class="sign-in".*?</section>', body, re.S)
    if section is None:
        return {}
    return dict(re.findall(r'<button type="submit" name="provider" value="(\d+)"[^>]*>([^<]+)</button>', section[0]))


def form_action(client) -> set[str]:
    policy = client.get("/")["Content-Security-Policy"]
    (directive,) = [part.split()[1:] for part in policy.split(";") if part.split()[0] == "form-action"]
    return set(directive)


@pytest.mark.django_db  # the presets as the migrations left them (Gmail: Google, Outlook: Microsoft)
def test_sign_in_is_offered_only_for_the_services_that_are_configured(client, settings):
    gmail, outlook = Provider.objects.get(slug="gmail"), Provider.objects.get(slug="outlook")
    settings.IMAPCOPY_OAUTH = {
        "google": service(),
        "microsoft": service(authorize_url="https://login.example.test/common/oauth2/v2.0/authorize"),
    }
    assert sign_in_buttons(client) == {str(gmail.pk): "Sign in with Google", str(outlook.pk): "Sign in with Microsoft"}
    # The button's form is redirected to the provider: the browser must be allowed to follow.
    assert form_action(client) == {"'self'", "https://accounts.example.test", "https://login.example.test"}

    # An operator who set no client secret for Microsoft: Outlook customers type a password.
    settings.IMAPCOPY_OAUTH = {"google": service(), "microsoft": service(client_secret="")}
    assert sign_in_buttons(client) == {str(gmail.pk): "Sign in with Google"}

    settings.IMAPCOPY_OAUTH = {"google": service(client_id=""), "microsoft": service(client_secret="")}
    page = client.get("/").content.decode()
    assert 'class="sign-in"' not in page and "Sign in with" not in page
    assert 'name="password"' in page, "passwords only, as before"
    assert form_action(client) == {"'self'"}
    # Nor can a hand-made request start a sign-in for a service that is off.
    response = client.post(reverse("selfservice:oauth-start", args=["source"]), {"provider": outlook.pk}, follow=True)
    assert "The sign-in did not succeed. Please try again." in response.content.decode()
    assert FLOW_KEY not in client.session


# --- The real authorization server ----------------------------------------------------------


def start_sign_in(client, role: str, provider, language: str = "en") -> str:
    """Press "Sign in with …": the portal answers with the provider's authorization URL."""
    with translation.override(language):
        url = reverse("selfservice:oauth-start", args=[role])
    response = client.post(url, {"provider": provider.pk})
    assert response.status_code == 302, response.content
    return response.url


def callback_path(location: str) -> str:
    """The provider sends the browser to SITE_URL/oauth/callback/?…: the same path on the test client."""
    parts = urlsplit(location)
    assert parts.path == "/oauth/callback/", location
    return f"{parts.path}?{parts.query}"


def sign_in(client, portal, mailbox, role: str, provider, *, language: str = "en", allow: bool = True):
    """Press the button, sign in and answer the consent page at the provider, come back."""
    authorize_url = start_sign_in(client, role, provider, language)
    location = portal.server.consent(authorize_url, mailbox.address, mailbox.password, allow=allow)
    return client.get(callback_path(location))


def secrets_of(account: MailAccount) -> list[str]:
    tokens = tokens_from_secret(MailAccount.objects.get(pk=account.pk).decrypt_password())
    assert tokens.access_token and tokens.refresh_token
    return [tokens.access_token, tokens.refresh_token]


def assert_no_token_in_session_or_cookies(client, tokens: list[str]) -> None:
    session = Session.objects.get(session_key=client.session.session_key)
    stored = json.dumps(session.get_decoded()) + session.session_data
    cookies = " ".join(f"{morsel.key}={morsel.value}" for morsel in client.cookies.values())
    for token in tokens:
        assert token not in stored, "a token in the session"
        assert token not in cookies, "a token in a cookie"
    assert FLOW_KEY not in session.get_decoded(), "the finished sign-in leaves nothing behind"


@pytest.fixture
def checks_on_a_real_worker(settings):
    """Connection tests queued, as in production, for a real checks worker to run."""
    import django_rq

    settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = True
    yield
    settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = False
    django_rq.get_queue(settings.CHECK_QUEUE).empty()


@pytest.mark.django_db(transaction=True)
def test_signing_in_both_sides_creates_the_accounts_from_the_id_token_and_tests_them(
    client, oauth_portal, oauth_mailbox, oauth_dovecot, checks_on_a_real_worker, run_worker
):
    source_box, destination_box = oauth_mailbox("source"), oauth_mailbox("destination")
    found = seed_mailbox(oauth_dovecot, source_box.user, separator="/")

    response = sign_in(client, oauth_portal, source_box, "source", oauth_portal.google)
    assert response.status_code == 302 and response.url == reverse("selfservice:source")
    source = MailAccount.objects.get()
    # Nobody typed the address: the ID token named it, and it is the IMAP login too.
    assert (source.email_address, source.login) == (source_box.address, source_box.address)
    assert source.oauth_service == "google" and source.provider == oauth_portal.google
    assert (source.host, source.port) == ("127.0.0.1", oauth_dovecot.port)
    assert STILL_TESTING in client.get("/").content.decode(), "tested on the checks queue, like a password"

    worker = run_worker(settings.CHECK_QUEUE)
    assert worker.returncode == 0, worker.stderr
    page = client.get("/")
    body = page.content.decode()
    assert CONNECTED in body and source_box.address in body
    assert page.context["account"].found_messages == found
    source_tokens = secrets_of(source)
    assert_no_token_in_session_or_cookies(client, source_tokens)

    response = sign_in(client, oauth_portal, destination_box, "destination", oauth_portal.microsoft)
    assert response.url == reverse("selfservice:destination")
    destination = MailAccount.objects.exclude(pk=source.pk).get()
    assert (destination.email_address, destination.login) == (destination_box.address, destination_box.address)
    assert destination.oauth_service == "microsoft"
    worker = run_worker(settings.CHECK_QUEUE)
    assert worker.returncode == 0, worker.stderr
    body = client.get(reverse("selfservice:destination")).content.decode()
    assert CONNECTED in body and destination_box.address in body

    ready = client.get(reverse("selfservice:synchronize"))
    assert ready.status_code == 200
    assert (ready.context["source"].pk, ready.context["destination"].pk) == (source.pk, destination.pk)
    # The ID token proved the destination's address: the report needs no confirmation link.
    assert ready.context["report_address"] == destination_box.address and ready.context["report_proven"]
    assert_no_token_in_session_or_cookies(client, source_tokens + secrets_of(destination))
    for secret in source_tokens + secrets_of(destination):
        assert secret not in worker.stdout + worker.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["en", "fr"])
def test_denied_consent_says_so_in_the_customers_language(client, oauth_portal, oauth_mailbox, language):
    mailbox = oauth_mailbox("refuser")
    response = sign_in(client, oauth_portal, mailbox, "source", oauth_portal.google, language=language, allow=False)
    with translation.override(language):
        assert response.url == reverse("selfservice:source")
    page = client.get(response.url)
    assert DENIED[language] in page.content.decode()
    assert not MailAccount.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_callback_used_twice_is_refused_the_second_time(client, oauth_portal, oauth_mailbox):
    mailbox = oauth_mailbox("replay")
    location = oauth_portal.server.consent(
        start_sign_in(client, "source", oauth_portal.google), mailbox.address, mailbox.password
    )
    first = client.get(callback_path(location), follow=True)
    assert CONNECTED in first.content.decode()
    (account,) = MailAccount.objects.all()

    second = client.get(callback_path(location), follow=True)
    assert EXPIRED in second.content.decode()
    assert list(MailAccount.objects.all()) == [account], "the replay made no account"
    # Nor did it undo the account the first visit made.
    assert client.get("/").context["account"] == account


@pytest.mark.django_db(transaction=True)
def test_a_sign_in_left_open_too_long_must_start_again(client, oauth_portal, oauth_mailbox):
    mailbox = oauth_mailbox("slow")
    location = oauth_portal.server.consent(
        start_sign_in(client, "source", oauth_portal.google), mailbox.address, mailbox.password
    )
    session = client.session
    session[FLOW_KEY] = {**session[FLOW_KEY], "started": session[FLOW_KEY]["started"] - oauth.FLOW_SECONDS - 60}
    session.save()
    response = client.get(callback_path(location), follow=True)
    assert EXPIRED in response.content.decode()
    assert not MailAccount.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_callback_for_another_sign_in_is_refused_and_its_code_never_used(client, oauth_portal, oauth_mailbox):
    mailbox = oauth_mailbox("forged")
    location = oauth_portal.server.consent(
        start_sign_in(client, "source", oauth_portal.google), mailbox.address, mailbox.password
    )
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query))
    forged = urlunsplit(parts._replace(query=urlencode({**query, "state": "someone-elses-state"})))
    response = client.get(callback_path(forged), follow=True)
    assert EXPIRED in response.content.decode()
    assert not MailAccount.objects.exists()
    assert FLOW_KEY not in client.session, "a sign-in is tried once, whatever came back"


@pytest.mark.django_db(transaction=True)
def test_a_tenant_that_forbids_user_consent_gets_the_admin_consent_link(client, oauth_portal, oauth_mailbox):
    mailbox = oauth_mailbox("employee")
    oauth_portal.server.require_admin_consent(mailbox.address)
    response = sign_in(client, oauth_portal, mailbox, "source", oauth_portal.microsoft)
    assert response.status_code == 403
    body = response.content.decode()
    assert "Your organization&#x27;s approval is needed" in body or "Your organization's approval is needed" in body
    link = response.context["admin_consent_url"]
    assert link.startswith(f"{oauth_portal.server.url}/adminconsent?")
    assert dict(parse_qsl(urlsplit(link).query))["client_id"] == oauth_portal.client.client_id
    assert f'href="{link.replace("&", "&amp;")}"' in body, "the link is on the page, to send to the administrator"
    assert not MailAccount.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_destination_cannot_be_the_source_mailbox_signed_in_again(client, oauth_portal, oauth_mailbox):
    mailbox = oauth_mailbox("same")
    assert (
        CONNECTED
        in client.get(sign_in(client, oauth_portal, mailbox, "source", oauth_portal.google).url).content.decode()
    )
    # The same mailbox through the other service's button is still the same mailbox.
    response = sign_in(client, oauth_portal, mailbox, "destination", oauth_portal.microsoft)
    assert response.url == reverse("selfservice:destination")
    page = client.get(response.url).content.decode()
    assert SAME_MAILBOX in page
    assert CONNECTED not in page
    assert MailAccount.objects.count() == 1, "nothing kept of the refused one"
