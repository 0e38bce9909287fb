from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from apps.selfservice.ratelimit import allow, client_address

ADMIN_LOGIN_ATTEMPTS = 10
ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60


class PortalAdminSite(admin.AdminSite):
    site_header = _("IMAPCopy administration")
    site_title = _("IMAPCopy")
    index_title = _("Back office")

    def login(self, request, extra_context=None):
        # Password guessing against staff accounts: a few tries per address and quarter hour.
        if request.method == "POST" and not allow(
            "admin-login",
            client_address(request),
            limit=ADMIN_LOGIN_ATTEMPTS,
            window_seconds=ADMIN_LOGIN_WINDOW_SECONDS,
        ):
            context = {**self.each_context(request), "title": _("Too many attempts")}
            return TemplateResponse(request, "admin/login_rate_limited.html", context, status=429)
        return super().login(request, extra_context)
