"""Opening an IMAP connection: TCP (to the address the SSRF guard checked), TLS or STARTTLS,
LOGIN (or AUTHENTICATE PLAIN for non-ASCII credentials, OAUTHBEARER / XOAUTH2 for OAuth2
accounts), CAPABILITY, NAMESPACE, with every read
bounded and the whole set-up under a deadline; the result is a connection.Session."""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import time

import imapclient
from imapclient import exceptions as imapclient_errors

from .connection import (
    DEFAULT_MAX_LITERAL,
    SETUP_TIMEOUTS,
    Session,
    _close_quietly,
    classify_os_error,
    too_large,
)
from .errors import EngineError, ErrorCode, TransientError
from .model import Endpoint, Security

log = logging.getLogger("imapcopy.engine")

SETUP_MAX_LINE = 64 * 1024  # what imaplib reads: greeting, STARTTLS, LOGIN, CAPABILITY, NAMESPACE, LOGOUT


SETUP_MAX_LITERAL = 64 * 1024


SETUP_MAX_BYTES = 1024 * 1024  # all of it together, per connection


# --------------------------------------------------------------------------- connecting
def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=endpoint.ca_file)
    if endpoint.ca_file:
        ctx.load_default_certs()
    if not endpoint.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Client(imapclient.IMAPClient):
    """IMAPClient that may TCP-connect to a pre-resolved address while verifying `host`."""

    def __init__(self, *args, connect_address: str | None = None, side: str | None = None, **kwargs) -> None:
        self._connect_address = connect_address
        self._side = side
        self.setup_deadline: float | None = kwargs.pop("setup_deadline", None)
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self):
        address = self._connect_address or self.host
        timeout = getattr(self._timeout, "connect", None)
        deadline = time.monotonic() + SETUP_TIMEOUTS * (timeout or 60.0)
        if self.setup_deadline is not None:
            deadline = min(deadline, self.setup_deadline)
        if self.ssl:
            return _TLSIMAP4(self.host, self.port, address, self.ssl_context, timeout, self._side, deadline)
        return _PlainIMAP4(self.host, self.port, address, timeout, self._side, deadline)


class _BoundedReads(imaplib.IMAP4):
    """imaplib reads with bounds: imaplib would read any announced literal whole into memory, and
    turns an over-long line into an error that imapclient reports as a failed login."""

    _side: str | None = None
    _setup_bytes = 0
    deadline: float | None = None  # time.monotonic() by which the current exchange must be over

    def _count(self, n: int) -> None:
        self._setup_bytes += n
        if self._setup_bytes > SETUP_MAX_BYTES:
            raise too_large("an answer that never ends", self._side)

    def _chunk(self, most: int, until: bytes | None) -> bytes:
        """What is buffered or arrives next (at most `most` bytes, up to `until`), checking the deadline."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TransientError(ErrorCode.TIMEOUT, "the server answers too slowly", self._side)
        available = self.file.peek(1)[:most]
        if until is not None and until in available:
            available = available[: available.index(until) + 1]
        return self.file.read(len(available)) if available else b""

    def readline(self) -> bytes:
        parts, size = [], 0
        while size <= SETUP_MAX_LINE:
            chunk = self._chunk(SETUP_MAX_LINE + 1 - size, b"\n")
            parts.append(chunk)
            size += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                break
        self._count(size)
        if size > SETUP_MAX_LINE:
            raise too_large("a line that never ends", self._side)
        return b"".join(parts)

    def read(self, size: int) -> bytes:
        if size > SETUP_MAX_LITERAL:
            raise too_large(f"a literal of {size} bytes", self._side)
        self._count(size)
        parts, got = [], 0
        while got < size:
            chunk = self._chunk(size - got, None)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class _PlainIMAP4(_BoundedReads):
    def __init__(self, host: str, port: int, address: str, timeout, side: str | None, deadline: float) -> None:
        self._address, self._connect_timeout, self._side, self.deadline = address, timeout, side, deadline
        super().__init__(host, port)

    def _create_socket(self, timeout=None):
        return socket.create_connection((self._address, self.port), self._connect_timeout)


class _TLSIMAP4(_BoundedReads):
    def __init__(self, host, port, address, context, timeout, side, deadline: float) -> None:
        self._address, self._context, self._connect_timeout, self._side = address, context, timeout, side
        self.deadline = deadline
        super().__init__(host, port)

    def _create_socket(self, timeout=None):
        sock = socket.create_connection((self._address, self.port), self._connect_timeout)
        try:
            return self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def connect(endpoint: Endpoint, side: str | None, setup_deadline: float | None = None) -> Session:
    """Connect, secure and log in; raise EngineError with the matching code.  The greeting and
    login may take SETUP_TIMEOUTS socket timeouts, or until `setup_deadline` (time.monotonic())."""
    # Loading the system CA store costs ~40 ms: only when TLS is actually used.
    context = _ssl_context(endpoint) if endpoint.security != Security.NONE else None
    try:
        client = _Client(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.security == Security.TLS,
            ssl_context=context,
            timeout=endpoint.timeout,
            connect_address=endpoint.connect_address,
            side=side,
            setup_deadline=setup_deadline,
        )
    except imaplib.IMAP4.error as exc:
        # imaplib raises this when the greeting is not an IMAP greeting.
        raise EngineError(ErrorCode.NOT_IMAP, "the server did not greet like an IMAP server", side) from exc
    except Exception as exc:
        err = classify_os_error(exc, side)
        if err.code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.RESPONSE_TOO_LARGE):
            err = EngineError(ErrorCode.NOT_IMAP, "the server did not greet like an IMAP server", side)
        raise err from exc
    # imapclient logs the whole protocol at debug level; keep message bodies out of the logs.
    client._imap.debug = 0
    try:
        if endpoint.security == Security.STARTTLS:
            try:
                client.starttls(context)
            except imapclient_errors.CapabilityError as exc:
                raise EngineError(ErrorCode.TLS_ERROR, "the server does not offer STARTTLS", side) from exc
        if endpoint.oauth_token is not None:
            _authenticate_with_token(client, endpoint.login, endpoint.oauth_token, side)
        else:
            try:
                _login(client, endpoint.login, endpoint.password, side)
            except imapclient_errors.LoginError as exc:
                raise EngineError(ErrorCode.AUTH_FAILED, "the server rejected the login or password", side) from exc
        capabilities = {c.decode().upper() for c in client.capabilities()}
    except EngineError:
        _close_quietly(client)
        raise
    except Exception as exc:
        _close_quietly(client)
        raise classify_os_error(exc, side) from exc
    client._imap.deadline = None  # set up: from now on, the socket timeout alone
    session = Session(client, side, capabilities)
    session.max_literal = endpoint.max_literal_bytes or DEFAULT_MAX_LITERAL
    session.max_folders = endpoint.max_folders
    return session


def _login(client: imapclient.IMAPClient, login: str, password: str, side: str | None) -> None:
    """LOGIN as always for ASCII credentials. imaplib sends LOGIN's arguments as ASCII quoted
    strings and fails on any other character (UnicodeEncodeError, which looked like a protocol
    error), so other credentials go as UTF-8: AUTHENTICATE PLAIN (RFC 4616) where the server
    offers it, else LOGIN with both as literals (any octet but NUL is allowed there)."""
    if login.isascii() and password.isascii():
        client.login(login, password)
    elif b"AUTH=PLAIN" in {c.upper() for c in client.capabilities()}:
        client.plain_login(login, password)
    else:
        _login_with_literals(client, login.encode(), password.encode(), side)


class _LoginLiterals:
    """What imaplib sends at each continuation request of `LOGIN {n}`: the login and the next
    literal's size, then the password (imaplib takes a bound method, called once per request)."""

    def __init__(self, login: bytes, password: bytes) -> None:
        self._parts = [login + b" {%d}" % len(password), password]

    def next_part(self, _continuation: bytes) -> bytes:
        return self._parts.pop(0) if self._parts else b""


def _login_with_literals(client: imapclient.IMAPClient, login: bytes, password: bytes, side: str | None) -> None:
    imap = client._imap
    imap.literal = _LoginLiterals(login, password).next_part
    try:
        status, _data = imap._simple_command("LOGIN", b"{%d}" % len(login))
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        # BAD: the server's parser refuses the characters themselves, whatever the password.
        raise EngineError(
            ErrorCode.AUTH_UNSUPPORTED_CHARACTERS, "the server refuses non-ASCII logins or passwords", side
        ) from exc
    finally:
        imap.literal = None
    if status != "OK":
        raise imapclient_errors.LoginError("LOGIN refused")
    imap.state = "AUTH"


# --------------------------------------------------------------------------- OAuth2
class _BearerExchange:
    """imaplib's AUTHENTICATE callback for OAUTHBEARER (RFC 7628) and XOAUTH2.  The first
    challenge gets the initial response.  A refusal comes as a second challenge carrying a JSON
    error (`{"status": "401", ...}`): it is kept for the log, and answered as each mechanism
    requires (RFC 7628 3.2.3: a single 0x01; XOAUTH2: an empty line) so that the server ends the
    exchange with its tagged NO instead of the connection hanging."""

    def __init__(self, initial: bytes, after_error: bytes) -> None:
        self._initial = initial
        self._after_error = after_error
        self.sent = False
        self.error: bytes = b""

    def __call__(self, challenge: bytes) -> bytes:
        if not self.sent:
            self.sent = True
            return self._initial
        self.error = challenge[:512]
        return self._after_error


def bearer_exchange(mechanism: str, login: str, token: str) -> _BearerExchange:
    bearer = f"auth=Bearer {token}\x01\x01"
    if mechanism == "OAUTHBEARER":
        # The authorization identity (RFC 5801 gs2-header): "," and "=" escaped as =2C and =3D.
        identity = login.replace("=", "=3D").replace(",", "=2C")
        return _BearerExchange(f"n,a={identity},\x01{bearer}".encode(), b"\x01")
    return _BearerExchange(f"user={login}\x01{bearer}".encode(), b"")


def _authenticate_with_token(client: imapclient.IMAPClient, login: str, oauth_token, side: str | None) -> None:
    """AUTHENTICATE with a bearer token: OAUTHBEARER, the standard, where offered, else XOAUTH2
    (Gmail, Microsoft 365, Yahoo).  The token is asked for now, at each connection, so that a
    copy of hours always presents one its provider renewed in time."""
    offered = {c.decode().upper() for c in client.capabilities()}
    mechanism = next((m for m in ("OAUTHBEARER", "XOAUTH2") if f"AUTH={m}" in offered), None)
    if mechanism is None:
        raise EngineError(ErrorCode.OAUTH_UNSUPPORTED, "the server offers neither OAUTHBEARER nor XOAUTH2", side)
    token = _token(oauth_token, side)
    if _bearer_login(client, mechanism, login, token, side):
        return
    # The token may have been revoked or retired (a provider may retire the previous access token
    # when it renews): the keeper renews it, which also tells a withdrawn consent (its own code)
    # from a token the server refuses whatever its age. One more try with the current token.
    invalidate = getattr(oauth_token, "invalidate", None)
    if invalidate is not None:
        invalidate(token)
    renewed = _token(oauth_token, side)
    if renewed == token or not _bearer_login(client, mechanism, login, renewed, side):
        raise EngineError(ErrorCode.OAUTH_REJECTED, f"the server refused the {mechanism} token", side)


def _token(oauth_token, side: str | None) -> str:
    try:
        return oauth_token()
    except EngineError as exc:
        exc.side = exc.side or side
        raise


def _bearer_login(client: imapclient.IMAPClient, mechanism: str, login: str, token: str, side: str | None) -> bool:
    exchange = bearer_exchange(mechanism, login, token)
    try:
        client._imap.authenticate(mechanism, exchange)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error:
        # The server's JSON error names a status and a scope, never the token: safe to log.
        log.info("%s: %s refused the token (%s)", side or "server", mechanism, exchange.error.decode(errors="replace"))
        return False
    finally:
        client._imap.literal = None
    return True
