"""The live connection test of the customer form: log in, count folders and messages.

Runs on the checks queue (apps.mailboxes.jobs), never in a web worker, with a hard deadline of
CONNECTION_TEST_SECONDS, so a server that stalls holds one check worker for that long at most."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apps.mailboxes.endpoints import endpoint_for
from apps.mailboxes.models import MailAccount
from apps.mailboxes.netguard import HostNotAllowed, HostNotFound
from apps.sync import engine

logger = logging.getLogger("imapcopy.checks")


@dataclass(frozen=True)
class CheckOutcome:
    ok: bool
    error_code: str = ""
    folders: int = 0
    messages: int = 0
    bytes: int = 0


@sensitive_variables()
def _probe_with_deadline(endpoint: engine.Endpoint, deadline: float) -> engine.MailboxSummary:
    outcome: dict = {}

    def probe() -> None:
        try:
            # The engine's own bounds end the thread soon after the deadline (logging in may take
            # twice the socket timeout; after that the connection is torn down at the deadline).
            outcome["summary"] = engine.probe_account(endpoint, deadline=deadline)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="connection-test", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        # The customer need not wait for the thread to end.
        raise engine.EngineError(engine.ErrorCode.TIMEOUT, side=None, detail="connection test deadline")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


@sensitive_variables()
def check_account(account: MailAccount) -> CheckOutcome:
    """Test the account's connection; the caller records the outcome."""
    deadline = settings.CONNECTION_TEST_SECONDS
    try:
        endpoint = endpoint_for(account, timeout=max(2.0, deadline - 2))
    except HostNotAllowed:
        return CheckOutcome(ok=False, error_code="host_not_allowed")
    except HostNotFound:
        return CheckOutcome(ok=False, error_code=str(engine.ErrorCode.DNS_FAILED))
    try:
        summary = _probe_with_deadline(endpoint, deadline)
    except engine.EngineError as exc:
        logger.info("connection test of account %s failed: %s", account.pk, exc.code)
        return CheckOutcome(ok=False, error_code=str(exc.code))
    except Exception:
        logger.exception("connection test of account %s crashed", account.pk)
        return CheckOutcome(ok=False, error_code="internal_error")
    finally:
        del endpoint
    return CheckOutcome(ok=True, folders=summary.folders, messages=summary.messages, bytes=summary.bytes)
