from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MailboxesConfig(AppConfig):
    name = "apps.mailboxes"
    label = "mailboxes"
    verbose_name = _("Mail accounts")
