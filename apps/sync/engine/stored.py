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

from .connection import FETCH_INTERNALDATE, FETCH_UID, Response, Session, quote, uid_set
from .fingerprint import internaldate_epoch

if TYPE_CHECKING:
    from .append import AppendOutcome
    from .pipeline import Message

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


# Every message is of this kind: whether the destination keeps the date given in APPEND (some
# servers store the arrival time instead).  Only its INTERNALDATE is read back.
DATE = "date"


def check_stored(
    session: Session, mailbox: bytes, outcome: AppendOutcome, watch: RewriteWatch, unselect: bool
) -> list[tuple[Message, str]]:
    """(message, why) for each message of `outcome` the destination stored differently: its
    headers or body rewritten, or its date changed.  Needs the destination UIDs (UIDPLUS)."""
    from .pipeline import parse_message

    whole: dict[int, tuple[Message, frozenset[str]]] = {}  # read back whole
    dated: dict[int, Message] = {}  # only their date read back
    check_dates = watch.wanted(frozenset([DATE]))
    for msg in outcome.appended:
        if msg.uid not in outcome.dest_uid_of:
            continue
        dest_uid = outcome.dest_uid_of[msg.uid]
        kinds = unusual_kinds(msg.body)
        if kinds and watch.wanted(kinds):
            whole[dest_uid] = (msg, kinds)
        elif check_dates:
            dated[dest_uid] = msg
    if not (whole or dated) or not session.command(b"EXAMINE " + quote(mailbox)).ok:
        return []
    stored: dict[int, bytes] = {}
    dates: dict[int, bytes] = {}
    tick = session.answer_guard(len(whole) + len(dated))

    def collect(resp: Response) -> None:
        tick()
        uid, date = FETCH_UID.search(resp.text), FETCH_INTERNALDATE.search(resp.text)
        if uid is None or date is None:
            return
        uid_number = int(uid.group(1))
        if uid_number in whole:
            msg = parse_message(resp)
            if msg is not None:
                stored[uid_number], dates[uid_number] = msg.body, msg.internaldate
        elif uid_number in dated:
            dates[uid_number] = date.group(1)

    tags = []
    if whole:
        tags += session.send_commands([b"UID FETCH " + uid_set(sorted(whole)) + b" (UID INTERNALDATE BODY.PEEK[])"])
    if dated:
        tags += session.send_commands([b"UID FETCH " + uid_set(sorted(dated)) + b" (UID INTERNALDATE)"])
    session.collect(tags, collect)
    if unselect:  # APPENDs go on into this folder: it is better left unselected (see permanent_flags)
        session.command(b"UNSELECT")
    session.selected_exists = 0
    altered = []
    for dest_uid, (msg, kinds) in whole.items():
        if dest_uid not in stored:
            continue
        why = None
        if stored[dest_uid] != msg.body:
            header_end = msg.body.find(b"\r\n\r\n")
            same_header = header_end >= 0 and stored[dest_uid].startswith(msg.body[: header_end + 4])
            why = "body_rewritten" if same_header else "headers_rewritten"
        elif not _same_date(dates[dest_uid], msg.internaldate):
            why = "date_changed"
        watch.learn(kinds, why != "headers_rewritten" and why != "body_rewritten")
        if why is not None:
            altered.append((msg, why))
    for dest_uid, msg in dated.items():
        if dest_uid in dates:
            kept = _same_date(dates[dest_uid], msg.internaldate)
            watch.learn(frozenset([DATE]), kept)
            if not kept:
                altered.append((msg, "date_changed"))
    return altered


def _same_date(stored: bytes, given: bytes) -> bool:
    return internaldate_epoch(stored.decode()) == internaldate_epoch(given.decode())
