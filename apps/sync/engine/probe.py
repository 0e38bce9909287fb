"""probe_account(): the portal's live connection test (read-only)."""

from __future__ import annotations

import contextlib
import time

from .folders import list_folders
from .model import Endpoint, MailboxSummary
from .opening import connect


def probe_account(endpoint: Endpoint, *, deadline: float | None = None) -> MailboxSummary:
    """Log in, LIST, STATUS every folder; raises EngineError with the matching code.

    With `deadline` (seconds), the probe gives up with TIMEOUT once it has passed and closes its
    connection, so that a server trickling its answers cannot keep it (and its thread) alive."""
    started = time.monotonic()
    session = connect(endpoint, None, None if deadline is None else started + deadline)
    limit = (
        contextlib.nullcontext() if deadline is None else session.time_limit(deadline - (time.monotonic() - started))
    )
    try:
        with limit:
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
        session.close()
