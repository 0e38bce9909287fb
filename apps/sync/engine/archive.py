"""Gmail's archived mail: the messages that are only in All Mail.

Gmail shows labels as folders and keeps every message (but Spam and Trash) in All Mail.  Copying
the label folders misses what has no label (archived mail, very common); copying All Mail as well
would duplicate every labelled message.  So All Mail is read as a list of what to add: the
messages that no copied folder holds.  Which ones those are is told by an id every copy of a
message shares across folders: Gmail's X-GM-MSGID (X-GM-EXT-1), or RFC 8474's EMAILID (OBJECTID,
Yahoo and others); without either, by fingerprints matched as a multiset (a message with two
labels is met twice, an archived exact duplicate of a labelled message is still copied once).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .connection import FETCH_UID, MailboxState, Response, Session, quote
from .fingerprint import fetch_fingerprints, match_present
from .folders import Folder

_ID_PATTERNS = {
    b"X-GM-MSGID": re.compile(rb"X-GM-MSGID (\d+)"),
    b"EMAILID": re.compile(rb"EMAILID \(([A-Za-z0-9_-]{1,255})\)"),
}
# Folders examined at once (each an EXAMINE then a FETCH, pipelined): bounded, so that neither
# side blocks writing while the other is not reading.
FOLDERS_IN_FLIGHT = 16


@dataclass
class Archived:
    uids: set[int]  # All Mail UIDs that no other folder holds
    method: str  # "x-gm-msgid", "emailid" or "fingerprint"


def id_item(session: Session) -> bytes | None:
    """The FETCH item naming a message across folders, if the server advertises one."""
    if session.has("X-GM-EXT-1"):
        return b"X-GM-MSGID"
    if session.has("OBJECTID"):
        return b"EMAILID"
    return None


def find_archived(
    session: Session, all_mail: Folder, labels: list[Folder], check_cancel: Callable[[], None]
) -> Archived:
    """Read-only (EXAMINE, FETCH of ids or header fields): which All Mail messages are in none of
    `labels` (the folders this copy takes)."""
    item = id_item(session)
    if item is not None:
        ids = _ids_by_folder(session, [all_mail, *labels], item, check_cancel)
        labelled = set()
        for folder in labels:
            labelled.update(ids[folder.raw].values())
        return Archived({uid for uid, mid in ids[all_mail.raw].items() if mid not in labelled}, item.decode().lower())
    present = []
    for folder in labels:
        check_cancel()
        if _examine(session, folder):
            present.extend(fp for _, fp in fetch_fingerprints(session, None, 1))
    check_cancel()
    everything = fetch_fingerprints(session, None, 1) if session.select(all_mail.raw, readonly=True).exists else []
    matched, _ = match_present(everything, present)
    return Archived({uid for uid, _ in everything if uid not in matched}, "fingerprint")


def _ids_by_folder(
    session: Session, folders: list[Folder], item: bytes, check_cancel: Callable[[], None]
) -> dict[bytes, dict[int, bytes]]:
    """UID -> id of every message of each folder, EXAMINE + UID FETCH pipelined a few folders at
    a time."""
    pattern = _ID_PATTERNS[item]
    out: dict[bytes, dict[int, bytes]] = {}
    for start in range(0, len(folders), FOLDERS_IN_FLIGHT):
        check_cancel()
        chunk = folders[start : start + FOLDERS_IN_FLIGHT]
        lines = []
        for folder in chunk:
            lines += [b"EXAMINE " + quote(folder.raw), b"UID FETCH 1:* (UID " + item + b")"]
        tags = session.send_commands(lines)
        for i, folder in enumerate(chunk):
            examined = session.read_until(tags[2 * i])
            if not examined.ok:
                # A failed EXAMINE leaves no folder selected, so its FETCH fails too.  The folder
                # cannot be copied: its messages count as unlabelled, and reach Archive instead.
                session.read_until(tags[2 * i + 1], lambda resp: None)
                out[folder.raw] = {}
                continue
            exists = MailboxState.parse(examined.untagged).exists
            found: dict[int, bytes] = {}
            tick = session.answer_guard(exists)

            def collect(resp: Response, found=found, tick=tick) -> None:
                tick()
                uid, mid = FETCH_UID.search(resp.text), pattern.search(resp.text)
                if uid and mid:
                    found[int(uid.group(1))] = mid.group(1)

            fetched = session.read_until(tags[2 * i + 1], collect)
            if exists:  # "1:*" in an empty folder is an error on some servers
                session.check(fetched, "FETCH")
            out[folder.raw] = found
        session.selected_exists = 0
    return out


def _examine(session: Session, folder: Folder) -> int:
    """Messages in `folder`; 0 for a folder that cannot be opened (its messages cannot be copied
    from it, so they count as unlabelled and reach Archive instead)."""
    done = session.command(b"EXAMINE " + quote(folder.raw))
    if not done.ok:
        session.selected_exists = 0
        return 0
    session.selected_exists = MailboxState.parse(done.untagged).exists
    return session.selected_exists
