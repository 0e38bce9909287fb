"""After a whole copy through the portal, the plaintext passwords are nowhere to be found."""

import logging
import sqlite3
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.management import call_command
from django.test import Client

from apps.sync.models import JobStatus, SyncJob
from tests.conftest import REPO, subprocess_env
from tests.selfservice.conftest import account_form, seed_mailbox
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


# --- OAuth2 accounts (issue 15): the tokens are secrets like the passwords ----------------------


def oauth_signed_in(oauth_portal, provider, mailbox, expires_in: int | None = None):
    """The account a finished "Sign in with …" leaves, and the tokens it was given."""
    from apps.mailboxes.oauth_tokens import OAuthTokens
    from apps.mailboxes.services import account_create_oauth

    answer = oauth_portal.server.issue_tokens(mailbox.address, oauth_portal.client, expires_in=expires_in)
    tokens = OAuthTokens.from_response(answer)
    return account_create_oauth(provider=provider, address=mailbox.address, tokens=tokens), tokens


def tokens_the_server_holds(server, *usernames: str) -> set[str]:
    """Every access and refresh token of these users still in the authorization server's
    database: the renewed ones a run obtained (and never showed the test) among them."""
    marks = ",".join("?" * len(usernames))
    with sqlite3.connect(f"file:{server.dir / 'oauth.sqlite3'}?mode=ro", uri=True) as database:
        rows = database.execute(
            f"SELECT t.token FROM oauth2_provider_accesstoken t JOIN auth_user u ON u.id = t.user_id "  # noqa: S608
            f"WHERE u.username IN ({marks}) UNION "
            f"SELECT t.token FROM oauth2_provider_refreshtoken t JOIN auth_user u ON u.id = t.user_id "
            f"WHERE u.username IN ({marks})",
            [*usernames, *usernames],
        ).fetchall()
    return {token for (token,) in rows}


def database_dump() -> str:
    dumped = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "dumpdata", "--exclude", "django_rq"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert dumped.returncode == 0, dumped.stderr
    return dumped.stdout + dumped.stderr


def admin_pages(admin_client, job, *accounts) -> str:
    pages = [
        "/admin/sync/syncjob/",
        f"/admin/sync/syncjob/{job.pk}/change/",
        "/admin/mailboxes/mailaccount/",
        *(f"/admin/mailboxes/mailaccount/{account.pk}/change/" for account in accounts),
    ]
    bodies = []
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        bodies.append(response.content.decode())
    return "\n".join(bodies)


def emails_in(directory) -> str:
    return "".join(path.read_text(errors="replace") for path in directory.iterdir())


def assert_no_token_in(places: dict[str, str], tokens: set[str]) -> None:
    for place, text in places.items():
        # Counted, not compared one by one: a failure must not print the token it found.
        leaked = sum(token in text for token in tokens)
        assert leaked == 0, f"{leaked} token(s) leaked into the {place}"


@pytest.fixture
def oauth_job_environment(monkeypatch, tmp_path):
    """The worker's report emails go to files; it logs everything it would log in production and more."""
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(tmp_path))
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    return tmp_path


def test_oauth_tokens_first_and_renewed_leave_no_trace_after_a_copy_by_a_worker(
    oauth_portal, oauth_mailbox, oauth_dovecot, run_worker, redis_connection, admin_client, oauth_job_environment,
    caplog,
):  # fmt: skip
    from apps.mailboxes.models import MailAccount
    from apps.mailboxes.oauth_tokens import tokens_from_secret
    from apps.sync.services import job_create

    source_box, destination_box = oauth_mailbox("leak-source"), oauth_mailbox("leak-destination")
    seed_mailbox(oauth_dovecot, source_box.user, separator="/")
    # Access tokens that expire at once: the run must renew both, so renewed tokens exist too.
    source, source_tokens = oauth_signed_in(oauth_portal, oauth_portal.google, source_box, expires_in=1)
    destination, destination_tokens = oauth_signed_in(
        oauth_portal, oauth_portal.microsoft, destination_box, expires_in=1
    )
    first_tokens = {
        source_tokens.access_token, source_tokens.refresh_token,
        destination_tokens.access_token, destination_tokens.refresh_token,
    }  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        job = job_create(source=source, destination=destination)
        # While the job needs them, the tokens are there, encrypted only.
        for account, tokens in ((source, source_tokens), (destination, destination_tokens)):
            stored = MailAccount.objects.get(pk=account.pk)
            assert tokens_from_secret(stored.decrypt_password()) == tokens
        queued = {
            "database dump while queued": database_dump(),
            "redis while queued": redis_contents(redis_connection).decode(errors="replace"),
            "admin pages while queued": admin_pages(admin_client, job, source, destination),
        }
        time.sleep(1.2)
        worker = run_worker()
        job.refresh_from_db()
        assert (job.status, job.messages_copied) == (JobStatus.FINISHED, 5), (job.error_code, job.error_detail)
        ended = {
            "database dump after the copy": database_dump(),
            "worker output": worker.stdout + worker.stderr,
            "redis after the copy": redis_contents(redis_connection).decode(errors="replace"),
            "report email": emails_in(oauth_job_environment),
            "admin pages after the copy": admin_pages(admin_client, job, source, destination),
        }
    assert ended["report email"], "the report was sent"
    held = tokens_the_server_holds(oauth_portal.server, source_box.address, destination_box.address)
    every_token = first_tokens | held
    assert len(every_token - first_tokens) >= 4, "the premise: the run renewed both sides' tokens"
    assert_no_token_in({**queued, **ended, "web logs": caplog.text}, every_token)
    # Erased with the job, like passwords.
    for account in (source, destination):
        account.refresh_from_db()
        assert account.password_ciphertext == ""
        assert account.password_erased_at is not None


def test_a_job_failed_on_a_revoked_consent_reports_it_without_any_token(
    oauth_portal, oauth_mailbox, oauth_dovecot, run_worker, redis_connection, admin_client, oauth_job_environment,
    caplog,
):  # fmt: skip
    from apps.mailboxes.models import MailAccount
    from apps.mailboxes.oauth_tokens import tokens_from_secret
    from apps.sync.engine import ErrorCode
    from apps.sync.services import job_create, job_erase_credentials

    source_box, destination_box = oauth_mailbox("revoked-source"), oauth_mailbox("revoked-destination")
    seed_mailbox(oauth_dovecot, source_box.user, separator="/")
    source, source_tokens = oauth_signed_in(oauth_portal, oauth_portal.google, source_box, expires_in=1)
    destination, destination_tokens = oauth_signed_in(oauth_portal, oauth_portal.microsoft, destination_box)
    tokens = {
        source_tokens.access_token, source_tokens.refresh_token,
        destination_tokens.access_token, destination_tokens.refresh_token,
    }  # fmt: skip
    oauth_portal.server.revoke_consent(source_box.address)  # "Remove access" at Google
    with caplog.at_level(logging.DEBUG):
        job = job_create(source=source, destination=destination)
        time.sleep(1.2)
        worker = run_worker()
        job.refresh_from_db()
        assert (job.status, job.error_code, job.error_side) == (
            JobStatus.FAILED, ErrorCode.OAUTH_CONSENT_REVOKED, "source",
        )  # fmt: skip
        places = {
            "worker output": worker.stdout + worker.stderr,
            "failure report email": emails_in(oauth_job_environment),
            "admin pages of the failed job": admin_pages(admin_client, job, source, destination),
            "database dump": database_dump(),
            "redis": redis_contents(redis_connection).decode(errors="replace"),
        }
    assert places["failure report email"], "the failure was reported"
    assert "invalid_grant" in places["admin pages of the failed job"], "staff see why it failed"
    tokens |= tokens_the_server_holds(oauth_portal.server, source_box.address, destination_box.address)
    assert_no_token_in({**places, "web logs": caplog.text}, tokens)
    # Like a failed job's passwords, its tokens stay (encrypted) for a retry until they are erased.
    assert tokens_from_secret(MailAccount.objects.get(pk=destination.pk).decrypt_password()) == destination_tokens
    job_erase_credentials(job=job)
    for account in (source, destination):
        account.refresh_from_db()
        assert account.password_ciphertext == ""
