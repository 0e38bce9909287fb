from collections import Counter

import pytest

from apps.localmail import mail
from apps.sync import services
from tests.support.report_address import confirmed_report_address


def all_messages(account: mail.Account) -> Counter:
    """Every message's fingerprint (bytes, flags, date), all folders together: equal
    multisets on both sides mean nothing is missing and nothing is duplicated."""
    total = Counter()
    for counter in mail.snapshot(account).values():
        total.update(counter)
    return total


@pytest.fixture
def filled_accounts(imap_trust):
    """A source account filled with a seeded corpus and an empty destination account."""
    source_server, destination_server, _bundle = imap_trust

    def make(*, seed: int, messages: int, quota_bytes: int | None = None, **corpus):
        source_user = source_server.new_user()
        destination_user = (
            destination_server.new_user(quota_bytes=quota_bytes) if quota_bytes else destination_server.new_user()
        )
        source = mail.Account(source_server.host, source_server.port, source_user.login, source_user.password,
                              "INBOX.", ".")  # fmt: skip
        destination = mail.Account(destination_server.host, destination_server.port, destination_user.login,
                                   destination_user.password)  # fmt: skip
        mail.upload_fast(source, mail.build_corpus(seed=seed, messages=messages, **corpus))
        return (source_server, source_user, source), (destination_server, destination_user, destination)

    return make


@pytest.fixture
def job_between(make_account):
    """A queued job copying between two Dovecot users, over implicit TLS."""

    def make(source_side, destination_side):
        (source_server, source_user, _), (destination_server, destination_user, _) = source_side, destination_side
        return confirmed_report_address(services.job_create(
            source=make_account(f"{source_user.login}@example.org", login=source_user.login,
                                password=source_user.password, host="localhost", port=source_server.tls_port),
            destination=make_account(f"{destination_user.login}@example.org", login=destination_user.login,
                                     password=destination_user.password, host="localhost",
                                     port=destination_server.tls_port),
        ))  # fmt: skip

    return make
