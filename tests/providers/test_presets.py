import importlib

import pytest
from django.apps import apps

from apps.providers.models import Provider
from apps.providers.preset_strings import PRESET_TEXTS

pytestmark = pytest.mark.django_db


def test_source_presets_are_listed_in_order_with_other_last():
    names = list(Provider.objects.for_source().values_list("name", flat=True))
    assert names == [
        "AOL", "Yahoo", "Free", "Gmail", "Outlook.com / Hotmail / Microsoft 365", "SFR", "La Poste", "Orange",
        "OVH shared hosting",
        "Hosted Exchange 2013", "Private Exchange 2013", "Other",
    ]  # fmt: skip


def test_destination_presets_are_listed_with_other_last():
    names = list(Provider.objects.for_destination().values_list("name", flat=True))
    # Gmail / Google Workspace takes copies too since it signs in with Google (issue 15).
    assert set(names) == {
        "Gmail", "Outlook.com / Hotmail / Microsoft 365", "Exchange 25 GB", "Exchange Corporate",
        "Exchange Reseller", "OVH shared hosting", "Other",
    }  # fmt: skip
    assert names[-1] == "Other"


@pytest.mark.parametrize(
    ("slug", "host", "port"),
    [
        ("gmail", "imap.gmail.com", 993),
        ("ovh-shared-hosting", "ssl0.ovh.net", 993),
        ("yahoo", "imap.mail.yahoo.com", 993),
        ("aol", "imap.aol.com", 993),
        ("outlook", "outlook.office365.com", 993),
        ("orange", "imap.orange.fr", 993),
        ("sfr", "imap.sfr.fr", 993),
        ("free", "imap.free.fr", 993),
        ("laposte", "imap.laposte.net", 993),
    ],
)
def test_public_providers_have_their_real_imap_server(slug, host, port):
    provider = Provider.objects.get(slug=slug)
    assert (provider.imap_host, provider.imap_port, provider.security) == (host, port, "tls")


def test_other_and_private_exchange_let_the_customer_type_the_server():
    for slug in ("other", "private-exchange-2013"):
        provider = Provider.objects.get(slug=slug)
        assert provider.imap_host == ""
        assert provider.customer_types_host


def test_an_inactive_provider_disappears_from_the_lists():
    Provider.objects.filter(slug="gmail").update(is_active=False)
    assert "Gmail" not in Provider.objects.for_source().values_list("name", flat=True)


# The advice customers read (issue 14): true today, with the provider's own help page.


def test_every_preset_but_other_links_to_its_providers_help_page_over_https():
    for provider in Provider.objects.exclude(slug="other"):
        assert provider.help_url.startswith("https://"), provider.slug
        assert provider.help_text, provider.slug


@pytest.mark.parametrize(
    ("slug", "url", "words"),
    [
        ("gmail", "https://support.google.com/accounts/answer/185833", ["app password", "2-Step Verification"]),
        ("yahoo", "https://help.yahoo.com/kb/SLN15241.html", ["app password", "Account Security"]),
        ("aol", "https://help.aol.com/articles/Create-and-manage-app-password", ["app password", "Account Security"]),
        ("outlook", "https://support.microsoft.com/office/", ["no longer accepts passwords", "refused"]),
        ("laposte", "https://aide.laposte.net/", ["without “@laposte.net”"]),
        ("ovh-shared-hosting", "https://help.ovhcloud.com/", ["OVHcloud Control Panel"]),
    ],
)
def test_the_advice_is_current(slug, url, words):
    provider = Provider.objects.get(slug=slug)
    assert provider.help_url.startswith(url)
    for word in words:
        assert word in provider.help_text
    assert "must be enabled" not in provider.help_text  # Gmail's IMAP switch is gone


def test_each_preset_says_which_password_it_takes():
    kinds = dict(Provider.objects.values_list("slug", "password_kind"))
    assert {slug for slug, kind in kinds.items() if kind == "app"} == {"gmail", "yahoo", "aol"}
    assert {slug for slug, kind in kinds.items() if kind == "none"} == {"outlook"}


def test_the_microsoft_preset_is_offered_on_both_sides_with_its_real_server():
    outlook = Provider.objects.get(slug="outlook")
    assert outlook in Provider.objects.for_source() and outlook in Provider.objects.for_destination()
    assert (outlook.imap_host, outlook.imap_port, outlook.security) == ("outlook.office365.com", 993, "tls")
    assert not outlook.customer_types_host
    assert outlook.max_connections <= 16  # docs/provider-limits.md


def test_every_seeded_text_is_in_the_catalog_list():
    """A seeded help text reaches the customer translated only if makemessages saw it, word for word."""
    for provider in Provider.objects.all():
        assert provider.help_text in PRESET_TEXTS, provider.slug


def test_the_migration_leaves_a_help_text_staff_changed_alone():
    advice = importlib.import_module("apps.providers.migrations.0004_current_provider_advice")
    Provider.objects.filter(slug="gmail").update(help_text="Ask our support first.", help_url="")
    Provider.objects.filter(slug="yahoo").update(help_text=advice.OLD_HELP["yahoo"])
    advice.advise(apps, None)
    gmail, yahoo = Provider.objects.get(slug="gmail"), Provider.objects.get(slug="yahoo")
    assert gmail.help_text == "Ask our support first."
    assert gmail.help_url == advice.ADVICE["gmail"][1]  # an empty link is filled in
    assert yahoo.help_text == advice.ADVICE["yahoo"][0]  # the old seeded text is replaced


def test_staff_edit_the_advice_and_its_link_in_the_admin(admin_client):
    gmail = Provider.objects.get(slug="gmail")
    body = admin_client.get(f"/admin/providers/provider/{gmail.pk}/change/").content.decode()
    for name in ("password_kind", "help_text", "help_url"):
        assert f'name="{name}"' in body
    assert 'value="https://support.google.com/accounts/answer/185833"' in body
