"""What the workers of one `serve --workers N` server share, made by the parent before it forks."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, replace
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

# The control plane's shared file (emulator/control/shared.py): the stubs and faults, each with the
# slot of its counters in shared memory, and `meta` (clock, mode, id counters, reset epochs).
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT,
    spec TEXT NOT NULL, slot INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
# Counters per stub or fault: the owner's tag (its `seq`, so a reused slot is never mistaken for the
# old item), then calls, fired, probability draws, latency draws.
SLOT_FIELDS = 5
SLOTS = 4096


@dataclass
class WorkerGroup:
    """What the workers of one server share; `index` says which worker this copy belongs to."""

    run_dir: Path
    size: int
    generation: Any  # multiprocessing RawValue("Q"): moved after every committed change
    log_ids: Any  # RawValue("Q"): the last request-log id handed out, under `log_lock`
    log_lock: Any
    counters: Any  # RawArray("q", SLOTS * SLOT_FIELDS), under `counter_lock`
    counter_lock: Any
    index: int = 0

    @classmethod
    def create(cls, size: int, context: BaseContext) -> WorkerGroup:
        """Made by the parent before it forks, so every worker inherits the same shared memory."""
        group = cls(Path(tempfile.mkdtemp(prefix="wai-emulator-")), size, context.RawValue("Q", 0),
                    context.RawValue("Q", 0), context.Lock(), context.RawArray("q", SLOTS * SLOT_FIELDS),
                    context.Lock())
        conn = sqlite3.connect(group.database)
        try:  # closed before the fork: no worker inherits an open SQLite connection
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()
        return group

    def member(self, index: int) -> WorkerGroup:
        return replace(self, index=index)

    @property
    def database(self) -> Path:
        return self.run_dir / "control.sqlite3"

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"

    def peer_sockets(self) -> list[Path]:
        return [self.socket_path(i) for i in range(self.size) if i != self.index]

    def next_log_id(self) -> int:
        with self.log_lock:
            value = self.log_ids.value + 1
            self.log_ids.value = value
        return int(value)

    def remove(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


