"""The test-only endpoints of the tests' authorization server, guarded by a shared secret:
create a user, issue tokens without a browser, revoke a user's consent, make a user's "tenant"
forbid user consent (as Microsoft Entra tenants may)."""

import datetime
import hmac
import json
import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.http import HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import AccessToken, Application, Grant, IDToken, RefreshToken
from oauth2_provider.views import AuthorizationView

ADMIN_CONSENT_GROUP = "admin-consent-required"


def _guarded(view):
    @csrf_exempt
    def wrapper(request):
        given = request.headers.get("X-Control-Secret", "")
        if request.method != "POST" or not hmac.compare_digest(given, settings.CONTROL_SECRET):
            return HttpResponseForbidden()
        return view(request, json.loads(request.body or b"{}"))

    return wrapper


@_guarded
def create_user(request, data):
    user, _ = User.objects.get_or_create(username=data["username"])
    user.email = data.get("email", data["username"])
    user.set_password(data["password"])
    user.save()
    return JsonResponse({"username": user.username})


@_guarded
def issue_tokens(request, data):
    """What a completed sign-in would have given the portal, without the browser."""
    user = User.objects.get(username=data["username"])
    application = Application.objects.get(client_id=data["client_id"])
    seconds = data.get("expires_in") or settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"]
    access = AccessToken.objects.create(
        user=user,
        application=application,
        token=secrets.token_urlsafe(32),
        expires=timezone.now() + datetime.timedelta(seconds=seconds),
        scope=data.get("scope", "openid email mail offline_access"),
    )
    refresh = RefreshToken.objects.create(
        user=user, application=application, token=secrets.token_urlsafe(32), access_token=access
    )
    return JsonResponse(
        {
            "access_token": access.token,
            "refresh_token": refresh.token,
            "expires_in": seconds,
            "token_type": "Bearer",
            "scope": access.scope,
        }
    )


@_guarded
def revoke_consent(request, data):
    """The customer withdrew the application's access (Google: "Remove access"; Microsoft: "Revoke
    permissions"): every token and grant of the user goes, so a refresh now fails."""
    user = User.objects.get(username=data["username"])
    counts = {
        "refresh": RefreshToken.objects.filter(user=user).delete()[0],
        "access": AccessToken.objects.filter(user=user).delete()[0],
        "id": IDToken.objects.filter(user=user).delete()[0],
        "grants": Grant.objects.filter(user=user).delete()[0],
    }
    return JsonResponse(counts)


@_guarded
def require_admin_consent(request, data):
    user = User.objects.get(username=data["username"])
    group, _ = Group.objects.get_or_create(name=ADMIN_CONSENT_GROUP)
    user.groups.add(group)
    return JsonResponse({"username": user.username})


class TenantAwareAuthorizationView(AuthorizationView):
    """A user of a tenant that forbids user consent comes back with Microsoft Entra's error."""

    def get(self, request, *args, **kwargs):
        if request.user.is_authenticated and request.user.groups.filter(name=ADMIN_CONSENT_GROUP).exists():
            query = {
                "error": "consent_required",
                "error_description": "AADSTS90094: The grant requires admin permission.",
                "state": request.GET.get("state", ""),
            }
            return HttpResponseRedirect(f"{request.GET['redirect_uri']}?{urlencode(query)}")
        return super().get(request, *args, **kwargs)


@_guarded
def register_application(request, data):
    """Register (or update) a client: the portal (authorization code + PKCE, confidential, ID tokens
    signed RS256) or a resource server that introspects tokens (client credentials)."""
    grant = data.get("grant", Application.GRANT_AUTHORIZATION_CODE)
    application, _ = Application.objects.get_or_create(
        client_id=data["client_id"],
        defaults={"client_type": Application.CLIENT_CONFIDENTIAL, "authorization_grant_type": grant},
    )
    application.name = data["client_id"]
    application.client_type = Application.CLIENT_CONFIDENTIAL
    application.authorization_grant_type = grant
    application.client_secret = data["client_secret"]  # hashed on save
    application.redirect_uris = " ".join(data.get("redirect_uris", []))
    application.algorithm = Application.RS256_ALGORITHM
    application.skip_authorization = False
    application.save()
    return JsonResponse({"client_id": application.client_id})
