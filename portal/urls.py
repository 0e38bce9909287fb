from urllib.parse import urlsplit

from django.conf import settings
from django.conf.urls.i18n import i18n_patterns
from django.contrib import admin
from django.shortcuts import redirect
from django.urls import include, path, re_path
from django.utils import translation
from django.views import i18n

from apps.selfservice import oauth_views

# The admin modules load with the URLconf, not at start-up (portal/apps.py).
admin.autodiscover()


def set_language(request):
    """Django's language switcher, with `next` read in the language of its own prefix.

    Django resolves `next` in the language of the request, which is English at /i18n/setlang/
    (no prefix): "/fr/" did not resolve, so the customer went back to the French page."""
    next_url = request.POST.get("next", request.GET.get("next")) or ""
    language = translation.get_language_from_path(urlsplit(next_url).path) or settings.LANGUAGE_CODE
    with translation.override(language):
        return i18n.set_language(request)


def english_prefix(request, rest: str):
    """English has no prefix: /en/… (in links and habits) leads to the same page."""
    query = request.META.get("QUERY_STRING", "")
    # "/" + the rest, never "//host": the redirect stays on this site.
    return redirect("/" + rest.lstrip("/\\") + (f"?{query}" if query else ""))


urlpatterns = [
    path("admin/", admin.site.urls),
    # The one redirect URI registered at Google and Microsoft (outside the language prefixes).
    path("oauth/callback/", oauth_views.oauth_callback, name="oauth-callback"),
    path("i18n/setlang/", set_language, name="set_language"),
    re_path(r"^en/(?P<rest>.*)$", english_prefix),
]
urlpatterns += i18n_patterns(
    path("", include("apps.selfservice.urls")),
    prefix_default_language=False,
)
