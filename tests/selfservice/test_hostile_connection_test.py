"""The customer's connection test against a hostile IMAP server: an answer within the deadline,
a sentence that says what went wrong (in the customer's language), never a crash."""

import time

import pytest
from django.conf import settings
from django.urls import reverse

from apps.mailboxes.models import MailAccount
from tests.support.hostile_imap import LOGIN, PASSWORD, HostileImapServer, Scenario

pytestmark = pytest.mark.django_db(transaction=True)

# Whether a port is closed, silent, or runs something else than IMAP, the customer reads one
# sentence: the form must not tell a port scanner which.
NOT_IMAP = TOO_LARGE = TIMEOUT = "No IMAP server answered at this address and port."
TOO_MANY_FOLDERS = "This mailbox has more folders than we can copy in one synchronization."

EXPECTED = {
    Scenario.HTTP_GREETING: NOT_IMAP,
    Scenario.SMTP_GREETING: NOT_IMAP,
    Scenario.LOGIN_GIGANTIC_LITERAL: TOO_LARGE,
    Scenario.LOGIN_ENDLESS_LITERAL: TOO_LARGE,
    Scenario.LOGIN_ENDLESS_LINE: TOO_LARGE,
    Scenario.LOGIN_ENDLESS_UNTAGGED: TOO_LARGE,
    Scenario.LIST_20000: TOO_MANY_FOLDERS,
    Scenario.LIST_ENDLESS: TOO_MANY_FOLDERS,
}
# These wait for the deadline (or the socket timeout just below it).
SLOW = {
    Scenario.SILENT_AFTER_GREETING: TIMEOUT,
    Scenario.LOGIN_TRICKLE: TIMEOUT,
    Scenario.LIST_TRICKLE: TIMEOUT,
}


@pytest.fixture(autouse=True)
def plaintext_allowed(settings):
    settings.IMAPCOPY_ALLOW_PLAINTEXT_IMAP = True  # the fake server speaks IMAP without TLS


def hostile_form(server: HostileImapServer) -> dict:
    from apps.providers.models import Provider

    return {
        "provider": Provider.objects.get(slug="other").pk,
        "login": LOGIN,
        "password": PASSWORD,
        "email_address": "hostile@example.org",
        "host": "127.0.0.1",
        "port": str(server.port),
        "security": "none",
    }


def connection_test(client, server: HostileImapServer, path: str | None = None):
    started = time.monotonic()
    # The test runs on the checks queue; the step's page shows its outcome once it is known.
    response = client.post(path or reverse("selfservice:source"), hostile_form(server), follow=True)
    return response, time.monotonic() - started


def assert_closed_soon(server: HostileImapServer) -> None:
    """The probe's connection (and thread) does not outlive the answer to the customer."""
    deadline = time.monotonic() + 3
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.open_connections == 0


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_a_hostile_server_gets_a_clear_answer_at_once(client, scenario):
    with HostileImapServer(scenario) as server:
        response, elapsed = connection_test(client, server)
        assert_closed_soon(server)
    assert response.status_code == 200
    body = response.content.decode()
    assert EXPECTED[scenario] in body
    assert elapsed < 5
    assert PASSWORD not in body
    assert not MailAccount.objects.exists(), "nothing is kept from a failed test"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SLOW))
def test_a_stalling_or_trickling_server_is_answered_within_the_deadline(client, scenario):
    with HostileImapServer(scenario) as server:
        response, elapsed = connection_test(client, server)
        assert_closed_soon(server)
    assert response.status_code == 200
    assert SLOW[scenario] in response.content.decode()
    assert elapsed < settings.CONNECTION_TEST_SECONDS + 1.5


@pytest.mark.parametrize(
    "scenario, sentence",
    [
        (Scenario.LOGIN_ENDLESS_LITERAL, "Aucun serveur IMAP n’a répondu à cette adresse et sur ce port."),
        (Scenario.LIST_20000, "Cette boîte mail contient plus de dossiers que nous ne pouvons en copier"),
        (Scenario.SMTP_GREETING, "Aucun serveur IMAP n’a répondu à cette adresse et sur ce port."),
    ],
)
def test_the_explanation_is_in_the_customers_language(client, scenario, sentence):
    with HostileImapServer(scenario) as server:
        response, elapsed = connection_test(client, server, "/fr/")
    assert response.status_code == 200
    body = response.content.decode()
    assert sentence in body
    assert elapsed < 5
