"""Staff's check that a provider's IMAP server answers: reachable, TLS, greeting, capabilities.

The host is vetted like a customer's (a provider's server is typed by staff, but a compromised or
careless staff account must not make the portal probe the internal network) and the check connects
to the address that was vetted. Only a short outcome is shown: never the server's own text (its
greeting, banners or error lines), which would turn the check into a banner grabber."""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from dataclasses import dataclass

import imapclient
from django.conf import settings
from django.utils.translation import gettext

from apps.mailboxes.netguard import HostNotAllowed, HostNotFound, resolve_allowed_address
from apps.providers.models import Provider, Security

# The extensions the copy engine uses when a server has them.
ENGINE_CAPABILITIES = (
    "LITERAL+",
    "LITERAL-",
    "MULTIAPPEND",
    "UIDPLUS",
    "SPECIAL-USE",
    "STATUS=SIZE",
    "CONDSTORE",
    "OBJECTID",
    "X-GM-EXT-1",
    "COMPRESS=DEFLATE",
    "AUTH=PLAIN",
)


@dataclass(frozen=True)
class ServerCheck:
    ok: bool
    summary: str


def check_provider_server(provider: Provider, *, timeout: float = 10.0) -> ServerCheck:
    # The engine's client connects to a given address while checking the certificate against the
    # host name, with bounded reads: a hostile server cannot make the web process read forever.
    from apps.sync.engine.opening import _Client

    if not provider.imap_host:
        return ServerCheck(False, gettext("No server: customers type their own."))
    try:
        address = resolve_allowed_address(
            provider.imap_host, provider.imap_port, settings.IMAPCOPY_ALLOWED_PRIVATE_NETWORKS
        )
    except HostNotFound:
        return ServerCheck(False, gettext("The server name does not resolve."))
    except HostNotAllowed:
        return ServerCheck(False, gettext("Not allowed: the server name points to a private or reserved address."))
    context = ssl.create_default_context(cafile=settings.IMAPCOPY_CA_FILE)
    if settings.IMAPCOPY_CA_FILE:
        context.load_default_certs()
    tls = provider.security != Security.NONE
    try:
        client = _Client(
            provider.imap_host,
            port=provider.imap_port,
            ssl=provider.security == Security.TLS,
            ssl_context=context,
            timeout=timeout,
            connect_address=address,
        )
    except ssl.CertificateError:
        return ServerCheck(False, gettext("Reachable, but its certificate is not valid for this name."))
    except ssl.SSLError as exc:
        return ServerCheck(False, gettext("Reachable, but TLS failed (%(reason)s).") % {"reason": _reason(exc)})
    except ConnectionRefusedError:
        return ServerCheck(False, gettext("Not reachable: the connection was refused."))
    except TimeoutError:
        return ServerCheck(False, gettext("Not reachable: no answer in time."))
    except (OSError, EOFError):
        return ServerCheck(False, gettext("Not reachable: the connection failed."))
    except Exception:  # imaplib's or the engine's error on a greeting that is not IMAP's
        return ServerCheck(False, gettext("Reachable, but it does not greet like an IMAP server."))
    client._imap.debug = 0
    try:
        if provider.security == Security.STARTTLS:
            client.starttls(context)
        protocol = cipher = None
        if tls:
            protocol, cipher = client.socket().version(), client.socket().cipher()[0]
        capabilities = {c.decode("ascii", "replace").upper() for c in client.capabilities()}
    except ssl.CertificateError:
        return ServerCheck(False, gettext("Reachable, but its certificate is not valid for this name."))
    except ssl.SSLError as exc:
        return ServerCheck(False, gettext("Reachable, but TLS failed (%(reason)s).") % {"reason": _reason(exc)})
    except imapclient.exceptions.CapabilityError:
        return ServerCheck(False, gettext("IMAP greeting ok, but the server does not offer STARTTLS."))
    except (imapclient.exceptions.IMAPClientError, imaplib.IMAP4.error):
        return ServerCheck(False, gettext("IMAP greeting ok, but the server's answers are not valid IMAP."))
    except Exception:  # lost connection, timeout, an over-long answer
        return ServerCheck(False, gettext("IMAP greeting ok, but the connection was lost."))
    finally:
        _close_quietly(client)
    present = [name for name in ENGINE_CAPABILITIES if name in capabilities]
    missing = [name for name in ENGINE_CAPABILITIES if name not in capabilities]
    values = {
        "protocol": protocol,
        "cipher": cipher,
        "present": ", ".join(present) or "-",
        "missing": ", ".join(missing) or "-",
    }
    if tls:
        summary = gettext(
            "Reachable; TLS ok (%(protocol)s, %(cipher)s); IMAP greeting ok; extensions used by the copy: "
            "%(present)s; absent: %(missing)s."
        )
    else:
        summary = gettext(
            "Reachable; no TLS; IMAP greeting ok; extensions used by the copy: %(present)s; absent: %(missing)s."
        )
    return ServerCheck(True, summary % values)


def _reason(exc: ssl.SSLError) -> str:
    # OpenSSL's own reason code (CERTIFICATE_VERIFY_FAILED, WRONG_VERSION_NUMBER ...), not the
    # server's words.
    return str(exc.reason or type(exc).__name__)


def _close_quietly(client) -> None:
    try:
        client.logout()
    except Exception:  # the check's outcome is known; a failed goodbye changes nothing
        with contextlib.suppress(Exception):  # already closed
            client.shutdown()
