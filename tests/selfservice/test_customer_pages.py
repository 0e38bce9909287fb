"""What a customer sees on the account steps: the language switcher, one control for the
connection security, fixed presets shown as text, and errors beside the field at fault."""

import re

import pytest
from django.urls import reverse

from apps.providers.models import Provider
from apps.selfservice.forms import AccountForm
from tests.selfservice.conftest import account_form
from tests.selfservice.test_browser import fill_account

AUTH_BESIDE_FIELD = "The server refused this login or password."


def block(body: str, element_id: str) -> str:
    """The HTML of the field block with this id (a <div> or a <fieldset>, not nested in itself)."""
    match = re.search(rf'<(div|fieldset)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', body, re.S)
    assert match, f"no #{element_id} on the page"
    return match.group(2)


def provider_options(body: str) -> list[str]:
    select = re.search(r'<select name="provider".*?</select>', body, re.S).group(0)
    return re.findall(r"<option[^>]*>", select)


# 1. The language switcher


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("next_url", "language", "expected"),
    [
        ("/fr/", "de", "/de/"),
        ("/fr/destination/", "de", "/de/destination/"),
        ("/pt/status/", "es", "/es/status/"),
        ("/de/status/", "en", "/status/"),
    ],
)
def test_language_switcher_leads_to_the_same_page_in_the_chosen_language(client, next_url, language, expected):
    response = client.post(reverse("set_language"), {"next": next_url, "language": language})
    assert response.status_code == 302
    assert response["Location"] == expected
    assert client.cookies["django_language"].value == language


@pytest.mark.django_db
def test_english_prefix_leads_to_the_english_page(client):
    response = client.get("/en/")
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/en/status/?a=b")["Location"] == "/status/?a=b"
    english = client.get("/en/", follow=True)
    assert english.status_code == 200
    assert '<html lang="en">' in english.content.decode()


@pytest.mark.django_db
def test_english_prefix_redirect_stays_on_this_site(client):
    assert client.get("/en//evil.example/")["Location"] == "/evil.example/"


# 2. One control for the connection security


@pytest.mark.django_db
def test_connection_security_is_one_visible_choice_without_an_ssl_checkbox(client, settings):
    settings.IMAPCOPY_ALLOW_PLAINTEXT_IMAP = False
    body = client.get("/fr/").content.decode()
    assert 'name="use_ssl"' not in body
    assert 'type="checkbox"' not in block(body, "field-security")
    radios = re.findall(r'<input type="radio" name="security" value="(\w+)"', body)
    assert radios == ["tls", "starttls"]
    # Beside the server, not folded away under the advanced settings.
    assert 'name="security"' not in re.search(r"<details.*?</details>", body, re.S).group(0)

    settings.IMAPCOPY_ALLOW_PLAINTEXT_IMAP = True
    body = client.get("/pt/").content.decode()
    assert re.findall(r'<input type="radio" name="security" value="(\w+)"', body) == ["tls", "starttls", "none"]


@pytest.mark.django_db
def test_empty_port_follows_the_security_chosen():
    # A preset the customer may change: its own port (993) went with any security chosen.
    exchange = Provider.objects.create(
        name="Exchange", slug="exchange", imap_host="mail.example.org", imap_port=993, security="tls",
        host_editable=True,
    )  # fmt: skip
    data = {"provider": exchange.pk, "login": "a@example.org", "password": "p", "host": "", "port": ""}
    for security, port in [("starttls", 143), ("tls", 993)]:
        form = AccountForm({**data, "security": security}, role="source")
        assert form.is_valid(), form.errors
        cleaned = form.cleaned_data
        assert (cleaned["imap_host"], cleaned["imap_port"], cleaned["imap_security"]) == (
            "mail.example.org", port, security,
        )  # fmt: skip


@pytest.mark.django_db
def test_fixed_presets_show_their_settings_as_text(client):
    gmail = Provider.objects.get(slug="gmail")
    assert not gmail.customer_types_host
    body = client.get("/fr/").content.decode()
    preset = re.search(rf'<div class="preset-server" data-provider="{gmail.pk}"[^>]*>(.*?)</div>', body, re.S)
    assert preset, "no settings block for the preset"
    assert "<input" not in preset.group(1)
    assert f">{gmail.imap_host}<" in preset.group(1) and f">{gmail.imap_port}<" in preset.group(1)
    # Chosen (here after an error), its block is the one shown.
    body = client.post("/", {"provider": gmail.pk, "login": "", "password": "x"}).content.decode()
    assert re.search(rf'<div class="preset-server" data-provider="{gmail.pk}">', body)


# 5. Errors


@pytest.mark.django_db
def test_nothing_is_preselected_and_no_choice_is_explained(client):
    body = client.get("/").content.decode()
    options = provider_options(body)
    assert options[0] == '<option value="" selected>'
    assert all("selected" not in option for option in options[1:])
    body = client.post("/", {"login": "a@example.org", "password": "p"}).content.decode()
    assert "Choose your service in the list." in block(body, "field-provider")


@pytest.mark.django_db
def test_a_typed_but_refused_server_gets_one_error(client):
    other = Provider.objects.get(slug="other")
    body = client.post("/", {"provider": other.pk, "login": "a@example.org", "password": "p", "host": "bad host!"})
    html = block(body.content.decode(), "field-host")
    assert "Enter a server name such as imap.example.com." in html
    assert "Enter your IMAP server." not in html


@pytest.mark.django_db(transaction=True)
def test_wrong_password_is_shown_beside_login_and_password(client, source_user):
    server, user = source_user
    body = client.post("/", account_form(server, user, password="wrong"), follow=True).content.decode()
    assert re.search(r'<div class="form-error" role="alert"', body)
    assert "The server refused the login or the password." in body
    assert AUTH_BESIDE_FIELD in block(body, "field-login")
    assert AUTH_BESIDE_FIELD in block(body, "field-password")
    assert "errorlist" not in block(body, "field-host")


@pytest.mark.django_db(transaction=True)
def test_connection_error_is_beside_the_server_and_shows_the_port_used(client, source_user):
    server, user = source_user
    body = client.post("/", account_form(server, user, port="1"), follow=True).content.decode()
    assert "errorlist" in block(body, "field-port")
    assert "errorlist" not in block(body, "field-password")
    assert re.search(r"<details open>", body)
    assert re.search(r'<input type="number" name="port" value="1"', body)


@pytest.mark.django_db(transaction=True)
def test_use_another_account_preselects_no_provider(client, source_user):
    server, user = source_user
    gmail = Provider.objects.get(slug="gmail")
    client.post("/", account_form(server, user), follow=True)
    options = provider_options(client.get("/?edit=1").content.decode())
    assert options[0] == '<option value="" selected>'
    assert not any(f'value="{gmail.pk}"' in option and "selected" in option for option in options)


# In Chromium, in French and Portuguese


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize(("language", "path", "chosen"), [("fr", "/fr/", "de"), ("pt", "/pt/status/", "es")])
def test_language_switcher_in_the_browser(page, live_server, language, path, chosen):
    page.goto(f"{live_server.url}{path}")
    assert page.get_attribute("html", "lang") == language
    page.select_option("#language-select", chosen)
    page.click("form.languages button[type=submit]")
    page.wait_for_url(f"{live_server.url}/{chosen}{path[3:]}")
    assert page.get_attribute("html", "lang") == chosen
    page.goto(f"{live_server.url}/en/")
    assert page.url == f"{live_server.url}/"
    assert page.get_attribute("html", "lang") == "en"


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_security_choice_and_fixed_preset_in_the_browser(page, live_server, language, source_user):
    server, user = source_user
    page.goto(f"{live_server.url}/{language}/")
    gmail = Provider.objects.get(slug="gmail")
    page.select_option("select[name=provider]", str(gmail.pk))
    preset = page.locator(f'.preset-server[data-provider="{gmail.pk}"]')
    assert preset.is_visible()
    assert gmail.imap_host in preset.inner_text()
    assert not page.locator("input[name=host]").is_visible()
    assert not page.locator("input[name=security]").first.is_visible()

    fill_account(page, server, user)
    assert not preset.is_visible() and page.locator("input[name=host]").is_visible()
    page.check("input[name=security][value=starttls]")
    page.fill("input[name=port]", "")
    assert page.get_attribute("input[name=port]", "placeholder") == "143"
    page.fill("input[name=port]", str(server.port))
    page.click("button[type=submit].primary")
    page.wait_for_selector("section.success")


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("language", ["fr", "pt"])
def test_errors_beside_the_fields_in_the_browser(page, live_server, language, source_user):
    server, user = source_user
    page.goto(f"{live_server.url}/{language}/")
    assert page.input_value("select[name=provider]") == ""
    page.click("button[type=submit].primary")
    assert page.locator("#field-provider .errorlist").is_visible()

    fill_account(page, server, user, password="not-the-password")
    page.click("button[type=submit].primary")
    page.wait_for_selector(".form-error[role=alert]")
    assert page.locator("#field-password .errorlist").is_visible()
    assert page.locator("#field-login .errorlist").is_visible()
    # The port the test used stays in view.
    assert page.locator("input[name=port]").is_visible()
    assert page.input_value("input[name=port]") == str(server.tls_port)
    assert page.input_value("select[name=provider]") == str(Provider.objects.get(slug="other").pk)


@pytest.mark.django_db
@pytest.mark.parametrize("seconds", [8, 40])
def test_the_form_says_how_long_a_connection_test_may_take_as_configured(client, settings, seconds):
    settings.CONNECTION_TEST_SECONDS = seconds
    body = client.get("/").content.decode()
    label = re.search(r'data-testing-label="([^"]*)"', body).group(1)
    assert label == f"Testing the connection to your account… This can take up to {seconds} seconds."
