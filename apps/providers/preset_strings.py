"""The texts of the seeded providers, so that makemessages puts them in the catalogs.

Provider names and help texts are data that staff may edit; where one is still the seeded
English text, customers see it in their language (see Provider.display_name)."""

from django.utils.translation import gettext_noop

PRESET_TEXTS = [
    gettext_noop("Other"),
    gettext_noop("OVH shared hosting"),
    gettext_noop("Hosted Exchange 2013"),
    gettext_noop("Private Exchange 2013"),
    gettext_noop(
        "If two-step verification is on, create an app password in your account's security "
        "settings and use it here instead of your usual password."
    ),
    gettext_noop(
        "IMAP must be enabled in Gmail's settings. If two-step verification is on, create an app password in "
        "your account's security settings and use it here instead of your usual password."
    ),
    gettext_noop("Your login is your address without “@free.fr”."),
    gettext_noop("Your login is your address without “@laposte.net”."),
    gettext_noop("Type the IMAP server of your Exchange platform."),
    gettext_noop("Type your provider's IMAP server; it is usually in their help pages."),
]
