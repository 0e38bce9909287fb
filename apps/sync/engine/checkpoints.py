"""Where per-folder progress lives between runs."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Protocol

from .model import FolderCheckpoint

_FIELDS = {f.name for f in dataclasses.fields(FolderCheckpoint)}


class CheckpointStore(Protocol):
    """May also offer save_many(checkpoints): several folders made durable at once."""

    def load(self) -> dict[str, FolderCheckpoint]: ...

    def save(self, checkpoint: FolderCheckpoint) -> None: ...


def checkpoint_from_dict(data: dict) -> FolderCheckpoint:
    # Ignore unknown keys so that state written by a newer engine still loads.
    return FolderCheckpoint(**{k: v for k, v in data.items() if k in _FIELDS})


class MemoryCheckpointStore:
    def __init__(self) -> None:
        self._data: dict[str, dict] = {}
        self._lock = threading.Lock()

    def load(self) -> dict[str, FolderCheckpoint]:
        with self._lock:
            return {k: checkpoint_from_dict(v) for k, v in self._data.items()}

    def save(self, checkpoint: FolderCheckpoint) -> None:
        self.save_many([checkpoint])

    def save_many(self, checkpoints: list[FolderCheckpoint]) -> None:
        with self._lock:
            for checkpoint in checkpoints:
                self._data[checkpoint.source_name] = dataclasses.asdict(checkpoint)


class JsonFileCheckpointStore:
    """All checkpoints in one JSON file, replaced atomically (tmp + fsync + rename + dir fsync)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict] | None = None

    def _read(self) -> dict[str, dict]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._data = {}
        return self._data

    def load(self) -> dict[str, FolderCheckpoint]:
        with self._lock:
            self._data = None
            return {k: checkpoint_from_dict(v) for k, v in self._read().items()}

    def save(self, checkpoint: FolderCheckpoint) -> None:
        self.save_many([checkpoint])

    def save_many(self, checkpoints: list[FolderCheckpoint]) -> None:
        with self._lock:
            data = self._read()
            for checkpoint in checkpoints:
                data[checkpoint.source_name] = dataclasses.asdict(checkpoint)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent or ".", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
