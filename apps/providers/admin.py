from django.contrib import admin

from apps.providers.models import Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "role", "imap_host", "imap_port", "security", "login_format", "is_active", "sort_order"]
    list_editable = ["is_active", "sort_order"]
    list_filter = ["role", "is_active", "security"]
    search_fields = ["name", "slug", "imap_host"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "role", "is_active", "sort_order"]}),
        ("IMAP", {"fields": ["imap_host", "imap_port", "security", "host_editable", "login_format", "email_domain"]}),
        ("Customers", {"fields": ["help_text"]}),
        ("Limits", {"fields": ["max_connections", "max_messages_per_second", "max_bytes_per_second"]}),
    ]
