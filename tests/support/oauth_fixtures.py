"""Fixtures for OAuth2 accounts in portal tests: the tests' authorization server, a Dovecot that
checks bearer tokens there, settings that point the portal's Google and Microsoft services at it,
and mailboxes that exist on both (same address as IMAP login, OAuth user name and ID token email).

A plugin of tests/conftest.py: every test module may ask for these fixtures by name.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from apps.localmail.dovecot import DovecotServer, Profile, User
from tests.support.oauth_server import OAuthServer
from tests.support.oauth_server.server import Client

TOKEN_SECONDS = 20


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    with OAuthServer(access_token_seconds=TOKEN_SECONDS) as server:
        yield server


@pytest.fixture(scope="session")
def oauth_dovecot(oauth_server) -> Iterator[DovecotServer]:
    """Offers AUTH=OAUTHBEARER and AUTH=XOAUTH2 (and still passwords, for the tests' own looks)."""
    with DovecotServer(Profile.slash(), pool_size=0, oauth2_introspection_url=oauth_server.introspection_url) as server:
        yield server


@dataclass
class OAuthPortal:
    """The portal's side of the set-up: its client at the server and the providers that use it."""

    server: OAuthServer
    client: Client
    google: object  # Provider signing in with "google"
    microsoft: object  # Provider signing in with "microsoft"


def service_settings(server: OAuthServer, client: Client, **extra) -> dict:
    return {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "authorize_url": server.authorize_url,
        "token_url": server.token_url,
        "jwks_url": server.jwks_url,
        "issuer": server.issuer,
        "scopes": "openid email mail offline_access",
        **extra,
    }


def service_environment(server: OAuthServer, client: Client) -> dict[str, str]:
    """The same settings for a worker process (environment variables)."""
    values = {"IMAPCOPY_OAUTH_ALLOW_HTTP": "1", "AUTHLIB_INSECURE_TRANSPORT": "1"}
    for service in ("GOOGLE", "MICROSOFT"):
        values.update(
            {
                f"IMAPCOPY_{service}_CLIENT_ID": client.client_id,
                f"IMAPCOPY_{service}_CLIENT_SECRET": client.client_secret,
                f"IMAPCOPY_{service}_AUTHORIZE_URL": server.authorize_url,
                f"IMAPCOPY_{service}_TOKEN_URL": server.token_url,
                f"IMAPCOPY_{service}_JWKS_URL": server.jwks_url,
                f"IMAPCOPY_{service}_ISSUER": server.issuer,
                f"IMAPCOPY_{service}_SCOPES": "openid email mail offline_access",
            }
        )
    return values


@pytest.fixture
def oauth_portal(oauth_server, oauth_dovecot, settings, monkeypatch, db) -> OAuthPortal:
    """Google and Microsoft both served by the tests' authorization server, with a provider of
    each whose IMAP server is the OAuth Dovecot. Worker processes started during the test see the
    same settings through the environment."""
    from apps.providers.models import Provider

    client = oauth_server.register_client(
        f"imapcopy-{secrets.token_hex(4)}", redirect_uris=[settings.SITE_URL + "/oauth/callback/"]
    )
    settings.IMAPCOPY_OAUTH_ALLOW_HTTP = True
    settings.IMAPCOPY_OAUTH = {
        "google": service_settings(oauth_server, client),
        "microsoft": service_settings(oauth_server, client, admin_consent_url=f"{oauth_server.url}/adminconsent"),
    }
    for name, value in service_environment(oauth_server, client).items():
        monkeypatch.setenv(name, value)
    common = dict(
        imap_host="127.0.0.1",
        imap_port=oauth_dovecot.port,
        security="none",
        role="both",
        is_active=True,
    )
    google = Provider.objects.create(name="Google (test)", slug="test-google", oauth_service="google", **common)
    microsoft = Provider.objects.create(
        name="Microsoft (test)", slug="test-microsoft", oauth_service="microsoft", **common
    )
    return OAuthPortal(oauth_server, client, google, microsoft)


@dataclass
class OAuthMailbox:
    user: User  # on the OAuth Dovecot; user.login is the address
    password: str  # at the authorization server (the customer's Google or Microsoft password)

    @property
    def address(self) -> str:
        return self.user.login


@pytest.fixture
def oauth_mailbox(oauth_server, oauth_dovecot):
    """Make mailboxes that exist at both: `oauth_mailbox("alice")` -> OAuthMailbox."""

    def make(name: str = "alice") -> OAuthMailbox:
        address = f"{name}-{secrets.token_hex(3)}@example.test"
        user = oauth_dovecot.new_user(login=address)
        password = secrets.token_urlsafe(12)
        oauth_server.add_user(address, password)
        return OAuthMailbox(user, password)

    return make
