"""Staff check that a provider's server answers, and hide or show providers."""

import pytest
from django.contrib.auth.models import Group, User

from apps.providers.models import Provider
from tests.support.hostile_imap import HostileImapServer, Scenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    user = User.objects.create_user("operator", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client


def check(client, provider):
    return client.post(
        "/admin/providers/provider/", {"action": "check_servers", "_selected_action": [provider.pk]}, follow=True
    ).content.decode()


def test_check_server_action_reports_tls_and_the_extensions_the_copy_uses(operator_client, imap_trust):
    source_server = imap_trust[0]
    provider = Provider.objects.create(
        name="Local", slug="local", imap_host="localhost", imap_port=source_server.tls_port, security="tls"
    )
    body = check(operator_client, provider)
    assert f"Local (localhost:{source_server.tls_port}): Reachable; TLS ok (TLSv1." in body
    assert "IMAP greeting ok" in body and "AUTH=PLAIN" in body
    # The server's own words stay out: its greeting, and capabilities the copy does not use.
    assert "Dovecot" not in body and "LOGIN-REFERRALS" not in body and "SASL-IR" not in body


def test_check_server_action_reports_a_refused_connection(operator_client):
    provider = Provider.objects.create(name="Down", slug="down", imap_host="127.0.0.1", imap_port=1, security="tls")
    assert "Down (127.0.0.1:1): Not reachable: the connection was refused." in check(operator_client, provider)


def test_check_server_shows_no_banner_of_a_server_that_is_not_imap(operator_client):
    with HostileImapServer(Scenario.SMTP_GREETING) as server:
        provider = Provider.objects.create(
            name="Smtp", slug="smtp", imap_host="127.0.0.1", imap_port=server.port, security="none"
        )
        body = check(operator_client, provider)
    assert "does not greet like an IMAP server" in body
    assert "Postfix" not in body and "ESMTP" not in body and "mail.example.org" not in body


def test_check_server_refuses_a_host_in_a_private_network_without_connecting(operator_client, settings):
    settings.IMAPCOPY_ALLOWED_PRIVATE_NETWORKS = []
    with HostileImapServer(Scenario.WELL_BEHAVED) as server:
        provider = Provider.objects.create(
            name="Inside", slug="inside", imap_host="localhost", imap_port=server.port, security="none"
        )
        body = check(operator_client, provider)
        assert server.connections == 0
    assert "Not allowed: the server name points to a private or reserved address." in body
    assert "hostile IMAP server ready" not in body


def test_support_may_not_check_servers(client):
    user = User.objects.create_user("support", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    client.force_login(user)
    with HostileImapServer(Scenario.WELL_BEHAVED) as server:
        provider = Provider.objects.create(
            name="Local", slug="local", imap_host="127.0.0.1", imap_port=server.port, security="none"
        )
        page = client.get("/admin/providers/provider/")
        assert page.status_code == 200 and provider.name in page.content.decode()
        assert 'value="check_servers"' not in page.content.decode()
        body = check(client, provider)
        assert server.connections == 0
    assert "Reachable" not in body


def test_operators_are_offered_the_server_check(operator_client):
    assert 'value="check_servers"' in operator_client.get("/admin/providers/provider/").content.decode()


def test_hiding_a_provider_removes_it_from_the_customer_form(operator_client):
    gmail = Provider.objects.get(slug="gmail")
    operator_client.post("/admin/providers/provider/", {"action": "deactivate", "_selected_action": [gmail.pk]})
    gmail.refresh_from_db()
    assert not gmail.is_active
    assert "Gmail" not in operator_client.get("/").content.decode()
