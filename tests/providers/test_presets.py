import pytest

from apps.providers.models import Provider

pytestmark = pytest.mark.django_db


def test_source_presets_are_listed_in_order_with_other_last():
    names = list(Provider.objects.for_source().values_list("name", flat=True))
    assert names == [
        "AOL", "Yahoo", "Free", "Gmail", "SFR", "La Poste", "Orange", "OVH shared hosting",
        "Hosted Exchange 2013", "Private Exchange 2013", "Other",
    ]  # fmt: skip


def test_destination_presets_are_listed_with_other_last():
    names = list(Provider.objects.for_destination().values_list("name", flat=True))
    assert set(names) == {"Exchange 25 GB", "Exchange Corporate", "Exchange Reseller", "OVH shared hosting", "Other"}
    assert names[-1] == "Other"


@pytest.mark.parametrize(
    ("slug", "host", "port"),
    [
        ("gmail", "imap.gmail.com", 993),
        ("ovh-shared-hosting", "ssl0.ovh.net", 993),
        ("yahoo", "imap.mail.yahoo.com", 993),
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
