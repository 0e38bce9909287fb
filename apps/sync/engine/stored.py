"""Whether the destination stored a message as it was given.

Some servers change what they store: Cyrus replaces 8-bit bytes in headers with 'X', others
turn bare line feeds into CRLF or refuse NUL bytes.  Reading every message back would halve a
copy's speed, so only the kinds of message a server is known to change are read back, and only
until the destination has shown how it treats each kind: after `SAMPLE` of a kind stored exactly,
that kind is trusted for the rest of the run; once it changed one, every message of that kind is
read back, so that each is listed.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import TYPE_CHECKING

from .connection import Response, Session, quote, uid_set
from .fingerprint import internaldate_epoch

if TYPE_CHECKING:
    from .pipeline import AppendOutcome, Message

_EIGHT_BIT = re.compile(rb"[\x80-\xff]")


def unusual_kinds(body: bytes) -> frozenset[str]:
    """The kinds of content in `body` that servers are known to store differently."""
    header_end = body.find(b"\r\n\r\n")
    header = body if header_end < 0 else body[:header_end]
    kinds = set()
    if _EIGHT_BIT.search(header):
        kinds.add("8bit_header")
    if b"\0" in body:
        kinds.add("nul")
    if body.count(b"\n") != body.count(b"\r\n"):
        kinds.add("bare_newline")
    return frozenset(kinds)


class RewriteWatch:
    """What one destination does with each unusual kind, shared by the run's pipelines."""

    SAMPLE = 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: Counter[str] = Counter()
        self._rewritten: set[str] = set()

    def wanted(self, kinds: frozenset[str]) -> bool:
        with self._lock:
            return any(k in self._rewritten or self._exact[k] < self.SAMPLE for k in kinds)

    def learn(self, kinds: frozenset[str], stored_as_given: bool) -> None:
        with self._lock:
            if stored_as_given:
                self._exact.update(kinds)
            else:
                self._rewritten.update(kinds)


def check_stored(
    session: Session, mailbox: bytes, outcome: AppendOutcome, watch: RewriteWatch, unselect: bool
) -> list[tuple[Message, str]]:
    """(message, why) for each message of `outcome` the destination stored differently: its
    headers or body rewritten, or its date changed.  Needs the destination UIDs (UIDPLUS)."""
    from .pipeline import parse_message

    suspects: dict[int, tuple[Message, frozenset[str]]] = {}
    for msg in outcome.appended:
        if msg.uid in outcome.dest_uid_of:
            kinds = unusual_kinds(msg.body)
            if kinds and watch.wanted(kinds):
                suspects[outcome.dest_uid_of[msg.uid]] = (msg, kinds)
    if not suspects or not session.command(b"EXAMINE " + quote(mailbox)).ok:
        return []
    stored: dict[int, tuple[bytes, bytes]] = {}
    tick = session.answer_guard(len(suspects))

    def collect(resp: Response) -> None:
        tick()
        msg = parse_message(resp)
        if msg is not None and msg.uid in suspects:
            stored[msg.uid] = (msg.body, msg.internaldate)

    session.command(b"UID FETCH " + uid_set(sorted(suspects)) + b" (UID INTERNALDATE BODY.PEEK[])", collect)
    if unselect:  # APPENDs go on into this folder: it is better left unselected (see permanent_flags)
        session.command(b"UNSELECT")
    session.selected_exists = 0
    altered = []
    for dest_uid, (msg, kinds) in suspects.items():
        if dest_uid not in stored:
            continue
        body, internaldate = stored[dest_uid]
        why = None
        if body != msg.body:
            header_end = msg.body.find(b"\r\n\r\n")
            same_header = header_end >= 0 and body.startswith(msg.body[: header_end + 4])
            why = "body_rewritten" if same_header else "headers_rewritten"
        elif internaldate_epoch(internaldate.decode()) != internaldate_epoch(msg.internaldate.decode()):
            why = "date_changed"
        watch.learn(kinds, why is None)
        if why is not None:
            altered.append((msg, why))
    return altered
