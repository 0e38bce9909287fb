"""The advice a customer reads about their provider (issue 14, item 4): server-rendered for the
chosen service, with or without JavaScript, and pointed to when that provider refuses the login."""

import re

import pytest

from apps.mailboxes.models import MailAccount
from apps.providers.models import Provider
from apps.selfservice.forms import AccountForm
from tests.selfservice.conftest import account_form
from tests.selfservice.test_browser import shot

GMAIL_HELP = "https://support.google.com/accounts/answer/185833"


def advice_blocks(body: str) -> dict[str, tuple[bool, str]]:
    """Each provider's advice block on the page: {provider pk: (shown, inner HTML)}."""
    blocks = re.findall(r'<div class="help provider-advice" id="advice-(\d+)"[^>]*?( hidden)?>(.*?)</div>', body, re.S)
    return {pk: (not hidden, html) for pk, hidden, html in blocks}


def block(body: str, element_id: str) -> str:
    match = re.search(rf'<(div|fieldset)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', body, re.S)
    assert match, f"no #{element_id} on the page"
    return match.group(2)


def choose_first(client, provider: Provider, path: str = "/", **fields):
    """The no-JavaScript way: choose the service, then "Show the advice and settings for this service"."""
    return client.post(path, {"provider": provider.pk, "choose_provider": "1", **fields}).content.decode()


@pytest.mark.django_db
def test_no_advice_is_shown_before_a_service_is_chosen(client):
    blocks = advice_blocks(client.get("/").content.decode())
    assert blocks, "no advice on the page"
    assert not any(shown for shown, _html in blocks.values())


@pytest.mark.django_db
def test_gmail_step_page_shows_the_app_password_advice_and_its_link_without_javascript(client):
    gmail = Provider.objects.get(slug="gmail")
    body = choose_first(client, gmail)
    shown = {pk: html for pk, (visible, html) in advice_blocks(body).items() if visible}
    assert list(shown) == [str(gmail.pk)]
    assert "app password" in shown[str(gmail.pk)] and "2-Step Verification" in shown[str(gmail.pk)]
    assert "IMAP must be enabled" not in body
    assert f'<a href="{GMAIL_HELP}" target="_blank" rel="noopener noreferrer">Gmail help</a>' in shown[str(gmail.pk)]
    # Gmail's own settings are shown as text, and nothing was checked yet.
    assert re.search(rf'<div class="preset-server" data-provider="{gmail.pk}">', body)
    assert "errorlist" not in body and "form-error" not in body


@pytest.mark.django_db
def test_choosing_the_service_first_keeps_the_login_and_tests_nothing(client):
    yahoo = Provider.objects.get(slug="yahoo")
    body = choose_first(client, yahoo, login="ann@yahoo.com", password="not-kept")
    assert 'value="ann@yahoo.com"' in body
    assert "not-kept" not in body
    assert not MailAccount.objects.exists()
    assert advice_blocks(body)[str(yahoo.pk)][0]
    # The button exists only for browsers without JavaScript, and Enter still validates the form.
    form = re.search(r'<form method="post" class="account".*?</form>', body, re.S).group(0)
    noscripts = re.findall(r"<noscript>(.*?)</noscript>", form, re.S)
    assert any('name="choose_provider"' in html for html in noscripts)
    first_button = re.search(r"<button[^>]*>", form).group(0)
    assert 'name="choose_provider"' not in first_button


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/destination/"])
def test_the_microsoft_preset_says_plainly_that_a_password_will_be_refused(client, path, monkeypatch):
    outlook = Provider.objects.get(slug="outlook")
    if path == "/destination/":  # the destination step needs a verified source
        monkeypatch.setattr("apps.selfservice.views.session_account", lambda request, role: object())
    body = choose_first(client, outlook, path)
    visible, html = advice_blocks(body)[str(outlook.pk)]
    assert visible
    assert "Microsoft no longer accepts passwords" in html and "is refused" in html
    assert 'href="https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-' in html
    preset = re.search(rf'<div class="preset-server" data-provider="{outlook.pk}">(.*?)</div>', body, re.S).group(1)
    assert ">outlook.office365.com<" in preset and ">993<" in preset


@pytest.mark.django_db(transaction=True)
def test_a_login_refused_on_the_gmail_preset_points_to_gmails_advice(client, source_user):
    server, user = source_user
    # The Gmail preset, pointed at the test's Dovecot: its refusal is a real one.
    Provider.objects.filter(slug="gmail").update(imap_host="localhost", imap_port=server.tls_port)
    gmail = Provider.objects.get(slug="gmail")
    data = account_form(server, user, provider=gmail.pk, password="wrong", host="", port="")
    body = client.post("/", data, follow=True).content.decode()

    assert "Gmail refused the login or the password." in block(body, "form-error")
    assert "Gmail refused this login or password." in block(body, "field-login")
    beside_password = block(body, "field-password")
    assert "Gmail refused this login or password. Gmail needs an app password, not your usual password." in (
        beside_password
    )
    assert "2-Step Verification" not in beside_password  # the whole advice is under the service, once
    assert "Gmail needs an app password, not your usual password." in block(body, "form-error")
    assert f'<a href="{GMAIL_HELP}" target="_blank" rel="noopener noreferrer">Gmail help</a>' in beside_password
    assert advice_blocks(body)[str(gmail.pk)][0]  # and the advice is shown under the service


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("slug", "beside_password"),
    [
        ("outlook", "Outlook.com / Hotmail / Microsoft 365 no longer accepts passwords from mail programs."),
        ("yahoo", "Yahoo refused this login or password. Yahoo needs an app password, not your usual password."),
        ("orange", 'Orange refused this login or password. See <a href="https://assistance.orange.fr/"'),
    ],
)
def test_each_preset_says_what_password_it_wants_when_it_refuses_the_login(slug, beside_password):
    provider = Provider.objects.get(slug=slug)
    form = AccountForm(role="source", initial={"provider": provider.pk})
    form.show_check_error("auth_failed")
    assert beside_password in str(form.errors["password"][0])
    assert str(form.errors["login"][0]) == f"{provider.name} refused this login or password."
    assert "host" not in form.errors


@pytest.mark.django_db(transaction=True)
def test_a_login_refused_on_other_keeps_the_general_message(client, source_user):
    server, user = source_user
    body = client.post("/", account_form(server, user, password="wrong"), follow=True).content.decode()
    assert "The server refused this login or password." in block(body, "field-password")
    assert "refused this login or password. Type" not in body
    assert "help</a>" not in block(body, "field-password")


# In Chromium: with JavaScript the advice follows the list; without it, the button shows it.


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("language", ["en", "fr", "pt"])
def test_the_advice_follows_the_chosen_service_in_the_browser(page, live_server, language):
    gmail, yahoo = Provider.objects.get(slug="gmail"), Provider.objects.get(slug="yahoo")
    page.goto(f"{live_server.url}/{language}/" if language != "en" else f"{live_server.url}/")
    assert not page.locator(".provider-advice").first.is_visible()
    assert not page.locator("button[name=choose_provider]").is_visible()  # JavaScript does it live

    page.select_option("select[name=provider]", str(gmail.pk))
    advice = page.locator(f"#advice-{gmail.pk}")
    assert advice.is_visible()
    assert advice.locator(f'a[href="{GMAIL_HELP}"]').is_visible()
    if language == "en":
        assert "app password" in advice.inner_text()

    shot(page, f"{language}-provider-advice-gmail")

    page.select_option("select[name=provider]", str(yahoo.pk))
    assert not advice.is_visible()
    assert page.locator(f"#advice-{yahoo.pk}").is_visible()


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("language", ["en", "fr", "pt"])
def test_without_javascript_the_customer_chooses_the_service_first(browser, live_server, language):
    gmail = Provider.objects.get(slug="gmail")
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/{language}/" if language != "en" else f"{live_server.url}/")
        page.select_option("select[name=provider]", str(gmail.pk))
        page.fill("input[name=login]", "ann@gmail.com")
        page.click("button[name=choose_provider]")
        advice = page.locator(f"#advice-{gmail.pk}")
        assert advice.is_visible()
        assert advice.locator(f'a[href="{GMAIL_HELP}"]').is_visible()
        if language == "en":
            assert "app password" in advice.inner_text()
        assert page.input_value("input[name=login]") == "ann@gmail.com"
        assert page.locator(f'.preset-server[data-provider="{gmail.pk}"]').is_visible()
        assert not page.locator("input[name=host]").is_visible()  # Gmail's server is not the customer's to type
        assert not page.locator(".errorlist").count()
        shot(page, f"{language}-provider-advice-no-javascript")
    finally:
        context.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
def test_a_refused_gmail_login_in_the_browser_points_to_the_advice(page, live_server, source_user):
    server, user = source_user
    Provider.objects.filter(slug="gmail").update(imap_host="localhost", imap_port=server.tls_port)
    gmail = Provider.objects.get(slug="gmail")
    page.goto(f"{live_server.url}/")
    page.select_option("select[name=provider]", str(gmail.pk))
    page.fill("input[name=login]", user.login)
    page.fill("input[name=password]", "wrong")
    page.fill("input[name=email_address]", f"{user.login}@example.org")
    page.click("button[type=submit].primary")
    beside_password = page.locator("#field-password .errorlist")
    beside_password.wait_for()
    assert "Gmail refused this login or password." in beside_password.inner_text()
    assert beside_password.locator(f'a[href="{GMAIL_HELP}"]').is_visible()
    assert page.locator(f"#advice-{gmail.pk}").is_visible()
    shot(page, "en-provider-refused-gmail")
