"""Fill an account on a `Profile.gmail_like()` Dovecot the way Gmail shows labels as IMAP folders.

On Gmail a message exists once and carries labels; IMAP shows every label as a folder holding
the same message (same X-GM-MSGID / EMAILID), "[Gmail]/All Mail" holds every message except
Trash and Spam, and a message without any label ("archived") is only in All Mail (and in the
Starred / Important views when it has those).  `build_gmail_mailbox` reproduces that: each message
is APPENDed once to All Mail, then UID COPYed to its label folders (Dovecot keeps a message's X-GUID
across COPY, so through `ImapProxy(Quirks(gmail=True, objectid=True))` the copies share
X-GM-MSGID and EMAILID); Trash and Spam get their messages by APPEND and are not in All Mail.

    layout = build_gmail_mailbox(box.account)
    layout.folders["Work/Projects"]  # [GmailMessage(...), ...] in UID order
    layout.archived                  # only in All Mail (+ Starred / Important)
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.localmail.mail import Account, make_message

ALL_MAIL = "[Gmail]/All Mail"
SENT = "[Gmail]/Sent Mail"
DRAFTS = "[Gmail]/Drafts"
TRASH = "[Gmail]/Trash"
SPAM = "[Gmail]/Spam"
STARRED = "[Gmail]/Starred"
IMPORTANT = "[Gmail]/Important"
# Views rather than labels: a message only there (and in All Mail) is archived.
VIEWS = (ALL_MAIL, STARRED, IMPORTANT)
# Label folders the builder creates (the [Gmail]/ ones come with the profile).
LABELS = ("Work", "Work/Projects", "Famille & amis", "Empty Label")


@dataclass(frozen=True)
class GmailMessage:
    key: str  # a name for it in this layout, e.g. "inbox-2"
    body: bytes
    flags: frozenset[str]  # the same in every folder holding it (\Recent aside)
    folders: tuple[str, ...]  # every folder holding it, All Mail first (Trash / Spam: only that one)
    internaldate: datetime

    @property
    def archived(self) -> bool:
        """In All Mail but under no label (at most the Starred / Important views)."""
        return ALL_MAIL in self.folders and set(self.folders) <= set(VIEWS)

    @property
    def message_id(self) -> str | None:
        m = re.search(rb"^Message-ID: (<[^>\r\n]*>)", self.body, re.M | re.I)
        return m[1].decode() if m else None


@dataclass(frozen=True)
class GmailLayout:
    messages: list[GmailMessage]  # every message of the account, in creation order
    folders: dict[str, list[GmailMessage]]  # every folder (empty ones too) -> its messages, UID order

    @property
    def archived(self) -> list[GmailMessage]:
        return [m for m in self.messages if m.archived]

    @property
    def total(self) -> int:
        """Messages in the account (the duplicate pair counts twice: two messages, same bytes)."""
        return len(self.messages)

    @property
    def distinct_bodies(self) -> int:
        return len({m.body for m in self.messages})

    def contents(self, folder: str) -> Counter[tuple[bytes, frozenset[str]]]:
        """What the folder holds: a multiset of (bytes, flags)."""
        return Counter((m.body, m.flags) for m in self.folders[folder])


# (key, labels other than All Mail, flags, special shape for make_message).  Order = APPEND order.
_PLAN: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    ("inbox-1", ("INBOX",), ("\\Seen", "$Forwarded"), ""),
    ("inbox-2", ("INBOX", STARRED, IMPORTANT), ("\\Seen", "\\Flagged"), ""),
    ("inbox-3", ("INBOX", IMPORTANT), (), "8bit"),
    ("dup-a", ("INBOX",), ("\\Seen",), ""),  # dup-b: the same bytes, another message
    ("dup-b", ("INBOX",), ("\\Seen",), ""),
    ("sent-1", (SENT,), ("\\Seen",), ""),
    ("sent-2", (SENT, IMPORTANT), ("\\Seen", "\\Answered"), ""),
    ("draft-1", (DRAFTS,), ("\\Seen", "\\Draft"), ""),
    ("work-1", ("Work",), ("\\Seen",), ""),
    ("work-inbox", ("INBOX", "Work"), ("\\Seen",), ""),  # two labels: two folders
    ("project-1", ("Work/Projects",), ("\\Seen", "\\Answered"), ""),
    ("family-1", ("Famille & amis",), ("\\Seen",), ""),
    ("family-project", ("Famille & amis", "Work/Projects"), (), ""),
    ("archived-1", (), ("\\Seen",), ""),
    ("archived-no-id", (), ("\\Seen",), "no-message-id"),
    ("archived-starred", (STARRED,), ("\\Seen", "\\Flagged"), ""),
    ("archived-unread", (), (), ""),
]
# Not in All Mail, as on Gmail.
_OUTSIDE: list[tuple[str, str, tuple[str, ...]]] = [
    ("trash-1", TRASH, ("\\Seen",)),
    ("trash-2", TRASH, ()),
    ("spam-1", SPAM, ()),
]


def build_gmail_mailbox(account: Account, seed: int = 11) -> GmailLayout:
    """Fill an empty account on a `Profile.gmail_like()` server; returns what it now holds.

    `account` may point at the Dovecot or at an ImapProxy in front of it: only LOGIN, CREATE,
    SUBSCRIBE, APPEND (synchronizing literals), SELECT, EXAMINE, UID COPY and CLOSE are used, and
    UIDPLUS's APPENDUID gives each All Mail UID."""
    rng = random.Random(seed)
    base = datetime(2019, 3, 1, 9, 30, tzinfo=UTC)
    bodies: dict[str, bytes] = {}
    for n, (key, _labels, _flags, special) in enumerate(_PLAN + [(k, (), (), "") for k, _, _ in _OUTSIDE]):
        bodies[key] = bodies["dup-a"] if key == "dup-b" else make_message(rng, 100 + n, special=special)
    dates = {key: base + timedelta(days=3 * n, minutes=7 * n) for n, key in enumerate(bodies)}
    messages: list[GmailMessage] = []
    with account.client() as c:
        for name in LABELS:
            c.create_folder(name)
            c.subscribe_folder(name)
        all_mail_uid: dict[str, int] = {}
        for key, _labels, flags, _special in _PLAN:
            answer = c.append(ALL_MAIL, bodies[key], flags, dates[key])
            all_mail_uid[key] = _appended_uid(answer)
        c.select_folder(ALL_MAIL)
        for key, labels, flags, _special in _PLAN:
            for label in labels:
                c.copy([all_mail_uid[key]], label)  # UID COPY: the copy keeps the X-GUID
            folders = (ALL_MAIL, *labels)
            messages.append(GmailMessage(key, bodies[key], frozenset(flags), folders, dates[key]))
        c.close_folder()
        for key, folder, flags in _OUTSIDE:
            c.append(folder, bodies[key], flags, dates[key])
            messages.append(GmailMessage(key, bodies[key], frozenset(flags), (folder,), dates[key]))
        # Gmail lists its [Gmail] parent (\Noselect); Dovecot only once its children exist on disk.
        for folder in (*VIEWS, SENT, DRAFTS, TRASH, SPAM):
            c.select_folder(folder, readonly=True)
    names = ["INBOX", ALL_MAIL, SENT, DRAFTS, TRASH, SPAM, STARRED, IMPORTANT, *LABELS]
    # Label folders list their messages in COPY order, i.e. the plan's order, as UIDs grow.
    folders = {name: [m for m in messages if name in m.folders] for name in names}
    return GmailLayout(messages, folders)


def _appended_uid(answer: bytes) -> int:
    m = re.search(rb"\[APPENDUID \d+ (\d+)\]", answer)
    if m is None:
        raise RuntimeError(f"no APPENDUID in {answer!r}: is UIDPLUS advertised?")
    return int(m[1])
