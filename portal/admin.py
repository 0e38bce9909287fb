import hashlib
import unicodedata

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from apps.selfservice.ratelimit import client_address, hit, peek, rate_limited_message

# Password guessing against staff accounts. Only failed log-ins count, in three buckets:
# - per client address (one office behind NAT, one attacker), whatever the username;
# - per username from all clients, so that a guess spread over many addresses is capped too;
# - per username from the browsers that logged in as it before (a signed "known device"
#   cookie). Such a browser is judged by this bucket only, so that strangers who exhaust the
#   first two cannot lock a named staff member out of the browser they work from.
ADMIN_LOGIN_WINDOW_SECONDS = 15 * 60
ADMIN_LOGIN_FAILURES_PER_CLIENT = 10
ADMIN_LOGIN_FAILURES_PER_USERNAME = 30
ADMIN_LOGIN_FAILURES_PER_KNOWN_DEVICE = 10

KNOWN_DEVICE_COOKIE = "imapcopy_admin_device"
KNOWN_DEVICE_SALT = "portal.admin.known-device"
KNOWN_DEVICE_MAX_AGE = 90 * 24 * 3600


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _device_token(username: str) -> str:
    # The cookie names the account by a digest only; its signature is what makes it proof.
    return hashlib.sha256(username.encode("utf-8")).hexdigest()[:32]


def _is_known_device(request, username: str) -> bool:
    token = request.get_signed_cookie(
        KNOWN_DEVICE_COOKIE, default=None, salt=KNOWN_DEVICE_SALT, max_age=KNOWN_DEVICE_MAX_AGE
    )
    return token is not None and token == _device_token(username)


def _login_buckets(request, username: str) -> list[tuple[str, str, int]]:
    """(scope, subject, limit) of every bucket this attempt is judged by."""
    if _is_known_device(request, username):
        return [("admin-login-device", username, ADMIN_LOGIN_FAILURES_PER_KNOWN_DEVICE)]
    return [
        ("admin-login-client", client_address(request), ADMIN_LOGIN_FAILURES_PER_CLIENT),
        ("admin-login-user", username, ADMIN_LOGIN_FAILURES_PER_USERNAME),
    ]


@receiver(user_login_failed, dispatch_uid="portal.admin.count_failed_login")
def _count_failed_login(sender, credentials, request=None, **kwargs):
    # Only the admin's log-in view marks its requests: a failure elsewhere is not ours to count.
    for scope, subject, _limit in getattr(request, "_admin_login_buckets", ()):
        hit(scope, subject, window_seconds=ADMIN_LOGIN_WINDOW_SECONDS)


class PortalAdminSite(admin.AdminSite):
    site_header = _("IMAPCopy administration")
    site_title = _("IMAPCopy")
    index_title = _("Back office")

    def login(self, request, extra_context=None):
        if request.method != "POST":
            return super().login(request, extra_context)
        username = normalize_username(request.POST.get("username", ""))
        buckets = _login_buckets(request, username)
        refused = [
            verdict
            for scope, subject, limit in buckets
            if not (verdict := peek(scope, subject, limit=limit, window_seconds=ADMIN_LOGIN_WINDOW_SECONDS))
        ]
        if refused:
            verdict = max(refused, key=lambda v: v.retry_after)
            context = {
                **self.each_context(request),
                "title": _("Too many attempts"),
                "message": rate_limited_message(verdict),
            }
            response = TemplateResponse(request, "admin/login_rate_limited.html", context, status=429)
            response["Retry-After"] = str(verdict.retry_after)
            return response
        request._admin_login_buckets = buckets
        response = super().login(request, extra_context)
        if response.status_code == 302 and self.has_permission(request):
            response.set_signed_cookie(
                KNOWN_DEVICE_COOKIE,
                _device_token(username),
                salt=KNOWN_DEVICE_SALT,
                max_age=KNOWN_DEVICE_MAX_AGE,
                path=reverse("admin:index", current_app=self.name),
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
