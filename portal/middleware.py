"""Security headers that Django 5.2 does not set itself; the language of the staff's pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.middleware import locale as django_locale
from django.utils import translation

STRICT_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
# django-rq's dashboard templates carry a few inline styles; it is staff-only.
QUEUE_DASHBOARD_POLICY = STRICT_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def sign_in_origins() -> list[str]:
    """The "Sign in with …" form posts to the portal, which redirects it to Google's or Microsoft's
    authorization page: browsers apply form-action to that redirect too, so the configured
    services' origins must be in it (a service without client id and secret offers no button)."""
    origins = set()
    for service in settings.IMAPCOPY_OAUTH.values():
        if service.get("client_id") and service.get("client_secret") and service.get("authorize_url"):
            parts = urlsplit(service["authorize_url"])
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            policy = QUEUE_DASHBOARD_POLICY if request.path.startswith("/admin/django_rq/") else STRICT_POLICY
            response["Content-Security-Policy"] = policy.replace(
                "form-action 'self'", " ".join(["form-action 'self'", *sign_in_origins()])
            )
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


class LocaleMiddleware(django_locale.LocaleMiddleware):
    """Django's, except that the staff's pages follow the staff member's language (the language
    cookie the portal's switcher sets, else the browser's), as customers' pages follow their
    URL prefix.  Unprefixed URLs would otherwise all be in the default language (English),
    since the portal does not prefix it."""

    def process_request(self, request):
        if request.path_info.startswith("/admin/"):
            language = translation.get_language_from_request(request, check_path=False)
            translation.activate(language)
            request.LANGUAGE_CODE = translation.get_language()
            return
        super().process_request(request)
