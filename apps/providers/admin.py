from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from apps.providers.models import Provider
from apps.providers.server_check import check_provider_server
from portal.admin_history import TranslatedHistory


@admin.register(Provider)
class ProviderAdmin(TranslatedHistory, admin.ModelAdmin):
    list_display = ["name", "role", "imap_host", "imap_port", "security", "login_format", "is_active", "sort_order"]
    list_editable = ["is_active", "sort_order"]
    list_filter = ["role", "is_active", "security"]
    search_fields = ["name", "slug", "imap_host"]
    prepopulated_fields = {"slug": ["name"]}
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a help page typed without https://
    actions = ["check_servers", "activate", "deactivate"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "role", "is_active", "sort_order"]}),
        (
            _("IMAP"),
            {"fields": ["imap_host", "imap_port", "security", "host_editable", "login_format", "email_domain"]},
        ),
        (_("Customers"), {"fields": ["password_kind", "help_text", "help_url"]}),
        (_("Sign in with Google or Microsoft"), {"fields": ["oauth_service", "oauth_settings"]}),
        (_("Limits"), {"fields": ["max_connections", "max_messages_per_second", "max_bytes_per_second"]}),
    ]

    readonly_fields = ["oauth_settings"]

    @admin.display(description=_("sign-in settings (from the environment)"))
    def oauth_settings(self, provider: Provider) -> str:
        """What the portal will use for this provider's sign-in, read-only: the operator sets it in
        the environment (the README says how); the client secret is never shown, only whether it
        is set."""
        values = settings.IMAPCOPY_OAUTH.get(provider.oauth_service) if provider.oauth_service else None
        if values is None:
            return gettext("Passwords only.")
        secret = gettext("set") if values.get("client_secret") else gettext("missing")
        rows = [
            (gettext("client id"), values.get("client_id") or gettext("missing")),
            (gettext("client secret"), secret),
            (gettext("authorization endpoint"), values["authorize_url"]),
            (gettext("token endpoint"), values["token_url"]),
            (gettext("scopes"), values["scopes"]),
        ]
        if provider.oauth_service == "microsoft":
            rows.append((gettext("tenant"), settings.IMAPCOPY_MICROSOFT_TENANT))
        state = (
            gettext("Customers see “Sign in with …”.")
            if values.get("client_id") and values.get("client_secret")
            else gettext("Not offered to customers until the client id and secret are set.")
        )
        items = format_html_join("", "<li>{}: <code>{}</code></li>", rows)
        return format_html("<p>{}</p><ul>{}</ul>", state, items)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Accounts and jobs refer to providers: deactivate instead.
        return request.user.is_superuser

    def has_check_permission(self, request) -> bool:
        # Operators only: the check makes the portal connect somewhere, support only looks.
        return request.user.has_perm("providers.check_provider")

    @admin.action(description=_("Check that the servers answer"), permissions=["check"])
    def check_servers(self, request, queryset):
        for provider in queryset:
            result = check_provider_server(provider)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(
                request,
                gettext("%(provider)s (%(host)s:%(port)s): %(outcome)s")
                % {
                    "provider": provider.name,
                    "host": provider.imap_host,
                    "port": provider.imap_port,
                    "outcome": result.summary,
                },
                level,
            )

    @admin.action(description=_("Show to customers"), permissions=["change"])
    def activate(self, request, queryset):
        count = self._set_active(request, queryset, True)
        self.message_user(
            request, ngettext("%(count)d provider shown.", "%(count)d providers shown.", count) % {"count": count}
        )

    @admin.action(description=_("Hide from customers (existing jobs keep working)"), permissions=["change"])
    def deactivate(self, request, queryset):
        count = self._set_active(request, queryset, False)
        self.message_user(
            request, ngettext("%(count)d provider hidden.", "%(count)d providers hidden.", count) % {"count": count}
        )

    def _set_active(self, request, queryset, active: bool) -> int:
        """Show or hide the providers that are not so yet, each change in the admin's history."""
        changed = list(queryset.exclude(is_active=active))
        queryset.filter(pk__in=[provider.pk for provider in changed]).update(is_active=active)
        for provider in changed:
            self.log_change(request, provider, "Shown to customers" if active else "Hidden from customers")
        return len(changed)
