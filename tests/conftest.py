"""Shared fixtures: a real Redis, real RQ workers, real databases."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings

from portal.localredis import free_port, redis_answers, start_redis

REPO = Path(__file__).resolve().parent.parent
# Cyrus IMAP, the second server implementation the engine is tested against.
pytest_plugins = ["tests.support.cyrus_fixtures", "tests.support.oauth_fixtures"]
_private_redis: subprocess.Popen | None = None


def _use_redis(url: str) -> None:
    os.environ["REDIS_URL"] = url
    settings.REDIS_URL = url
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url
    settings.CACHES["default"]["LOCATION"] = url


def pytest_configure(config):
    """A private Redis for this test session, unless TEST_REDIS_URL names one.

    Private, so that two test runs on one machine (a developer's and CI's) never consume each
    other's jobs; xdist workers each get their own database number on it."""
    global _private_redis
    url = os.environ.get("TEST_REDIS_URL")
    if not url or not redis_answers(url):
        port = free_port()
        _private_redis = start_redis(Path(tempfile.mkdtemp(prefix="imapcopy-redis-")), port, persist=False)
        url = f"redis://127.0.0.1:{port}/0"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    database = int(worker.removeprefix("gw") or 0) % 16
    _use_redis(url.rsplit("/", 1)[0] + f"/{database}")
    # Tests connect to Dovecot on loopback; production never allows this.
    import ipaddress

    settings.IMAPCOPY_ALLOWED_PRIVATE_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    # Dovecot listens on free ports, not on 143/993.
    settings.IMAPCOPY_IMAP_PORTS = None
    # The web tier's connection tests run inline, in the request, in tests that use Django's
    # client or live_server (whose rows a worker process could not see inside a test's
    # transaction); tests/selfservice/test_connection_test_queue.py runs them on real workers
    # behind gunicorn.
    settings.RQ_QUEUES[settings.CHECK_QUEUE]["ASYNC"] = False


# The markers of pyproject.toml, applied here from what a test uses rather than by each test, so
# that a new test cannot forget them: `./dev test -m "not slow"` is the developer's quick loop.
# Chromium through Playwright (tests/selfservice/conftest.py).
BROWSER_FIXTURES = {"browser", "page"}
# A real RQ worker process per test, a live server, a database flushed and seeded again after
# every test (transactional tests), the tests' OAuth2 authorization server (a process of its own).
SLOW_FIXTURES = {"run_worker", "live_server", "transactional_db", "oauth_server"}
# Modules whose tests start processes or servers of their own (gunicorn, Cyrus, proxies, an OAuth
# server, commands in subprocesses), kill them, wait out timeouts and refused logins (Dovecot
# answers a wrong password after a delay), or copy big mailboxes: seconds to a minute each.
SLOW_MODULES = {
    "tests/portal/test_settings.py",
    "tests/portal/test_startup.py",
    "tests/selfservice/test_connection_test_queue.py",
    "tests/selfservice/test_hostile_connection_test.py",
    "tests/support/test_provider_servers.py",
    "tests/sync/engine/test_cyrus.py",
    "tests/sync/engine/test_errors.py",
    "tests/sync/engine/test_hostile_server.py",
    "tests/sync/engine/test_login_charset.py",
    "tests/sync/engine/test_oauth.py",
    "tests/sync/engine/test_pipelined_append.py",
    "tests/sync/engine/test_providers.py",
    "tests/sync/engine/test_resume.py",
    "tests/sync/engine/test_round_trips.py",
    "tests/sync/test_copymailbox.py",
    "tests/sync/test_delta_pass.py",
    "tests/sync/test_redis_restart.py",
    "tests/sync/test_worker_faults.py",
    "tests/sync/test_worker_hostile.py",
    "tests/sync/test_worker_kill_storm.py",
    "tests/sync/test_worker_losses.py",
    "tests/sync/test_worker_network_faults.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        module = item.path.relative_to(REPO).as_posix() if item.path.is_relative_to(REPO) else ""
        # A browser test needs a live server and Chromium: never quick.
        if fixtures & (SLOW_FIXTURES | BROWSER_FIXTURES) or module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        # `transaction=True` tests flush the database after each test, as transactional_db does.
        marker = item.get_closest_marker("django_db")
        if marker is not None and marker.kwargs.get("transaction"):
            item.add_marker(pytest.mark.slow)
        # No test needs PostgreSQL itself today: .ci/run runs the database tests again on it.


def pytest_unconfigure(config):
    if _private_redis is not None:
        _private_redis.terminate()
        _private_redis.wait(timeout=10)


@pytest.fixture(autouse=True)
def _english_between_tests():
    """A request through LocaleMiddleware leaves its language active in the thread, and
    reverse() would then build /fr/ URLs in the next test: start each test in English."""
    from django.utils import translation

    translation.activate("en")
    yield
    translation.deactivate()


@pytest.fixture
def redis_connection():
    import django_rq

    connection = django_rq.get_connection(settings.COPY_QUEUE)
    connection.flushdb()
    yield connection
    connection.flushdb()


def subprocess_env() -> dict[str, str]:
    """Environment for a child process (worker, manage.py) that must see the test database."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        database_url = f"sqlite:///{db['NAME']}"
    else:
        database_url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "IMAPCOPY_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "IMAPCOPY_IMAP_PORTS": "any",
        "CREDENTIAL_KEYS": ",".join(settings.CREDENTIAL_KEYS),
        "SECRET_KEY": settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def run_worker(redis_connection, transactional_db):
    """Run a real RQ worker process in burst mode: it works the queue until empty, then exits."""

    def run(*queues: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "rqworker", "--burst", *(queues or [settings.COPY_QUEUE])],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )

    return run


@pytest.fixture(autouse=True)
def _seeded_rows_in_transactional_tests(request):
    """Transactional tests flush the database after each test, seeded rows included; put the
    providers and staff groups the data migrations created back before such a test."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or "live_server" in request.fixturenames
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    import importlib

    from django.apps import apps

    from apps.providers.models import Provider

    if not Provider.objects.exists():
        importlib.import_module("apps.providers.migrations.0002_seed_presets").seed(apps, None)
        importlib.import_module("apps.providers.migrations.0004_current_provider_advice").advise(apps, None)
        importlib.import_module("apps.providers.migrations.0005_oauth_sign_in").mark_oauth_presets(apps, None)
        from django.contrib.auth.models import Group, Permission

        importlib.import_module("apps.sync.migrations.0005_staff_groups").assign_groups(Group, Permission)


@pytest.fixture
def provider(db):
    from apps.providers.models import Provider

    return Provider.objects.get(slug="other")


@pytest.fixture
def make_account(db, provider):
    from apps.mailboxes.services import account_create

    def make(email_address: str = "alice@example.org", password: str = "s3cret-Pa55word!", **overrides):
        values = dict(
            provider=provider,
            email_address=email_address,
            login=email_address,
            host="127.0.0.1",
            port=993,
            security="tls",
            password=password,
        )
        values.update(overrides)
        return account_create(**values)

    return make


# --- Real IMAP servers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def imap_servers(tmp_path_factory):
    """Two Dovecot servers for the whole session: a `.`-separated source with SPECIAL-USE
    folders, a `/`-separated destination with Exchange-like names; one CA bundle trusts both."""
    from apps.localmail.dovecot import DovecotServer, Profile

    with DovecotServer(Profile.dot()) as source, DovecotServer(Profile.slash()) as destination:
        bundle = tmp_path_factory.mktemp("ca") / "imap-ca.pem"
        bundle.write_text(source.cert_file.read_text() + destination.cert_file.read_text())
        yield source, destination, bundle


@pytest.fixture
def imap_trust(imap_servers, settings):
    settings.IMAPCOPY_CA_FILE = str(imap_servers[2])
    os.environ["IMAPCOPY_CA_FILE"] = str(imap_servers[2])
    yield imap_servers
    os.environ.pop("IMAPCOPY_CA_FILE", None)
