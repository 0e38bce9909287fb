"""The engine's public data types (the contract with the portal)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import ErrorCode


class Security(StrEnum):
    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: Security
    login: str
    password: str = field(repr=False)
    # TCP-connect here (already SSRF-checked by the caller); `host` stays the TLS server name.
    connect_address: str | None = None
    ca_file: str | None = None
    verify_tls: bool = True
    timeout: float = 60.0
    max_connections: int | None = None
    max_messages_per_second: float | None = None
    max_bytes_per_second: float | None = None
    # Bounds on what the server may send (None: the engine's defaults, connection.DEFAULT_MAX_LITERAL
    # and folders.DEFAULT_MAX_FOLDERS): a bigger literal or a longer folder list fails the run.
    max_literal_bytes: int | None = None
    max_folders: int | None = None
    # OAuth2 accounts: called at every (re)connection for an access token valid for a while yet
    # (the caller renews it ahead of expiry); `password` is then unused. It raises EngineError
    # (OAUTH_CONSENT_REVOKED) when the provider refuses to renew, TransientError when it cannot be
    # reached. If it has an `invalidate(token)` method, the engine calls it when the server refuses
    # a token, before asking for one again.
    oauth_token: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.login}@{self.host}:{self.port} ({self.security.value})"


@dataclass
class CopyOptions:
    dry_run: bool = False
    skip_gmail_virtual_folders: bool = True
    # Gmail's All Mail: by default only its archived messages (in no other folder) are copied, into
    # the destination's Archive folder; staff may have it copied whole, as a folder of its own
    # (every labelled message then arrives twice: in its label's folder and in All Mail).
    copy_all_mail_as_folder: bool = False
    max_message_bytes: int | None = None
    error_budget: int = 100
    batch_bytes: int = 2 * 1024 * 1024
    progress_interval: float = 1.0
    # Folders copied at once, each over its own source + destination connection (capped by the
    # endpoints' max_connections).  The destination server's per-connection work is the usual limit.
    parallelism: int = 6
    # The same, when the destination makes most messages wait a round trip before their text may
    # be sent (no LITERAL+: synchronizing literals, as with Gmail): a connection then idles one
    # round trip per message, and only more connections keep a distant link busy.
    parallelism_round_trip_appends: int = 10


@dataclass
class FolderCheckpoint:
    source_name: str
    destination_name: str = ""
    uidvalidity: int | None = None
    last_uid: int = 0
    dest_uidvalidity: int | None = None
    dest_uidnext: int | None = None
    messages_total: int = 0
    messages_copied: int = 0
    messages_skipped: int = 0
    messages_failed: int = 0
    bytes_copied: int = 0
    done: bool = False
    # Source UIDNEXT when the folder was last completed: equal on the next run => nothing new.
    source_uidnext: int | None = None
    # Highest source UID of an APPEND that was sent but not yet confirmed; while it is above
    # last_uid, destination UIDs >= dest_uidnext may already hold some of those messages.
    pending_uid: int = 0
    # Destination UIDs >= dest_uidnext hold copies of source messages with UIDs above this one
    # (None: last_uid, as in checkpoints written before this field).  It trails last_uid while the
    # parts of a split folder are copied, so their copies stay inside the reconciled window.
    dest_mark_uid: int | None = None
    # Work done past last_uid ("copied", "bytes", "skipped", "failed"), for display: not part of
    # the counters above, since the next run meets that work again and counts it then.
    past_checkpoint: dict[str, int] = field(default_factory=dict)
    # Messages copied inexactly: stored without some of their keywords or flags (the destination
    # cannot keep them), or changed by the destination (it rewrote their headers).
    flags_dropped: int = 0
    altered: int = 0
    # Gmail's All Mail read for its archived messages only (not copied whole).
    archive_only: bool = False


@dataclass(frozen=True)
class Counters:
    """A copy's figures: folders, messages and bytes, in all and done (the one counters type:
    Progress is one, the portal's JobCounters another)."""

    folders_total: int = 0
    folders_done: int = 0
    messages_total: int = 0
    messages_copied: int = 0
    messages_skipped: int = 0
    messages_failed: int = 0
    bytes_total: int = 0
    bytes_copied: int = 0


@dataclass(frozen=True)
class Progress(Counters):
    current_folder: str | None = None


@dataclass
class Event:
    kind: str
    folder: str | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class SkippedMessage:
    folder: str
    uid: int
    date: str | None
    subject: str | None
    size: int
    reason: str  # too_large, rejected_too_large, refused; headers_rewritten, body_rewritten (altered)
    detail: str = ""  # the destination's own words, where it gave any


@dataclass
class CopyResult:
    status: str
    error_code: ErrorCode | None
    error_side: str | None
    error_detail: str
    folders_total: int
    folders_done: int
    messages_total: int
    messages_copied: int
    messages_skipped: int
    messages_failed: int
    bytes_copied: int
    seconds: float
    # Every message this run left behind (skipped for its size, refused by the destination).
    not_copied: list[SkippedMessage] = field(default_factory=list)
    renamed_folders: dict[str, str] = field(default_factory=dict)
    dropped_keywords: list[str] = field(default_factory=list)
    # Copied, but not exactly: counts over the whole job, and the messages the destination changed.
    flags_dropped: int = 0
    altered: list[SkippedMessage] = field(default_factory=list)
    altered_total: int = 0
    # Gmail's archived mail: {"folder": destination, "found": n, "copied": n}; {} without All Mail.
    archived: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """Everything arrived, byte for byte, with its flags."""
        return self.status == "finished" and not (self.not_copied or self.flags_dropped or self.altered_total)

    # Work done by this run alone (the counters above are cumulative over the checkpoints).
    copied_this_run: int = 0
    bytes_this_run: int = 0


@dataclass
class MailboxSummary:
    folders: int
    messages: int
    bytes: int
    capabilities: list[str]
