import os
import shutil

import imapclient
import pytest
from django.core.cache import cache

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

SAMPLE_MESSAGES = {
    "INBOX": 3,
    "Work": 2,
}


def seed_mailbox(server, user, *, separator: str = ".") -> int:
    """Put a few real messages into a Dovecot account; returns how many."""
    client = imapclient.IMAPClient(server.host, port=server.port, ssl=False)
    client.login(user.login, user.password)
    count = 0
    for folder, how_many in SAMPLE_MESSAGES.items():
        name = folder if folder == "INBOX" else f"INBOX{separator}{folder}"
        if folder != "INBOX" and not client.folder_exists(name):
            client.create_folder(name)
        for number in range(how_many):
            body = (
                f"From: sender@example.org\r\nTo: {user.login}@example.org\r\n"
                f"Subject: {folder} message {number}\r\nMessage-ID: <{folder}-{number}@example.org>\r\n\r\n"
                f"Body {number}\r\n"
            ).encode()
            client.append(name, body, flags=[b"\\Seen"] if number % 2 else [])
            count += 1
    client.logout()
    return count


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def source_user(imap_trust):
    source_server, _destination, _bundle = imap_trust
    user = source_server.new_user()
    seed_mailbox(source_server, user)
    return source_server, user


@pytest.fixture
def destination_user(imap_trust):
    _source, destination_server, _bundle = imap_trust
    return destination_server, destination_server.new_user()


def account_form(server, user, **overrides) -> dict:
    from apps.providers.models import Provider

    data = {
        "provider": Provider.objects.get(slug="other").pk,
        "login": user.login,
        "password": user.password,
        "email_address": f"{user.login}@example.org",
        "host": "localhost",
        "port": str(server.tls_port),
        "security": "tls",
    }
    data.update(overrides)
    return data


# --- Chromium -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module. Not per session: while it runs,
    Playwright's event loop counts as running in this thread, which would break any later test
    that uses asyncio or async_to_sync."""
    # Django refuses ORM calls while an event loop runs in the thread; the test's ORM calls are
    # still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A desktop-sized page; modules that test the phone layout define their own."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
