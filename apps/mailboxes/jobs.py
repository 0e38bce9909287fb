"""RQ entry point of the connection test (checks queue): test, record the outcome, nothing else."""

from __future__ import annotations

import logging

from django.utils import timezone

from apps.mailboxes import services
from apps.mailboxes.connection_test import check_account
from apps.mailboxes.models import MailAccount

logger = logging.getLogger("imapcopy.checks")

# Outcomes a customer is told apart only as "no IMAP server answered there": whether a port is
# closed, filtered, or runs something else is what a port scanner wants to learn from us.
UNREACHABLE_CODES = frozenset({"connection_refused", "timeout", "not_imap", "network_error", "response_too_large"})


def customer_check_code(code: str) -> str:
    return "unreachable" if code in UNREACHABLE_CODES else code


def run_connection_test(account_id: int) -> str:
    account = MailAccount.objects.select_related("provider").filter(pk=account_id).first()
    if account is None or not account.check_pending or not account.has_password:
        return "not-pending"  # answered already, or abandoned and purged
    if timezone.now() > services.check_answer_deadline(account):
        return "too-late"  # the page has given up on it
    outcome = check_account(account)
    if outcome.ok:
        services.account_record_check_success(
            account_id=account_id, folders=outcome.folders, messages=outcome.messages, size=outcome.bytes
        )
        return "ok"
    code = customer_check_code(outcome.error_code)
    if code != outcome.error_code:
        logger.info("connection test of account %s: %s shown as %s", account_id, outcome.error_code, code)
    services.account_record_check_failure(account_id=account_id, error_code=code)
    return code
