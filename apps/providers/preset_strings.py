"""The texts of the seeded providers, so that makemessages puts them in the catalogs.

Provider names and help texts are data that staff may edit; where one is still the seeded
English text, customers see it in their language (see Provider.display_name). Each text here
is the one a data migration seeds, word for word (tests/providers/test_presets.py checks it)."""

from django.utils.translation import gettext_noop

PRESET_TEXTS = [
    gettext_noop("Other"),
    gettext_noop("OVH shared hosting"),
    gettext_noop("Hosted Exchange 2013"),
    gettext_noop("Private Exchange 2013"),
    gettext_noop("Type your provider's IMAP server; it is usually in their help pages."),
    # 0004_current_provider_advice
    gettext_noop(
        "AOL accepts only an app password here, not your usual password. On your AOL Account Security page, "
        "choose “Generate app password” and type the password it gives you here. Create it in a browser you "
        "have used to sign in to AOL for several days."
    ),
    gettext_noop(
        "Yahoo accepts only an app password here, not your usual password. On your Yahoo Account Security "
        "page, under “External connections”, create an app password and type it here. Create it in a browser "
        "you have used to sign in to Yahoo for several days."
    ),
    gettext_noop("Your login is your address without “@free.fr”; type the password of this email address."),
    gettext_noop(
        "Gmail accepts a mail program's password only if it is an app password. Turn on 2-Step Verification "
        "in your Google Account, create an app password (Security, then App passwords) and type it here "
        "instead of your usual password. There is no IMAP setting to turn on in Gmail any more. With a work "
        "or school account, your administrator may have turned app passwords off."
    ),
    gettext_noop(
        "Microsoft no longer accepts passwords from mail programs for Outlook.com, Hotmail, Live and "
        "Microsoft 365 accounts: a copy that signs in with a password is refused, even with the right "
        "password. Until IMAPCopy can sign in with Microsoft, copy this mailbox with a mail program that "
        "signs in with Microsoft (such as Outlook or Thunderbird), or ask your Microsoft 365 administrator "
        "to migrate it."
    ),
    gettext_noop("Type your full SFR email address and the password you use for SFR Mail."),
    gettext_noop("Your login is your address without “@laposte.net”; type your laposte.net password."),
    gettext_noop("Type your full Orange email address and the password you use for Mail Orange."),
    gettext_noop(
        "Type your full email address and the password of this email account; you can change it in the "
        "OVHcloud Control Panel."
    ),
    gettext_noop(
        "Type the IMAP server of your Exchange platform (shown in the OVHcloud Control Panel), your full "
        "email address and the password of this email account."
    ),
]
