"""The providers' advice as it is true today (issue 14), with a link to each provider's own help,
and the Outlook.com / Hotmail / Microsoft 365 preset.

Researched on 2026-11-29 with the project's search tool over stored public pages:

- Gmail takes a mail program's password only as an app password, which needs 2-Step
  Verification (Google Account Help, "Sign in with app passwords", answer 185833); Gmail's
  IMAP on/off setting is gone since January 2025 (Gmail Help, answer 7126229).
- Yahoo and AOL: third-party mail apps need an app password, created on the Account Security
  page, from a browser used to sign in for several days (Yahoo Help SLN15241; AOL Help "Create
  and manage 3rd-party app passwords").
- Outlook.com / Hotmail / Live (since 16 September 2024) and Microsoft 365 (Exchange Online)
  refuse IMAP with a password: OAuth2 only ("POP, IMAP, and SMTP settings for Outlook.com",
  server outlook.office365.com, port 993, SSL/TLS). Signing in with Microsoft is issue 15.
- La Poste: the login is the part of the address before "@laposte.net" (aide.laposte.net).
- OVH: the password of an email account is the one set in the OVHcloud Control Panel.
- Orange, SFR, Free: no page of theirs on mail programs could be confirmed; the links go to
  their help home pages.

Each preset also says what it takes as a password (password_kind: the usual one, an app
password, or none at all), which the form says beside the password when the login is refused.

The data is written out here, as in 0002: this migration keeps meaning what it meant. A help
text staff changed since it was seeded is left alone, and so is a help link they typed. The
customer-facing texts are repeated word for word in apps/providers/preset_strings.py for the
catalogs (a test checks that every seeded text is there).
"""

from django.db import migrations, models

OLD_TWO_STEP_HINT = (
    "If two-step verification is on, create an app password in your account's security "
    "settings and use it here instead of your usual password."
)
OLD_HELP = {
    "aol": OLD_TWO_STEP_HINT,
    "yahoo": OLD_TWO_STEP_HINT,
    "gmail": "IMAP must be enabled in Gmail's settings. " + OLD_TWO_STEP_HINT,
    "free": "Your login is your address without “@free.fr”.",
    "laposte": "Your login is your address without “@laposte.net”.",
    "private-exchange-2013": "Type the IMAP server of your Exchange platform.",
}

OVH_HELP = (
    "Type your full email address and the password of this email account; you can change it in the "
    "OVHcloud Control Panel."
)
OVH_URL = "https://help.ovhcloud.com/"

# slug: (help text, help page)
ADVICE = {
    "aol": (
        "AOL accepts only an app password here, not your usual password. On your AOL Account Security page, "
        "choose “Generate app password” and type the password it gives you here. Create it in a browser you "
        "have used to sign in to AOL for several days.",
        "https://help.aol.com/articles/Create-and-manage-app-password",
    ),
    "yahoo": (
        "Yahoo accepts only an app password here, not your usual password. On your Yahoo Account Security "
        "page, under “External connections”, create an app password and type it here. Create it in a browser "
        "you have used to sign in to Yahoo for several days.",
        "https://help.yahoo.com/kb/SLN15241.html",
    ),
    "free": (
        "Your login is your address without “@free.fr”; type the password of this email address.",
        "https://assistance.free.fr/",
    ),
    "gmail": (
        "Gmail accepts a mail program's password only if it is an app password. Turn on 2-Step Verification "
        "in your Google Account, create an app password (Security, then App passwords) and type it here "
        "instead of your usual password. There is no IMAP setting to turn on in Gmail any more. With a work "
        "or school account, your administrator may have turned app passwords off.",
        "https://support.google.com/accounts/answer/185833",
    ),
    "outlook": (
        "Microsoft no longer accepts passwords from mail programs for Outlook.com, Hotmail, Live and "
        "Microsoft 365 accounts: a copy that signs in with a password is refused, even with the right "
        "password. Until IMAPCopy can sign in with Microsoft, copy this mailbox with a mail program that "
        "signs in with Microsoft (such as Outlook or Thunderbird), or ask your Microsoft 365 administrator "
        "to migrate it.",
        "https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-"
        "d088b986-291d-42b8-9564-9c414e2aa040",
    ),
    "sfr": (
        "Type your full SFR email address and the password you use for SFR Mail.",
        "https://assistance.sfr.fr/",
    ),
    "laposte": (
        "Your login is your address without “@laposte.net”; type your laposte.net password.",
        "https://aide.laposte.net/",
    ),
    "orange": (
        "Type your full Orange email address and the password you use for Mail Orange.",
        "https://assistance.orange.fr/",
    ),
    "ovh-shared-hosting": (OVH_HELP, OVH_URL),
    "hosted-exchange-2013": (OVH_HELP, OVH_URL),
    "private-exchange-2013": (
        "Type the IMAP server of your Exchange platform (shown in the OVHcloud Control Panel), your full "
        "email address and the password of this email account.",
        OVH_URL,
    ),
    "exchange-25gb": (OVH_HELP, OVH_URL),
    "exchange-corporate": (OVH_HELP, OVH_URL),
    "exchange-reseller": (OVH_HELP, OVH_URL),
}

# What to type as the password where it is not the account's usual one.
PASSWORD_KINDS = {"aol": "app", "yahoo": "app", "gmail": "app", "outlook": "none"}

OUTLOOK = dict(
    name="Outlook.com / Hotmail / Microsoft 365",
    slug="outlook",
    role="both",
    imap_host="outlook.office365.com",
    imap_port=993,
    security="tls",
    # Microsoft documents 20 concurrent IMAP connections per mailbox (docs/provider-limits.md):
    # leave room for the customer's own Outlook.
    max_connections=10,
    sort_order=45,
)


def advise(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    if not Provider.objects.filter(slug=OUTLOOK["slug"]).exists():
        Provider.objects.create(**OUTLOOK)
    for slug, (help_text, help_url) in ADVICE.items():
        provider = Provider.objects.filter(slug=slug).first()
        if provider is None:
            continue
        if provider.help_text in ("", OLD_HELP.get(slug, "")):
            provider.help_text = help_text
        if not provider.help_url:
            provider.help_url = help_url
        provider.password_kind = PASSWORD_KINDS.get(slug, "usual")
        provider.save(update_fields=["help_text", "help_url", "password_kind"])


def unadvise(apps, schema_editor):
    Provider = apps.get_model("providers", "Provider")
    Provider.objects.filter(slug=OUTLOOK["slug"], accounts__isnull=True).delete()
    for slug, (help_text, _help_url) in ADVICE.items():
        Provider.objects.filter(slug=slug, help_text=help_text).update(help_text=OLD_HELP.get(slug, ""))


class Migration(migrations.Migration):
    dependencies = [("providers", "0003_check_provider_permission")]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="help_url",
            field=models.URLField(
                blank=True,
                help_text="The provider's own page on signing in from a mail program; linked under the help.",
                max_length=500,
                verbose_name="provider's help page",
            ),
        ),
        migrations.AddField(
            model_name="provider",
            name="password_kind",
            field=models.CharField(
                choices=[
                    ("usual", "The account's usual password"),
                    ("app", "An app password, not the usual one"),
                    ("none", "None: the provider refuses passwords from mail programs"),
                ],
                default="usual",
                help_text=(
                    "What the customer must type as the password; said beside it when the provider refuses the login."
                ),
                max_length=8,
                verbose_name="password",
            ),
        ),
        migrations.AlterField(
            model_name="provider",
            name="help_text",
            field=models.TextField(
                blank=True,
                help_text=(
                    "Shown under the service the customer chose, and beside the password when the provider "
                    "refuses the login: which login and password to use, e.g. “Use an app password”."
                ),
                verbose_name="help for customers",
            ),
        ),
        migrations.RunPython(advise, unadvise),
    ]
