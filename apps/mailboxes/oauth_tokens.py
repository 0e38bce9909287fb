"""Access tokens kept fresh for a copy of hours (OAuth2 accounts, issue 15).

Plain Python: the worker builds one `TokenKeeper` per OAuth2 side of a run and hands it to the
engine as `Endpoint.oauth_token`; every (re)connection asks it for a token.  Authlib does the
RFC 6749 refresh; this module decides when to refresh, keeps refreshes one at a time, and turns
the provider's answers into the engine's error codes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from apps.sync.engine.errors import EngineError, ErrorCode, TransientError

# Answers that mean the grant itself is gone (RFC 6749 5.2): consent withdrawn, password changed,
# account closed or the client no longer allowed.  Anything else (5xx, timeouts, throttling) may
# pass: the engine retries it like a dropped connection.
GRANT_GONE = {"invalid_grant", "unauthorized_client", "invalid_client", "consent_required", "interaction_required"}


@dataclass
class OAuthTokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float  # time.time() seconds

    @classmethod
    def from_response(cls, answer: dict, previous_refresh_token: str = "") -> OAuthTokens:
        expires_at = answer.get("expires_at") or time.time() + float(answer.get("expires_in") or 3600)
        # Google keeps its refresh token; Microsoft (and the tests' server) send a new one each time.
        return cls(answer["access_token"], answer.get("refresh_token") or previous_refresh_token, float(expires_at))

    def as_dict(self) -> dict:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_at": self.expires_at}


class TokenKeeper:
    """Callable giving an access token valid for a while yet.  Thread-safe: the run's connections
    all ask it, and only one refresh is in flight at a time, because with rotating refresh tokens
    two refreshes with the same token would have the second refused (or both revoked)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        tokens: OAuthTokens,
        on_renewed: Callable[[OAuthTokens], None] | None = None,
        side: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens = tokens
        self._on_renewed = on_renewed
        self._side = side
        self._timeout = timeout
        self._lock = threading.Lock()
        self._lifetime = max(1.0, tokens.expires_at - time.time())
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"<TokenKeeper {self._side or ''} refreshes={self.refreshes}>"

    def _margin(self) -> float:
        # Renew ahead by a quarter of the token's lifetime, at most 5 minutes: an hour-long Google
        # or Microsoft token 5 minutes early, the tests' 20-second tokens 5 seconds early.
        return min(300.0, self._lifetime / 4)

    def __call__(self) -> str:
        with self._lock:
            if self._tokens.expires_at - time.time() <= self._margin():
                self._refresh()
            return self._tokens.access_token

    def invalidate(self, token: str) -> None:
        """The server refused `token` (revoked, or retired by a renewal): the next call renews."""
        with self._lock:
            if self._tokens.access_token == token:
                self._tokens.expires_at = 0.0

    def _refresh(self) -> None:
        if not self._tokens.refresh_token:
            raise EngineError(ErrorCode.OAUTH_CONSENT_REVOKED, "no refresh token to renew the access", self._side)
        session = OAuth2Session(
            self._client_id,
            self._client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method's name)
        )
        try:
            answer = session.refresh_token(
                self._token_url, refresh_token=self._tokens.refresh_token, timeout=self._timeout
            )
        except OAuthError as exc:
            if exc.error in GRANT_GONE:
                detail = f"the provider refused to renew the access ({exc.error})"
                raise EngineError(ErrorCode.OAUTH_CONSENT_REVOKED, detail, self._side) from exc
            raise TransientError(ErrorCode.NETWORK_ERROR, f"token renewal failed ({exc.error})", self._side) from exc
        except (requests.RequestException, ValueError) as exc:
            # ValueError: a 5xx page that is not JSON.
            raise TransientError(
                ErrorCode.NETWORK_ERROR, "the sign-in provider could not be reached", self._side
            ) from exc
        finally:
            session.close()
        renewed = OAuthTokens.from_response(dict(answer), self._tokens.refresh_token)
        self._lifetime = max(1.0, renewed.expires_at - time.time())
        self._tokens = renewed
        self.refreshes += 1
        if self._on_renewed is not None:
            self._on_renewed(renewed)


def tokens_to_secret(tokens: OAuthTokens) -> str:
    """What MailAccount keeps (encrypted) where a password account keeps its password."""
    return json.dumps(tokens.as_dict())


def tokens_from_secret(secret: str) -> OAuthTokens:
    values = json.loads(secret)
    return OAuthTokens(values["access_token"], values["refresh_token"], float(values["expires_at"]))
