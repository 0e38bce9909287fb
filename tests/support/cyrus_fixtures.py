"""Pytest plugin: session-wide Cyrus IMAP servers (tests/support/cyrus.py), one fresh user per test.

Register it with `pytest_plugins = ["tests.support.cyrus_fixtures"]` (in the top conftest.py, or
in a test module that uses it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cyrus import CyrusServer


@pytest.fixture(scope="session")
def cyrus_server() -> Iterator[CyrusServer]:
    """Cyrus as Debian configures it: '.' separator, personal namespace 'INBOX.'."""
    with CyrusServer() as server:
        yield server


@pytest.fixture(scope="session")
def cyrus_slash_server() -> Iterator[CyrusServer]:
    """Cyrus with its compiled-in defaults: '/' separator, folders beside INBOX (no prefix)."""
    with CyrusServer(unixhierarchysep=True, altnamespace=True) as server:
        yield server
