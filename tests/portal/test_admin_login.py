"""Staff log-in throttling (issue 12, finding 5): only failures count, per client and per
username, a browser that logged in before is not locked out by strangers, and the refusal says
how long to wait — in the Django test client, through gunicorn behind a trusted proxy, and in
Chromium."""

import http.client
import ipaddress
import os
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import Client

from portal.admin import (
    ADMIN_LOGIN_FAILURES_PER_CLIENT,
    ADMIN_LOGIN_FAILURES_PER_USERNAME,
    KNOWN_DEVICE_COOKIE,
)

PASSWORD = "right-password-4711"
WAIT_SENTENCE = re.compile(r"Too many attempts\. Please try again in 1[45] minutes\.")


@pytest.fixture(autouse=True)
def fresh_counters(settings):
    # Each refused password costs a full PBKDF2 run otherwise; these tests make dozens.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff(django_user_model):
    def make(username: str):
        return django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)

    return make


def log_in(client: Client, username: str, password: str, address: str):
    return client.post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.django_db
def test_a_correct_password_is_never_refused(client, staff):
    staff("alice")
    for _ in range(12):
        assert log_in(client, "alice", PASSWORD, "198.51.100.1").status_code == 302
        client.logout()


@pytest.mark.django_db
def test_failures_from_one_client_are_refused_after_ten_even_with_the_right_password(client, staff):
    staff("alice")
    statuses = [log_in(client, "alice", f"guess-{n}", "198.51.100.1").status_code for n in range(11)]
    assert statuses == [200] * ADMIN_LOGIN_FAILURES_PER_CLIENT + [429]
    # The password is not even checked until the window passes: no oracle for the 11th guess.
    assert log_in(client, "alice", PASSWORD, "198.51.100.1").status_code == 429
    # Another username from the same client is refused too: the client is the guesser.
    assert log_in(client, "bob", "guess", "198.51.100.1").status_code == 429


@pytest.mark.django_db
def test_failures_for_one_username_from_one_client_do_not_lock_out_another_staff_member_elsewhere(staff, settings):
    # All of them come through our reverse proxy, as in production.
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.5/32")]
    staff("alice")
    staff("bob")

    def through_proxy(browser, username, password, client_ip):
        return browser.post(
            "/admin/login/",
            {"username": username, "password": password},
            REMOTE_ADDR="10.0.0.5",
            HTTP_X_FORWARDED_FOR=client_ip,
        )

    office = Client()
    for n in range(ADMIN_LOGIN_FAILURES_PER_CLIENT + 1):
        through_proxy(office, "alice", f"typo-{n}", "198.51.100.1")
    assert through_proxy(office, "alice", PASSWORD, "198.51.100.1").status_code == 429
    assert through_proxy(Client(), "bob", PASSWORD, "203.0.113.5").status_code == 302
    # Alice herself, from home, is not locked out either by the office's failures.
    assert through_proxy(Client(), "alice", PASSWORD, "203.0.113.6").status_code == 302


@pytest.mark.django_db
def test_a_guess_spread_over_many_clients_is_capped_per_username(staff):
    staff("alice")
    guesser = Client()
    for n in range(ADMIN_LOGIN_FAILURES_PER_USERNAME):
        assert log_in(guesser, " ALICE", f"guess-{n}", f"198.51.{n}.1").status_code == 200
    assert log_in(guesser, "Alice", "guess", "203.0.113.99").status_code == 429
    # Other staff members are not concerned.
    staff("bob")
    assert log_in(Client(), "bob", PASSWORD, "203.0.113.98").status_code == 302


@pytest.mark.django_db
def test_a_browser_that_logged_in_before_is_not_locked_out_by_strangers(staff):
    staff("alice")
    alices_browser = Client()
    assert log_in(alices_browser, "alice", PASSWORD, "192.0.2.10").status_code == 302
    assert KNOWN_DEVICE_COOKIE in alices_browser.cookies
    assert alices_browser.post("/admin/logout/").status_code == 200  # as she would, keeping her cookies
    guesser = Client()
    for n in range(ADMIN_LOGIN_FAILURES_PER_USERNAME + 1):
        log_in(guesser, "alice", f"guess-{n}", f"198.51.{n}.1")
    assert log_in(Client(), "alice", PASSWORD, "203.0.113.7").status_code == 429
    assert log_in(alices_browser, "alice", PASSWORD, "203.0.113.7").status_code == 302
    # The cookie vouches for alice only.
    staff("mallory")
    mallorys_browser = Client()
    log_in(mallorys_browser, "mallory", PASSWORD, "203.0.113.8")
    mallorys_browser.post("/admin/logout/")
    assert log_in(mallorys_browser, "alice", PASSWORD, "203.0.113.8").status_code == 429


@pytest.mark.django_db
def test_the_rate_limited_page_says_how_long_to_wait(client, staff):
    staff("alice")
    for n in range(ADMIN_LOGIN_FAILURES_PER_CLIENT):
        log_in(client, "alice", f"guess-{n}", "198.51.100.1")
    response = log_in(client, "alice", "guess", "198.51.100.1")
    assert response.status_code == 429
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60
    assert WAIT_SENTENCE.search(response.content.decode())


# --- Through gunicorn behind a trusted proxy -----------------------------------------------------


def gunicorn_log_in(port: int, forwarded_for: str, username: str, password: str) -> int:
    """A log-in as a browser behind our reverse proxy sends it: the proxy adds X-Forwarded-For."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/admin/login/")
    response = connection.getresponse()
    page = response.read().decode()
    cookies = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password})
    connection.request(
        "POST",
        "/admin/login/",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken'].value}",
            "X-Forwarded-For": forwarded_for,
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


@pytest.mark.slow
def test_gunicorn_behind_a_trusted_proxy_limits_each_forwarded_client_separately(tmp_path):
    from tests.support.stack import gunicorn_portal

    with gunicorn_portal(tmp_path, web_workers=2, TRUSTED_PROXIES="127.0.0.1", IMAPCOPY_RATE_LIMIT_FACTOR="1") as stack:
        # The left-most value is the client's own invention, varied on every try: ignored.
        attacker = [
            gunicorn_log_in(stack.port, f"10.9.{n}.1, 198.51.100.7", "staff", f"guess-{n}")
            for n in range(ADMIN_LOGIN_FAILURES_PER_CLIENT + 1)
        ]
        assert attacker == [200] * ADMIN_LOGIN_FAILURES_PER_CLIENT + [429]
        assert gunicorn_log_in(stack.port, "203.0.113.9", "staff", "guess") == 200


# --- In Chromium ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_lock_out_page_in_a_browser_says_how_long_to_wait(live_server, staff):
    from playwright.sync_api import sync_playwright

    from tests.selfservice.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.selfservice.test_browser import shot

    staff("alice")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            for n in range(ADMIN_LOGIN_FAILURES_PER_CLIENT + 1):
                page.goto(f"{live_server.url}/admin/login/")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", f"guess-{n}")
                with page.expect_navigation():
                    page.click("input[type=submit]")
            text = page.inner_text("#content")
            shot(page, "admin-login-rate-limited")
            assert WAIT_SENTENCE.search(text), text
            assert page.locator("a", has_text="Back to the login page").is_visible()
        finally:
            browser.close()
