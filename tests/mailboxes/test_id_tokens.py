"""The ID token decides which mailbox a sign-in names: its signature, issuer, audience, nonce and
expiry are all checked (the provider's key set is put in the cache, as a first sign-in leaves it)."""

import time

import pytest
from django.core.cache import cache
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from apps.mailboxes import oauth

CLIENT_ID = "1234-portal.apps.googleusercontent.com"


@pytest.fixture
def google(settings):
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    settings.IMAPCOPY_OAUTH = {
        **settings.IMAPCOPY_OAUTH,
        "google": {**settings.IMAPCOPY_OAUTH["google"], "client_id": CLIENT_ID, "client_secret": "s"},
    }
    config = oauth.service_config("google")
    cache.set(f"{settings.IMAPCOPY_INSTANCE}:oauth-jwks:google", KeySet([key]).as_dict(private=False), 60)
    yield config, key
    cache.clear()


def id_token(key, **claims) -> str:
    values = {
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "nonce": "n-1",
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
        "email": "alice@example.com",
        "email_verified": True,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": "k1"}, values, key)


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
def test_google_id_tokens_of_either_issuer_spelling_are_accepted(google, issuer):
    config, key = google
    claims = oauth.verify_id_token(config, id_token(key, iss=issuer), "n-1")
    assert claims["email"] == "alice@example.com"


@pytest.mark.parametrize(
    ("claims", "nonce"),
    [
        ({"iss": "https://accounts.evil.example"}, "n-1"),  # another issuer
        ({"aud": "someone-elses-client"}, "n-1"),  # issued to another application
        ({}, "n-2"),  # not the answer to this sign-in (replayed)
        ({"exp": int(time.time()) - 3600}, "n-1"),  # expired
    ],
)
def test_id_tokens_that_are_not_for_this_sign_in_are_refused(google, claims, nonce):
    config, key = google
    with pytest.raises(oauth.SignInFailed) as refused:
        oauth.verify_id_token(config, id_token(key, **claims), nonce)
    assert refused.value.code == "oauth_failed"


def test_an_id_token_signed_by_another_key_is_refused(google, monkeypatch):
    config, key = google
    # The key set fetched again (after an unknown signature) holds the provider's keys only.
    monkeypatch.setattr(oauth, "_key_set", lambda _config, refresh=False: KeySet([key]))
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    with pytest.raises(oauth.SignInFailed) as refused:
        oauth.verify_id_token(config, id_token(stranger), "n-1")
    assert refused.value.code == "oauth_failed"
