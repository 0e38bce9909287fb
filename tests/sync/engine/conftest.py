"""Real Dovecot servers for the engine tests: started once per session, a fresh user per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from apps.localmail import mail
from apps.localmail.dovecot import DovecotServer, Profile, User
from apps.sync.engine import Endpoint, Security

# Source special folders (dot profile, INBOX. prefix) -> where they land on the slash profile.
DOT_TO_SLASH = {("Sent",): ("Sent Items",), ("Trash",): ("Deleted Items",), ("Junk",): ("Junk E-mail",)}
SLASH_TO_DOT = {v: k for k, v in DOT_TO_SLASH.items()}


@dataclass
class Box:
    """One account on one test server, seen by the tests (Account) and by the engine (Endpoint)."""

    server: DovecotServer
    user: User
    account: mail.Account

    def endpoint(self, security: Security = Security.NONE, **kwargs) -> Endpoint:
        port = self.server.tls_port if security == Security.TLS else self.server.port
        if security != Security.NONE:
            kwargs.setdefault("ca_file", str(self.server.cert_file))
        kwargs.setdefault("timeout", 20.0)
        host = kwargs.pop("host", "localhost" if security != Security.NONE else "127.0.0.1")
        return Endpoint(host, port, security, self.user.login, self.user.password, **kwargs)


def new_box(server: DovecotServer, **user_options) -> Box:
    user = server.new_user(**user_options)
    p = server.profile
    account = mail.Account("127.0.0.1", server.port, user.login, user.password, p.prefix, p.separator)
    return Box(server, user, account)


def _server(profile: Profile) -> Iterator[DovecotServer]:
    with DovecotServer(profile) as server:
        yield server


@pytest.fixture(scope="session")
def dot_server() -> Iterator[DovecotServer]:
    yield from _server(Profile.dot())


@pytest.fixture(scope="session")
def slash_server() -> Iterator[DovecotServer]:
    yield from _server(Profile.slash())


@pytest.fixture(scope="session")
def plain_server() -> Iterator[DovecotServer]:
    yield from _server(Profile.plain())


@pytest.fixture(scope="session")
def limited_server() -> Iterator[DovecotServer]:
    yield from _server(Profile.limited(append_limit=100_000))


@pytest.fixture
def src(dot_server) -> Box:
    return new_box(dot_server)


@pytest.fixture
def dst(slash_server) -> Box:
    return new_box(slash_server)


@pytest.fixture(scope="session")
def corpus() -> list[mail.Mail]:
    return mail.build_corpus(seed=3, messages=80)
