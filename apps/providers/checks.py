"""Staff's check that a provider's IMAP server answers: TLS handshake and capabilities."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import imapclient
from django.conf import settings

from apps.providers.models import Provider, Security


@dataclass(frozen=True)
class ServerCheck:
    ok: bool
    summary: str


def check_provider_server(provider: Provider, *, timeout: float = 10.0) -> ServerCheck:
    if not provider.imap_host:
        return ServerCheck(False, "no server: customers type their own")
    context = ssl.create_default_context(cafile=settings.IMAPCOPY_CA_FILE)
    try:
        client = imapclient.IMAPClient(
            provider.imap_host,
            port=provider.imap_port,
            ssl=provider.security == Security.TLS,
            ssl_context=context,
            timeout=timeout,
        )
        if provider.security == Security.STARTTLS:
            client.starttls(context)
        capabilities = sorted(c.decode() for c in client.capabilities())
        cipher = client.socket().cipher()[0] if provider.security != Security.NONE else "no TLS"
        client.logout()
    except ssl.SSLError as exc:
        return ServerCheck(False, f"TLS failed: {exc.reason or exc}")
    except TimeoutError:
        return ServerCheck(False, "timed out")
    except OSError as exc:
        return ServerCheck(False, f"connection failed: {exc.strerror or exc}")
    except imapclient.exceptions.IMAPClientError as exc:
        return ServerCheck(False, f"IMAP error: {exc}")
    return ServerCheck(True, f"{cipher}; {' '.join(capabilities)}")
