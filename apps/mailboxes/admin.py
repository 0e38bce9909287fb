from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from apps.mailboxes.models import MailAccount


@admin.register(MailAccount)
class MailAccountAdmin(admin.ModelAdmin):
    # The password, even encrypted, never reaches an admin page: the form has no field for
    # it and only whether one is stored is shown.
    list_display = ["email_address", "login", "provider", "host", "port", "security", "password_stored", "verified_at"]
    list_filter = ["provider", "security"]
    search_fields = ["email_address", "login", "host"]
    list_select_related = ["provider"]
    fields = [
        "provider",
        "email_address",
        "login",
        "host",
        "port",
        "security",
        "password_stored",
        "verified_at",
        "password_erased_at",
        "created_at",
    ]
    readonly_fields = ["password_stored", "verified_at", "password_erased_at", "created_at"]

    @admin.display(boolean=True, description=_("password stored"))
    def password_stored(self, account: MailAccount) -> bool:
        return account.has_password

    def has_add_permission(self, request) -> bool:
        # Accounts come from the customer form, which encrypts the password it is given.
        return False
