"""Hiding or showing a provider is in the admin's history, with the staff member who did it."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User

from apps.providers.models import Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = User.objects.create_user("operator-h", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return user


def act(client, action: str, *providers: Provider) -> str:
    return client.post(
        "/admin/providers/provider/",
        {"action": action, "_selected_action": [provider.pk for provider in providers]},
        follow=True,
    ).content.decode()


def test_hiding_and_showing_a_provider_appear_in_its_history_with_the_operator(client, operator):
    gmail = Provider.objects.get(slug="gmail")
    act(client, "deactivate", gmail)
    act(client, "activate", gmail)
    history = client.get(f"/admin/providers/provider/{gmail.pk}/history/").content.decode()
    assert "Hidden from customers" in history
    assert "Shown to customers" in history
    assert "operator-h" in history
    assert LogEntry.objects.filter(user=operator, object_id=str(gmail.pk)).count() == 2


def test_hiding_counts_and_logs_only_the_providers_that_were_shown(client, operator):
    gmail = Provider.objects.get(slug="gmail")
    yahoo = Provider.objects.get(slug="yahoo")
    Provider.objects.filter(pk=yahoo.pk).update(is_active=False)
    body = act(client, "deactivate", gmail, yahoo)
    assert "1 provider hidden." in body
    assert "Hidden from customers" in client.get(f"/admin/providers/provider/{gmail.pk}/history/").content.decode()
    assert not LogEntry.objects.filter(object_id=str(yahoo.pk)).exists()
