"""Seed the providers IMAPCopy ships with.

The data is written out here rather than imported, so this migration keeps meaning what it
meant when it was written. Hosts are the providers' public IMAP servers; where each customer
has a server of their own (private Exchange, "Other") the host is empty and typed by them.
"""

from django.db import migrations

APP_PASSWORD_HINT = (
    "If two-step verification is on, create an app password in your account's security "
    "settings and use it here instead of your usual password."
)

PRESETS = [
    dict(name="AOL", slug="aol", role="source", imap_host="imap.aol.com", help_text=APP_PASSWORD_HINT,
         max_connections=5, sort_order=10),
    dict(name="Yahoo", slug="yahoo", role="source", imap_host="imap.mail.yahoo.com", help_text=APP_PASSWORD_HINT,
         max_connections=5, sort_order=20),
    dict(name="Free", slug="free", role="source", imap_host="imap.free.fr", login_format="local_part",
         email_domain="free.fr", help_text="Your login is your address without “@free.fr”.", sort_order=30),
    dict(name="Gmail", slug="gmail", role="source", imap_host="imap.gmail.com",
         help_text="IMAP must be enabled in Gmail's settings. " + APP_PASSWORD_HINT,
         max_connections=10, sort_order=40),
    dict(name="SFR", slug="sfr", role="source", imap_host="imap.sfr.fr", sort_order=50),
    dict(name="La Poste", slug="laposte", role="source", imap_host="imap.laposte.net", login_format="local_part",
         email_domain="laposte.net", help_text="Your login is your address without “@laposte.net”.",
         sort_order=60),
    dict(name="Orange", slug="orange", role="source", imap_host="imap.orange.fr", sort_order=70),
    dict(name="OVH shared hosting", slug="ovh-shared-hosting", role="both", imap_host="ssl0.ovh.net",
         sort_order=80),
    dict(name="Hosted Exchange 2013", slug="hosted-exchange-2013", role="source", imap_host="ex2.mail.ovh.net",
         host_editable=True, max_connections=4, sort_order=90),
    dict(name="Private Exchange 2013", slug="private-exchange-2013", role="source", imap_host="",
         host_editable=True, max_connections=4, help_text="Type the IMAP server of your Exchange platform.",
         sort_order=100),
    dict(name="Exchange 25 GB", slug="exchange-25gb", role="destination", imap_host="ex.mail.ovh.net",
         host_editable=True, max_connections=4, sort_order=110),
    dict(name="Exchange Corporate", slug="exchange-corporate", role="destination", imap_host="ex.mail.ovh.net",
         host_editable=True, max_connections=4, sort_order=120),
    dict(name="Exchange Reseller", slug="exchange-reseller", role="destination", imap_host="ex.mail.ovh.net",
         host_editable=True, max_connections=4, sort_order=130),
    dict(name="Other", slug="other", role="both", imap_host="", host_editable=True,
         help_text="Type your provider's IMAP server; it is usually in their help pages.", sort_order=1000),
]


def seed(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    for preset in PRESETS:
        Provider.objects.update_or_create(slug=preset["slug"], defaults=preset)


def unseed(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    Provider.objects.filter(slug__in=[preset["slug"] for preset in PRESETS], accounts__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("providers", "0001_initial"), ("mailboxes", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
