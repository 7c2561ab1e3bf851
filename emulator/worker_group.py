"""What the workers of one `serve --workers N` server share, made by the parent before it forks."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, replace
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

# The control plane's shared file (emulator/shared_control.py): stubs and faults with their
# counters, and `meta` (clock, mode, id counters, reset epochs).
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT,
    spec TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0, fired INTEGER NOT NULL DEFAULT 0,
    rng BLOB, latency_rng BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


@dataclass
class WorkerGroup:
    """What the workers of one server share; `index` says which worker this copy belongs to."""

    run_dir: Path
    size: int
    generation: Any  # multiprocessing RawValue("Q"): moved after every committed change
    log_ids: Any  # multiprocessing Value("Q") with its lock: the last request-log id handed out
    index: int = 0

    @classmethod
    def create(cls, size: int, context: BaseContext) -> WorkerGroup:
        """Made by the parent before it forks, so every worker inherits the same shared memory."""
        group = cls(Path(tempfile.mkdtemp(prefix="wai-emulator-")), size,
                    context.RawValue("Q", 0), context.Value("Q", 0))
        with sqlite3.connect(group.database) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
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
        with self.log_ids.get_lock():
            self.log_ids.value += 1
            return int(self.log_ids.value)

    def remove(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


