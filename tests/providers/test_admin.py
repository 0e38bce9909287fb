"""Staff check that a provider's server answers, and hide or show providers."""

import pytest
from django.contrib.auth.models import Group, User

from apps.providers.models import Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    user = User.objects.create_user("operator", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client


def test_check_server_action_reports_tls_and_capabilities(operator_client, imap_trust):
    source_server = imap_trust[0]
    provider = Provider.objects.create(
        name="Local", slug="local", imap_host="localhost", imap_port=source_server.tls_port, security="tls"
    )
    response = operator_client.post(
        "/admin/providers/provider/", {"action": "check_servers", "_selected_action": [provider.pk]}, follow=True
    )
    body = response.content.decode()
    assert f"Local (localhost:{source_server.tls_port})" in body
    assert "IMAP4REV1" in body and "TLS" in body


def test_check_server_action_reports_a_refused_connection(operator_client):
    provider = Provider.objects.create(name="Down", slug="down", imap_host="127.0.0.1", imap_port=1, security="tls")
    response = operator_client.post(
        "/admin/providers/provider/", {"action": "check_servers", "_selected_action": [provider.pk]}, follow=True
    )
    assert "Down (127.0.0.1:1): connection failed" in response.content.decode()


def test_hiding_a_provider_removes_it_from_the_customer_form(operator_client):
    gmail = Provider.objects.get(slug="gmail")
    operator_client.post("/admin/providers/provider/", {"action": "deactivate", "_selected_action": [gmail.pk]})
    gmail.refresh_from_db()
    assert not gmail.is_active
    assert "Gmail" not in operator_client.get("/").content.decode()
