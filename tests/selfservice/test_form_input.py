"""Every field fed hostile values gets a clear error, never a crash."""

import html
import ipaddress

import pytest
from django.urls import reverse
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.mailboxes.models import MailAccount
from apps.mailboxes.netguard import is_address_allowed
from apps.providers.models import Provider
from apps.selfservice.forms import AccountForm

HOSTILE = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=31), max_size=10),
    st.just("x" * 5000),
    st.just(""),
    st.just("аррӏе.com"),  # Cyrillic look-alike
    st.just("imap.example.org\r\nX-Injected: 1"),
    st.just("../../etc/passwd"),
)

pytestmark = pytest.mark.django_db


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(login=HOSTILE, password=HOSTILE, host=HOSTILE, email=HOSTILE, port=st.one_of(HOSTILE, st.integers()))
def test_hostile_values_never_crash_the_form(login, password, host, email, port):
    other = Provider.objects.get(slug="other")
    data = {"provider": other.pk, "login": login, "password": password, "host": host, "email_address": email,
            "port": str(port), "security": "tls", "use_ssl": "on"}  # fmt: skip
    with translation.override("fr"):
        form = AccountForm(data, role="source")
        valid = form.is_valid()
        for errors in form.errors.values():
            assert all(isinstance(error, str) and error for error in errors)
    if valid:
        assert "\n" not in form.cleaned_data["imap_host"] and "\r" not in form.cleaned_data["login"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_hostile_values_posted_to_the_page_get_an_answer_not_a_server_error(client, value):
    other = Provider.objects.get(slug="other")
    response = client.post(
        "/fr/",
        {"provider": other.pk, "login": value, "password": value, "host": value, "email_address": value, "port": value},
    )
    assert response.status_code == 200
    assert not MailAccount.objects.exists()


CONTROL_CHARACTERS_ERROR = {
    "en": "This field cannot contain control characters.",
    "fr": "Ce champ ne peut pas contenir de caractères de contrôle.",
    "pt": "Este campo não pode conter caracteres não imprimíveis.",
    "de": "Dieses Feld darf keine Steuerzeichen enthalten.",
}


@pytest.mark.parametrize("language", CONTROL_CHARACTERS_ERROR)
def test_control_characters_get_a_translated_error(client, language):
    other = Provider.objects.get(slug="other")
    with translation.override(language):
        form = AccountForm(
            {"provider": other.pk, "login": "bob\x07", "password": "p", "host": "imap.example.org"}, role="source"
        )
        assert not form.is_valid()
        assert form.errors["login"] == [CONTROL_CHARACTERS_ERROR[language]]
    # What the customer reads: the error on the page of their language, next to the field.
    with translation.override(language):
        source_step = reverse("selfservice:source")
    page = client.post(
        source_step, {"provider": other.pk, "login": "bob\x07", "password": "p", "host": "imap.example.org"}
    )
    assert page.status_code == 200
    assert CONTROL_CHARACTERS_ERROR[language] in html.unescape(page.content.decode())
    assert not MailAccount.objects.exists()


@given(st.ip_addresses())
def test_ssrf_guard_allows_only_global_addresses(address):
    allowed = is_address_allowed(address)
    if allowed:
        assert address.is_global
        assert not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        assert allowed == is_address_allowed(address.ipv4_mapped)
