"""Logins and passwords with accents or other non-ASCII characters log in (they failed with
protocol_error: imaplib sends LOGIN's arguments as ASCII). A real Dovecot server that accepts any
character in a user name."""

from __future__ import annotations

import secrets
import ssl

import pytest
from imapclient.exceptions import LoginError

from apps.localmail.dovecot import DovecotServer, Profile
from apps.sync.engine import Endpoint, EngineError, ErrorCode, Security
from apps.sync.engine.opening import _Client, _login_with_literals, connect

ANY_USER_NAME = "auth_username_chars =\n"
PASSWORD = "Mötörhead-€-пароль-密码"


@pytest.fixture(scope="module")
def plain_server():
    """AUTH=PLAIN advertised, as Dovecot does by default."""
    with DovecotServer(Profile(name="utf8-plain", extra_config=ANY_USER_NAME), pool_size=0) as server:
        yield server


def endpoint(server: DovecotServer, login: str, password: str) -> Endpoint:
    return Endpoint(
        "localhost", server.tls_port, Security.TLS, login, password, ca_file=str(server.cert_file), timeout=20.0
    )


def logs_in(server: DovecotServer, login: str, password: str) -> set[str]:
    session = connect(endpoint(server, login, password), "source")
    try:
        session.select(b"INBOX", readonly=True)
        return session.capabilities
    finally:
        session.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_a_password_with_accents_logs_in_with_authenticate_plain(plain_server):
    user = plain_server.new_user(PASSWORD)
    assert logs_in(plain_server, user.login, PASSWORD)


def test_a_login_with_accents_logs_in_with_authenticate_plain(plain_server):
    user = plain_server.new_user(PASSWORD, login=unique("jürgen.müller"))
    assert logs_in(plain_server, user.login, PASSWORD)


def literal_login(server: DovecotServer, login: str, password: str) -> _Client:
    """A connection logged in the way the engine does when the server does not offer AUTH=PLAIN
    (Dovecot always does: its LOGIN command goes through PLAIN internally)."""
    context = ssl.create_default_context(cafile=str(server.cert_file))
    client = _Client("localhost", port=server.tls_port, ssl=True, ssl_context=context, timeout=20.0)
    try:
        _login_with_literals(client, login.encode(), password.encode(), "source")
    except BaseException:
        client.shutdown()
        raise
    return client


def test_without_auth_plain_the_login_and_password_go_as_literals(plain_server):
    user = plain_server.new_user(PASSWORD, login=unique("zoë"))
    client = literal_login(plain_server, user.login, PASSWORD)
    try:
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
    finally:
        client.logout()
    with pytest.raises(LoginError):
        literal_login(plain_server, user.login, PASSWORD + "ß")


def test_a_wrong_non_ascii_password_is_a_refused_login(plain_server):
    user = plain_server.new_user(PASSWORD, login=unique("émile"))
    with pytest.raises(EngineError) as refused:
        connect(endpoint(plain_server, user.login, PASSWORD + "ß"), "source")
    assert refused.value.code == ErrorCode.AUTH_FAILED
