"""IMAPCopy's copy engine: a Django-free package that copies one IMAP account into another."""

from .checkpoints import CheckpointStore, JsonFileCheckpointStore, MemoryCheckpointStore
from .copier import copy_mailbox
from .errors import EngineError, ErrorCode
from .model import (
    CopyOptions,
    CopyResult,
    Counters,
    Endpoint,
    Event,
    FolderCheckpoint,
    MailboxSummary,
    Progress,
    Security,
    SkippedMessage,
)
from .probe import probe_account

__all__ = [
    "CheckpointStore",
    "CopyOptions",
    "CopyResult",
    "Counters",
    "Endpoint",
    "EngineError",
    "ErrorCode",
    "Event",
    "FolderCheckpoint",
    "JsonFileCheckpointStore",
    "MailboxSummary",
    "MemoryCheckpointStore",
    "Progress",
    "Security",
    "SkippedMessage",
    "copy_mailbox",
    "probe_account",
]
