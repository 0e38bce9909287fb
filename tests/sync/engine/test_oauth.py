"""OAuth2 accounts against a real authorization server (django-oauth-toolkit on loopback) and
Dovecots that check each bearer token by RFC 7628 introspection there: OAUTHBEARER and XOAUTH2
logins, refused tokens, a copy that outlives several access tokens, consent revoked mid-copy."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile
from apps.mailboxes.oauth_tokens import OAuthTokens, TokenKeeper
from apps.sync.engine import CopyOptions, EngineError, ErrorCode, MemoryCheckpointStore, copy_mailbox, probe_account
from tests.support.oauth_server import OAuthServer
from tests.support.proxy import TcpProxy

from .conftest import DOT_TO_SLASH, Box, new_box

# The test server speaks plain HTTP on loopback; Authlib refuses that unless told it is a test.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

pytestmark = pytest.mark.slow
SHORT_TOKEN_SECONDS = 4


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    # Access tokens of a few seconds: every copy below outlives several of them.
    with OAuthServer(access_token_seconds=SHORT_TOKEN_SECONDS) as server:
        yield server


@pytest.fixture(scope="module")
def portal_client(oauth):
    return oauth.register_client("imapcopy-portal", redirect_uris=["http://127.0.0.1/callback"])


@pytest.fixture(scope="module")
def oauth_dot(oauth) -> Iterator[DovecotServer]:
    with DovecotServer(Profile.dot(), pool_size=6, oauth2_introspection_url=oauth.introspection_url) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_slash(oauth) -> Iterator[DovecotServer]:
    with DovecotServer(Profile.slash(), pool_size=6, oauth2_introspection_url=oauth.introspection_url) as server:
        yield server


def signed_in(box: Box, oauth: OAuthServer, client, expires_in: int | None = None) -> TokenKeeper:
    """The tokens a finished sign-in gives the portal, kept fresh by a TokenKeeper."""
    oauth.add_user(box.user.login, "not-used-by-the-copy")
    tokens = OAuthTokens.from_response(oauth.issue_tokens(box.user.login, client, expires_in=expires_in))
    return TokenKeeper(
        token_url=oauth.token_url, client_id=client.client_id, client_secret=client.client_secret, tokens=tokens
    )


def token_endpoint(box: Box, keeper, **kwargs):
    """The box's endpoint with no password at all: only the token can open it."""
    return dataclasses.replace(box.endpoint(**kwargs), password="", oauth_token=keeper)


def logins(server: DovecotServer, login: str, method: str) -> int:
    return server.log_file.read_text().count(f"Login: user=<{login}>, method={method}")


def test_a_copy_between_two_oauth_accounts_is_exact_and_logs_in_with_oauthbearer(
    oauth, portal_client, oauth_dot, oauth_slash
):
    src, dst = new_box(oauth_dot), new_box(oauth_slash)
    mails = mail.build_corpus(seed=61, messages=40)
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    passwords_before = logins(oauth_dot, src.user.login, "PLAIN")  # the upload's own login
    result = copy_mailbox(
        token_endpoint(src, signed_in(src, oauth, portal_client)),
        token_endpoint(dst, signed_in(dst, oauth, portal_client)),
        options=CopyOptions(),
        checkpoints=MemoryCheckpointStore(),
    )
    assert result.status == "finished", result
    # Dovecot offers both: the standard mechanism is the one used, never a password (the test's
    # own look at the mailboxes below logs in with one).
    assert logins(oauth_dot, src.user.login, "OAUTHBEARER") >= 1
    assert logins(oauth_slash, dst.user.login, "OAUTHBEARER") >= 1
    assert logins(oauth_dot, src.user.login, "PLAIN") == passwords_before
    assert logins(oauth_slash, dst.user.login, "PLAIN") == 0
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_a_server_offering_xoauth2_alone_is_logged_in_with_xoauth2(oauth, portal_client):
    # Microsoft 365 offers AUTH=XOAUTH2 and no OAUTHBEARER.
    with DovecotServer(
        Profile.slash(), pool_size=2, oauth2_introspection_url=oauth.introspection_url, oauth2_mechanisms=("xoauth2",)
    ) as server:
        box = new_box(server)
        mail.upload(box.account, mail.build_corpus(seed=62, messages=5), [("INBOX",)])
        summary = probe_account(token_endpoint(box, signed_in(box, oauth, portal_client)))
        assert summary.messages == 5
        assert logins(server, box.user.login, "XOAUTH2") == 1


def test_a_token_the_server_refuses_fails_with_its_own_code_and_never_shows_the_token(oauth):
    # A server of its own: Dovecot slows every later login from an address that failed one
    # (its auth penalty), which would eat the short tokens of the other tests.
    with DovecotServer(Profile.slash(), pool_size=1, oauth2_introspection_url=oauth.introspection_url) as server:
        box = new_box(server)
        token = "forged-token-0123456789"
        with pytest.raises(EngineError) as caught:
            probe_account(token_endpoint(box, lambda: token))
    assert caught.value.code == ErrorCode.OAUTH_REJECTED
    assert token not in str(caught.value)


def test_a_server_without_oauth_fails_with_oauth_unsupported_before_any_token_is_asked_for(slash_server):
    box = new_box(slash_server)
    asked = []
    with pytest.raises(EngineError) as caught:
        probe_account(token_endpoint(box, lambda: asked.append(1) or "token"))
    assert caught.value.code == ErrorCode.OAUTH_UNSUPPORTED
    assert asked == []


class Dropper:
    """Once the copy is under way (`started` set), cuts every connection through `proxy` every
    `period` seconds, as a flaky network would."""

    def __init__(self, proxy: TcpProxy, period: float, started: threading.Event) -> None:
        self.proxy, self.period, self.started = proxy, period, started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.started.wait(0.05):
            if self._stop.is_set():
                return
        while not self._stop.wait(self.period):
            self.proxy.drop_connections()

    def __enter__(self) -> Dropper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_copy_outlives_several_access_tokens_through_forced_reconnects(oauth, portal_client, oauth_dot, oauth_slash):
    src, dst = new_box(oauth_dot), new_box(oauth_slash)
    mails = mail.build_corpus(seed=63, messages=100, sizes=(500, 4000))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    source_keeper = signed_in(src, oauth, portal_client)
    destination_keeper = signed_in(dst, oauth, portal_client)
    events = []
    started = time.monotonic()
    copying = threading.Event()
    with TcpProxy("127.0.0.1", dst.server.port) as proxy, Dropper(proxy, period=3.0, started=copying):
        destination = dataclasses.replace(token_endpoint(dst, destination_keeper), port=proxy.port)
        # 10 messages a second: the copy takes ~12 s, three times the tokens' lifetime.
        result = copy_mailbox(
            token_endpoint(src, source_keeper, max_messages_per_second=10),
            destination,
            options=CopyOptions(batch_bytes=16 * 1024),
            checkpoints=MemoryCheckpointStore(),
            on_event=events.append,
            on_progress=lambda progress: progress.messages_copied and copying.set(),
        )
        drops = proxy.drops
    assert result.status == "finished", "\n".join(map(str, [result.error_code, result.error_detail, *events]))
    assert time.monotonic() - started > 2 * SHORT_TOKEN_SECONDS  # the premise: tokens expired meanwhile
    assert drops >= 2
    assert source_keeper.refreshes >= 2 and destination_keeper.refreshes >= 1
    assert logins(oauth_slash, dst.user.login, "OAUTHBEARER") >= drops  # every reconnect logged in anew
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []


def test_consent_revoked_mid_copy_fails_with_its_code_and_a_new_sign_in_resumes_without_duplicates(
    oauth, portal_client, oauth_dot, oauth_slash
):
    src, dst = new_box(oauth_dot), new_box(oauth_slash)
    mails = mail.build_corpus(seed=64, messages=100, sizes=(500, 3000))
    mail.upload(src.account, mails, mail.DEFAULT_FOLDERS)
    checkpoints = MemoryCheckpointStore()
    source_keeper = signed_in(src, oauth, portal_client)
    copied = []

    def revoke_after_some_messages(progress) -> None:
        copied.append(progress.messages_copied)

    with TcpProxy("127.0.0.1", src.server.port) as proxy:
        revoker_done = threading.Event()

        def revoke_then_cut() -> None:
            while not copied or copied[-1] < 20:
                time.sleep(0.05)
            oauth.revoke_consent(src.user.login)  # the customer pressed "Remove access"
            proxy.drop_connections()  # the next connection needs a token the provider will not renew
            revoker_done.set()

        revoker = threading.Thread(target=revoke_then_cut, daemon=True)
        revoker.start()
        result = copy_mailbox(
            dataclasses.replace(token_endpoint(src, source_keeper, max_messages_per_second=10), port=proxy.port),
            token_endpoint(dst, signed_in(dst, oauth, portal_client)),
            options=CopyOptions(batch_bytes=8 * 1024),
            checkpoints=checkpoints,
            on_progress=revoke_after_some_messages,
        )
        revoker.join(30)
    assert revoker_done.is_set(), (copied[-5:], result)
    assert result.status == "failed", result
    assert result.error_code == ErrorCode.OAUTH_CONSENT_REVOKED
    assert result.error_side == "source"
    assert 20 <= result.messages_copied < len(mails)

    # The customer signs in again: new tokens (of a real provider's hour: Dovecot may now slow
    # this address's logins down after the refused ones), same checkpoints.
    again = signed_in(src, oauth, portal_client, expires_in=3600)
    rerun = copy_mailbox(
        token_endpoint(src, again),
        token_endpoint(dst, signed_in(dst, oauth, portal_client)),
        options=CopyOptions(),
        checkpoints=checkpoints,
    )
    assert rerun.status == "finished", rerun
    assert rerun.copied_this_run == len(mails) - result.messages_copied  # resumed, nothing twice
    assert mail.compare(mail.snapshot(src.account), mail.snapshot(dst.account), DOT_TO_SLASH) == []
