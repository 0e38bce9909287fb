"""The queue dashboard (django-rq) is the operators': support staff neither see nor touch the
queues, and every change an operator makes there is in the admin's history."""

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.urls import reverse

pytestmark = pytest.mark.django_db


def staff(group_name: str) -> User:
    user = User.objects.create_user(f"{group_name}-member", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


def checks_queue(connection):
    """The checks queue, written to Redis at once (django-rq's own queue waits for the test's
    transaction to commit, which never comes)."""
    from rq import Queue

    return Queue(settings.CHECK_QUEUE, connection=connection)


def queue_index(name: str) -> int:
    from django_rq.settings import get_queues_map

    return get_queues_map()[name]


def test_support_staff_can_neither_see_nor_empty_the_queues(client, redis_connection):
    queue = checks_queue(redis_connection)
    queue.enqueue("builtins.print", "a connection test waiting")
    assert queue.count == 1
    client.force_login(staff("support"))
    index = queue_index(settings.CHECK_QUEUE)
    urls = [
        reverse("admin:django_rq_home"),
        reverse("admin:django_rq_jobs", args=[index]),
        reverse("admin:django_rq_home_json"),
    ]
    for url in urls:
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("admin:django_rq_clear", args=[index])).status_code == 403
    assert queue.count == 1
    assert "django-rq" not in client.get(reverse("admin:sync_operations")).content.decode()


def test_operators_empty_a_queue_and_it_is_in_the_admin_history(client, redis_connection):
    queue = checks_queue(redis_connection)
    queue.enqueue("builtins.print", "a connection test waiting")
    operator = staff("operators")
    client.force_login(operator)
    index = queue_index(settings.CHECK_QUEUE)
    assert client.get(reverse("admin:django_rq_home")).status_code == 200
    response = client.post(reverse("admin:django_rq_clear", args=[index]))
    assert response.status_code == 302
    assert queue.count == 0
    entry = LogEntry.objects.get(user=operator)
    assert "clear" in entry.change_message and settings.CHECK_QUEUE in entry.object_repr
