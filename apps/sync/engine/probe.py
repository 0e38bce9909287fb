"""probe_account(): the portal's live connection test (read-only)."""

from __future__ import annotations

import threading
import time

from .connection import connect
from .folders import list_folders
from .model import Endpoint, MailboxSummary


def probe_account(endpoint: Endpoint, *, deadline: float | None = None) -> MailboxSummary:
    """Log in, LIST, STATUS every folder; raises EngineError with the matching code.

    With `deadline` (seconds), the connection is torn down once it has passed, so that a server
    trickling an answer (no socket timeout ever fires) cannot keep the probe alive for long."""
    started = time.monotonic()
    session = connect(endpoint, None)
    watchdog = None
    if deadline is not None:
        watchdog = threading.Timer(max(0.0, deadline - (time.monotonic() - started)), session.abort)
        watchdog.daemon = True
        watchdog.start()
    try:
        listing = list_folders(session)
        names = [f.raw for f in listing.folders if f.selectable]
        with_size = session.has("STATUS=SIZE")
        statuses = session.status(names, b"MESSAGES" + (b" SIZE" if with_size else b""))
        return MailboxSummary(
            folders=len(names),
            messages=sum(s.get("MESSAGES", 0) for s in statuses.values()),
            bytes=sum(s.get("SIZE", 0) for s in statuses.values()),
            capabilities=sorted(session.capabilities),
        )
    finally:
        if watchdog is not None:
            watchdog.cancel()
        session.close()
