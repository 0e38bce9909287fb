"""Sign in with Google or Microsoft (issue 15): the authorization code flow with PKCE and
`state` (Authlib), the mailbox address proven by the ID token (joserfc: signature, audience,
issuer, nonce, expiry), and the TokenKeeper a copy or a connection test authenticates with.

Which service a provider uses is `Provider.oauth_service`; its client id, secret and endpoints
are settings (`settings.IMAPCOPY_OAUTH`).  A service without a client id and secret is off: the
provider then offers passwords only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from apps.mailboxes.oauth_tokens import OAuthTokens, TokenKeeper, tokens_from_secret
from apps.providers.models import Provider
from apps.sync.engine.errors import EngineError, ErrorCode

SERVICE_NAMES = {"google": "Google", "microsoft": "Microsoft"}
# What the customer sees on the button: "Sign in with Google".
SIGN_IN_WITH = _("Sign in with %(service)s")
FLOW_SECONDS = 15 * 60  # a sign-in left open longer than this must start again
JWKS_CACHE_SECONDS = 3600


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    jwks_url: str
    issuer: str
    scopes: str
    admin_consent_url: str = ""

    def __repr__(self) -> str:  # never the secret
        return f"<ServiceConfig {self.name} {self.client_id}>"

    @property
    def display_name(self) -> str:
        return SERVICE_NAMES.get(self.name, self.name)


def providers_for(role: str):
    return Provider.objects.for_source() if role == "source" else Provider.objects.for_destination()


def sign_in_choices(role: str) -> list[dict]:
    """The step's "Sign in with …" buttons: the providers of this side whose service is set up."""
    choices = []
    for provider in providers_for(role).exclude(oauth_service=""):
        config = service_config(provider.oauth_service)
        if config is not None:
            label = str(SIGN_IN_WITH) % {"service": config.display_name}
            choices.append({"provider": provider, "label": label, "service": config.name})
    return choices


def service_config(name: str) -> ServiceConfig | None:
    """The service's settings, or None when it is not configured (no client id or secret)."""
    values = settings.IMAPCOPY_OAUTH.get(name or "")
    if not values or not values.get("client_id") or not values.get("client_secret"):
        return None
    return ServiceConfig(name=name, **values)


class SignInFailed(Exception):
    """The sign-in did not give a usable account; `code` is translated when shown."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str
    nonce: str


@dataclass(frozen=True)
class SignedIn:
    address: str
    tokens: OAuthTokens

    def __repr__(self) -> str:
        return f"<SignedIn {self.address}>"


def _session(config: ServiceConfig, redirect_uri: str) -> OAuth2Session:
    return OAuth2Session(
        config.client_id,
        config.client_secret,
        scope=config.scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method's name)
    )


def authorization_request(config: ServiceConfig, redirect_uri: str) -> AuthorizationRequest:
    state, verifier, nonce = generate_token(32), generate_token(64), generate_token(32)
    extra = {"nonce": nonce, "prompt": "select_account"}
    if config.name == "google":
        # A refresh token is given only with offline access, and again only on a consent screen.
        extra.update(access_type="offline", prompt="consent select_account")
    client = _session(config, redirect_uri)
    try:
        url, _state = client.create_authorization_url(
            config.authorize_url, state=state, code_verifier=verifier, **extra
        )
    finally:
        client.close()
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier, nonce=nonce)


# Microsoft Entra's codes for a tenant whose administrator must consent first (AADSTS65001:
# no consent yet; AADSTS90094: the grant needs an administrator; AADSTS90099: not authorized).
ADMIN_CONSENT_CODES = ("AADSTS65001", "AADSTS90094", "AADSTS90099", "AADSTS900941")


def _refusal(query: dict) -> SignInFailed:
    error = query.get("error", "")
    description = query.get("error_description", "")
    if error in ("consent_required", "admin_consent_required") or any(c in description for c in ADMIN_CONSENT_CODES):
        return SignInFailed("oauth_admin_consent", error)
    if error == "access_denied":
        return SignInFailed("oauth_denied", error)
    return SignInFailed("oauth_failed", error[:40])


def complete_sign_in(config: ServiceConfig, redirect_uri: str, flow: dict, query: dict) -> SignedIn:
    """The provider sent the customer back with `query`: check it answers our request (state),
    trade the code for tokens (with the PKCE verifier) and read the address from the ID token."""
    if not flow.get("state") or query.get("state") != flow["state"]:
        # Not the answer to this browser's latest sign-in (an older tab, or a forged link): the
        # customer's remedy is the same as for a stale one, to sign in again.
        raise SignInFailed("oauth_expired", "state mismatch")
    if time.time() - float(flow.get("started", 0)) > FLOW_SECONDS:
        raise SignInFailed("oauth_expired")
    if "error" in query:
        raise _refusal(query)
    if not query.get("code"):
        raise SignInFailed("oauth_failed", "no code")
    client = _session(config, redirect_uri)
    try:
        answer = client.fetch_token(
            config.token_url,
            grant_type="authorization_code",
            code=query["code"],
            code_verifier=flow["code_verifier"],
            timeout=20,
        )
    except OAuthError as exc:
        raise _refusal({"error": exc.error, "error_description": exc.description or ""}) from exc
    except (requests.RequestException, ValueError) as exc:
        raise SignInFailed("oauth_unreachable") from exc
    finally:
        client.close()
    if not answer.get("refresh_token"):
        # Without it the copy would stop when the first access token expires, within the hour.
        raise SignInFailed("oauth_failed", "no refresh token")
    claims = verify_id_token(config, answer.get("id_token", ""), flow["nonce"])
    address = claims.get("email") or claims.get("preferred_username") or ""
    if "@" not in address or (config.name == "google" and claims.get("email_verified") is False):
        raise SignInFailed("oauth_no_address")
    return SignedIn(address=address.strip().lower(), tokens=OAuthTokens.from_response(dict(answer)))


def _key_set(config: ServiceConfig, refresh: bool = False) -> KeySet:
    cache_key = f"{settings.IMAPCOPY_INSTANCE}:oauth-jwks:{config.name}"
    document = None if refresh else cache.get(cache_key)
    if document is None:
        try:
            answer = requests.get(config.jwks_url, timeout=10)
            answer.raise_for_status()
            document = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInFailed("oauth_unreachable") from exc
        cache.set(cache_key, document, JWKS_CACHE_SECONDS)
    return KeySet.import_key_set(document)


def verify_id_token(config: ServiceConfig, id_token: str, nonce: str) -> dict:
    if not id_token:
        raise SignInFailed("oauth_no_address", "no ID token")
    try:
        try:
            token = jwt.decode(id_token, _key_set(config), algorithms=["RS256"])
        except JoseError:
            # The provider may have rotated its keys since we cached them.
            token = jwt.decode(id_token, _key_set(config, refresh=True), algorithms=["RS256"])
        claims = token.claims
        issuer = config.issuer.replace("{tid}", str(claims.get("tid", "")))
        # Google signs some ID tokens with the issuer written without its scheme
        # ("accounts.google.com"): both are its own.
        issuers = sorted({issuer, issuer.removeprefix("https://")} if config.name == "google" else {issuer})
        jwt.JWTClaimsRegistry(
            leeway=120,
            iss={"essential": True, "values": issuers},
            aud={"essential": True, "value": config.client_id},
            nonce={"essential": True, "value": nonce},
            exp={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError) as exc:
        raise SignInFailed("oauth_failed", f"ID token refused: {type(exc).__name__}") from exc
    return claims


def admin_consent_url(config: ServiceConfig, redirect_uri: str) -> str:
    """Where a Microsoft tenant's administrator grants the application for everyone."""
    if not config.admin_consent_url:
        return ""
    from urllib.parse import urlencode

    return f"{config.admin_consent_url}?{urlencode({'client_id': config.client_id, 'redirect_uri': redirect_uri})}"


def token_keeper(*, service: str, secret: str, side: str | None, on_renewed=None):
    """The engine's `oauth_token` for an account signed in with `service`."""
    config = service_config(service)
    if config is None:
        # The operator removed the service's settings since the customer signed in: the run
        # fails at its first connection, asking the customer to sign in again.
        def unavailable() -> str:
            raise EngineError(ErrorCode.OAUTH_CONSENT_REVOKED, f"{service} sign-in is no longer configured", side)

        return unavailable
    return TokenKeeper(
        token_url=config.token_url,
        client_id=config.client_id,
        client_secret=config.client_secret,
        tokens=tokens_from_secret(secret),
        on_renewed=on_renewed,
        side=side,
    )
