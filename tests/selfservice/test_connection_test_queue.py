"""Connection tests run on the checks queue, never in a web worker (issue 12, finding 6): a silent
server cannot stall the portal, one client cannot fill the queue, and the form is no port scanner."""

from __future__ import annotations

import datetime
import http.client
import re
import socket
import threading
import time
import urllib.parse

import django_rq
import pytest
from django.utils import timezone

from apps.mailboxes.models import MailAccount
from apps.mailboxes.services import account_create, client_key
from apps.providers.models import Provider
from apps.sync.models import JobStatus, SyncJob
from tests.selfservice.conftest import account_form

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE = "No IMAP server answered at this address and port."
STILL_TESTING = '<meta http-equiv="refresh"'  # the waiting page, and only it, reloads itself
TOO_MANY_CHECKS = "Your previous connection tests have not finished yet."
CONNECTED = "The connection to your account was established."


class SilentServer:
    """Accepts TCP connections and never says a word: a filtered port, or a server that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _peer = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def open_connections(self) -> int:
        alive = 0
        for connection in self.connections:
            try:
                connection.setblocking(False)
                alive += connection.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


class Browser:
    """A customer's browser over plain HTTP: its own cookies, CSRF token taken from each form."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict | None = None) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            headers.update({"Content-Type": "application/x-www-form-urlencoded", "Referer": self.url(path)})
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        text = response.read().decode()
        connection.close()
        return response.status, response.getheader("Location") or "", text

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def submit_account(self, fields: dict) -> tuple[int, str, str]:
        _status, _location, form = self.request("GET", "/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        other = re.search(r'<option value="(\d+)"[^>]*data-editable="1"[^>]*>Other', form).group(1)
        return self.request("POST", "/", {**fields, "provider": other, "csrfmiddlewaretoken": token})

    def wait_for_result(self, path: str = "/", *, attempts: int = 120) -> str:
        """Reload the step as its waiting page does (meta refresh) until the test has an answer."""
        for _ in range(attempts):
            _status, _location, body = self.request("GET", path)
            if STILL_TESTING not in body:
                return body
            time.sleep(0.5)
        raise AssertionError("the connection test never got an answer")


@pytest.fixture
def portal_stack(tmp_path, imap_trust):
    """The production stack: gunicorn with ONE sync worker (so a held worker would block every
    other request), a checks worker, a private Redis, SQLite; Dovecot as the customers' server."""
    from bench import portal_harness as harness
    from tests.support.stack import gunicorn_portal

    with gunicorn_portal(
        tmp_path,
        web_workers=1,
        IMAPCOPY_ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8",
        IMAPCOPY_IMAP_PORTS="any",
        IMAPCOPY_ALLOW_PLAINTEXT_IMAP="true",
        IMAPCOPY_CA_FILE=str(imap_trust[2]),
        CONNECTION_TEST_SECONDS="8",
    ) as stack:
        code = "from django.conf import settings as s; print(s.CHECK_QUEUE)"
        queue = harness.manage(stack.env, "shell", "-v0", "-c", code).stdout.strip()
        stack.processes.start(
            "checks-worker", [harness.PYTHON, "manage.py", "rqworker", queue], stack.env, tmp_path / "checks.log"
        )
        yield stack.port


def silent_form(server: SilentServer) -> dict:
    return {
        "login": "someone@example.org",
        "password": "whatever-it-is",
        "host": "127.0.0.1",
        "port": str(server.port),
        "security": "none",
    }


@pytest.mark.slow
def test_a_silent_server_holds_no_web_worker_and_the_page_waits_for_the_answer(portal_stack):
    port = portal_stack
    first, second, bystander = Browser(port), Browser(port), Browser(port)
    with SilentServer() as silent:
        status, location, _page = first.submit_account(silent_form(silent))
        assert (status, location) == (302, "/"), "the form answers at once and sends to the waiting page"
        status, _location, _page = second.submit_account(silent_form(silent))
        assert status == 302

        # The only web worker is free while the tests wait on the silent server: once a checks
        # worker holds a connection to it, another customer's pages answer, and that connection
        # is still open when they have.
        for _ in range(200):
            if silent.connections:
                break
            time.sleep(0.05)
        assert silent.connections, "a checks worker took the test"
        status, _location, _body = bystander.request("GET", "/status/")
        assert status == 200
        _status, _location, waiting = first.request("GET", "/")
        assert STILL_TESTING in waiting
        assert "Testing the connection to your account…" in waiting
        assert silent.open_connections() >= 1, "the answer came before the test ended"

        # A third test from the same client (another tab, fresh cookies) while two are in flight
        # is refused, with a reason.
        status, _location, body = Browser(port).submit_account(silent_form(silent))
        assert status == 429
        assert TOO_MANY_CHECKS in body

        result = first.wait_for_result()
    assert UNREACHABLE in result
    assert "whatever-it-is" not in result


@pytest.mark.slow
def test_a_real_account_is_verified_through_the_queue(portal_stack, source_user):
    server, user = source_user
    customer = Browser(portal_stack)
    fields = {k: v for k, v in account_form(server, user).items() if k != "provider"}
    status, location, _page = customer.submit_account(fields)
    assert (status, location) == (302, "/")
    result = customer.wait_for_result()
    assert CONNECTED in result
    assert "Messages" in result and ">5<" in result.replace(" ", "")


def test_ports_other_than_imap_ports_are_refused_before_any_connection(client, settings):
    settings.IMAPCOPY_IMAP_PORTS = [143, 993]
    other = Provider.objects.get(slug="other")
    for port in ("22", "25", "6379"):
        response = client.post(
            "/",
            {
                "provider": other.pk,
                "login": "bob@example.org",
                "password": "secret",
                "host": "imap.example.org",
                "port": port,
                "security": "tls",
            },
        )
        assert response.status_code == 200
        assert "Only these ports can be used for an IMAP server: 143, 993." in response.content.decode()
    assert not MailAccount.objects.exists(), "no test was even queued"


def test_a_client_with_tests_in_flight_must_wait_for_them(client, source_user, settings):
    server, user = source_user
    mine = client_key("127.0.0.1")  # Django's test client is REMOTE_ADDR 127.0.0.1
    for number in range(settings.IMAPCOPY_CONNECTION_TESTS_PER_CLIENT):
        account = account_create(
            provider=Provider.objects.get(slug="other"), email_address=f"x{number}@example.org",
            login=f"x{number}", host="127.0.0.1", port=993, security="tls", password="p", created_from=mine,
        )  # fmt: skip
        MailAccount.objects.filter(pk=account.pk).update(check_requested_at=timezone.now())
    response = client.post("/", account_form(server, user))
    assert response.status_code == 429
    assert TOO_MANY_CHECKS in response.content.decode()

    # Another client is not held up by this one.
    other = client_class_with_address("198.51.100.20")
    response = other.post("/", account_form(server, user), follow=True)
    assert CONNECTED in response.content.decode()


def client_class_with_address(address: str):
    from django.test import Client

    return Client(REMOTE_ADDR=address)


def test_a_full_checks_queue_asks_the_customer_to_come_back(client, source_user, settings, redis_connection):
    server, user = source_user
    settings.IMAPCOPY_CONNECTION_TEST_QUEUE_LIMIT = 1
    # A test already waiting for a checks worker (queued as the web tier does, not run).
    django_rq.get_queue(settings.CHECK_QUEUE, is_async=True).enqueue("apps.mailboxes.jobs.run_connection_test", 0)
    response = client.post("/", account_form(server, user))
    assert response.status_code == 503
    assert "Our service is very busy and could not test your account in time." in response.content.decode()
    assert not MailAccount.objects.exists()


def test_an_answer_that_never_comes_is_reported_not_waited_for_forever(client, source_user, settings):
    """A checks worker that is down or far behind: the waiting page gives up after the deadline."""
    server, user = source_user
    settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = True  # queued, and no worker runs it
    try:
        response = client.post("/", account_form(server, user))
        assert response.status_code == 302
        assert STILL_TESTING in client.get("/").content.decode()
        MailAccount.objects.update(check_requested_at=timezone.now() - datetime.timedelta(minutes=5))
        body = client.get("/").content.decode()
    finally:
        settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = False
        django_rq.get_queue(settings.CHECK_QUEUE).empty()
    assert "Our service is very busy and could not test your account in time." in body
    assert not MailAccount.objects.exists(), "the abandoned test keeps no password"


def test_a_client_cannot_start_more_copies_than_its_share(client, source_user, destination_user, settings):
    (source_server, source), (destination_server, destination) = source_user, destination_user
    settings.IMAPCOPY_ACTIVE_JOBS_PER_CLIENT = 1
    client.post("/", account_form(source_server, source), follow=True)
    client.post("/destination/", account_form(destination_server, destination), follow=True)
    client.post("/synchronize/")
    assert SyncJob.objects.filter(status=JobStatus.QUEUED).count() == 1

    second_source = source_server.new_user()
    client.post("/", account_form(source_server, second_source), follow=True)
    client.post("/destination/", account_form(destination_server, destination_server.new_user()), follow=True)
    response = client.post("/synchronize/", follow=True)
    assert "You already have 1 copy waiting or in progress." in response.content.decode()
    assert SyncJob.objects.count() == 1


@pytest.mark.browser
def test_in_a_browser_the_waiting_page_turns_into_the_result(page, live_server, source_user, run_worker, settings):
    from tests.selfservice.test_browser import fill_account, shot

    server, user = source_user
    settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = True  # a real checks worker answers
    try:
        page.goto(f"{live_server.url}/")
        fill_account(page, server, user)
        page.click("button[type=submit].primary")
        page.wait_for_selector("section.testing-connection")
        shot(page, "connection-test-waiting")
        assert user.password not in page.content()
        worker = run_worker(settings.CHECK_QUEUE)
        assert worker.returncode == 0, worker.stderr
        page.wait_for_selector("section.success")  # the waiting page reloaded itself
        assert "5" in page.inner_text("section.success")
        shot(page, "connection-test-result")
    finally:
        settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = False
