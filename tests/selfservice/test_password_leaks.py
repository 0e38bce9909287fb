"""After a whole copy through the portal, the plaintext passwords are nowhere to be found."""

import logging
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.management import call_command
from django.test import Client

from apps.sync.models import JobStatus, SyncJob
from tests.selfservice.conftest import account_form
from tests.support.report_address import confirm_by_link

pytestmark = pytest.mark.django_db(transaction=True)


def redis_contents(connection) -> bytes:
    chunks = []
    for key in connection.scan_iter():
        kind = connection.type(key)
        chunks.append(key)
        if kind == b"string":
            chunks.append(connection.get(key) or b"")
        elif kind == b"hash":
            chunks.extend(b"%s=%s" % item for item in connection.hgetall(key).items())
        elif kind == b"list":
            chunks.extend(connection.lrange(key, 0, -1))
        elif kind in (b"set", b"zset"):
            chunks.extend(connection.zrange(key, 0, -1) if kind == b"zset" else connection.smembers(key))
    return b"\n".join(chunks)


def test_passwords_leave_no_trace_after_a_copy_through_the_portal(
    client, source_user, destination_user, run_worker, redis_connection, monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    (source_server, source), (destination_server, destination) = source_user, destination_user
    passwords = [source.password, destination.password]
    with caplog.at_level(logging.DEBUG):
        client.post("/", account_form(source_server, source))
        client.post("/destination/", account_form(destination_server, destination))
        client.post("/synchronize/")
        confirm_by_link(client, mail.outbox)  # the destination address was typed: its owner confirms it
        queued_redis = redis_contents(redis_connection)
        sessions = b"".join(str(s.get_decoded()).encode() + s.session_data.encode() for s in Session.objects.all())
        worker = run_worker()
    job = SyncJob.objects.get()
    assert job.status == JobStatus.FINISHED

    dump = StringIO()
    call_command("dumpdata", exclude=["django_rq"], stdout=dump)
    places = {
        "database dump": dump.getvalue(),
        "web logs": caplog.text,
        "worker output": worker.stdout + worker.stderr,
        "emails": "".join(path.read_text(errors="replace") for path in tmp_path.iterdir())
        + "".join(message.message().as_string() for message in mail.outbox),
        "redis while queued": queued_redis.decode(errors="replace"),
        "redis after the copy": redis_contents(redis_connection).decode(errors="replace"),
        "sessions": sessions.decode(errors="replace"),
    }
    assert places["emails"], "the report was sent"
    for place, text in places.items():
        for password in passwords:
            assert password not in text, f"a password leaked into the {place}"


def test_an_error_report_does_not_show_the_posted_password(source_user, settings, monkeypatch):
    """In production an unexpected error mails a report with the request and the local
    variables of every frame to ADMINS: the password must be masked there too."""
    from django.core import mail

    server, user = source_user
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def explode(*, account):
        raise RuntimeError("connection test exploded")

    monkeypatch.setattr("apps.selfservice.views.account_request_check", explode)
    browser = Client(raise_request_exception=False)
    response = browser.post("/", account_form(server, user))
    assert response.status_code == 500
    assert user.password not in response.content.decode()
    (report,) = mail.outbox
    assert "connection test exploded" in report.body
    assert "_account_step" in report.body, "the report shows the frames"
    assert user.password not in report.body
    assert all(user.password not in content for content, _type in report.alternatives)
