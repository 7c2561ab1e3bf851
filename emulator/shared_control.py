"""One control-plane state for all the workers of a `serve --workers N` server.

The parent process makes a `WorkerGroup` before it forks: a private run directory holding a SQLite
file (the stubs, faults, clock and mode every worker obeys, with the faults' and stubs' counters)
and each worker's unix socket, plus two counters in shared memory: the generation, moved by every
change to that file, and the request log's ids. Before each call a worker compares the generation
with the one it last loaded (one read of shared memory) and reloads the file only when it moved.

Counting is exact across workers: a call a fault applies to reads and writes that fault's counters
and random generators (`nth`, `every`, `times`, `probability`, latency draws) in one transaction
under a file lock, and a stub's position in its sequence moves in one `UPDATE … RETURNING`; calls
are counted in the order they take the lock, so the same seed and the same calls fail the same
calls as in one process. The request log stays in each worker (a call writes nothing shared);
reading it asks every other worker for its entries over its socket and merges them by id.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from emulator.call import Call
from emulator.faults import Fault, FaultSet, decide_among
from emulator.stubs import Answer, Stub, StubSet
from emulator.worker_group import WorkerGroup

STUB, FAULT = "stub", "fault"


WORKER_GROUP: web.AppKey[WorkerGroup] = web.AppKey("worker_group", WorkerGroup)


@dataclass
class Snapshot:
    """The shared state as one worker last loaded it."""

    stubs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)


class SharedStore:
    """The group's SQLite file; every write happens under one file lock and moves the generation."""

    def __init__(self, group: WorkerGroup) -> None:
        self.group = group
        self._conn = sqlite3.connect(group.database, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA synchronous = OFF")  # the file lives as long as the server
        self._lock_fd = os.open(str(group.database) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def transaction(self, *, changes: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; with `changes`, other workers reload after it (counters alone do
        not change what a worker holds, so they commit without moving the generation)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if changes:
                self.group.generation.value += 1  # after the commit: whoever sees it reads the change
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def generation(self) -> int:
        return int(self.group.generation.value)

    def load(self) -> Snapshot:
        snapshot = Snapshot()
        rows = self._conn.execute("SELECT kind, id, spec FROM items ORDER BY seq").fetchall()
        for kind, item_id, spec in rows:
            (snapshot.stubs if kind == STUB else snapshot.faults).append((item_id, orjson.loads(spec)))
        snapshot.meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return snapshot

    def next_id(self, conn: sqlite3.Connection, kind: str) -> str:
        key = f"{kind}_ids"
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        number = int(row[0]) + 1 if row else 1
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(number)))
        return f"{kind}-{number}"

    @staticmethod
    def insert(conn: sqlite3.Connection, kind: str, item_id: str, name: str | None, spec: Any) -> None:
        conn.execute("INSERT INTO items (kind, id, name, spec) VALUES (?, ?, ?, ?)",
                     (kind, item_id, name, orjson.dumps(spec).decode()))

    def remove(self, kind: str, key: str) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM items WHERE kind = ? AND (id = ? OR name = ?)",
                                  (kind, key, key))
            return cursor.rowcount > 0

    def clear(self, kind: str, conn: sqlite3.Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as own:
                self.clear(kind, own)
            return
        conn.execute("DELETE FROM items WHERE kind = ?", (kind,))
        conn.execute("DELETE FROM meta WHERE key = ?", (f"{kind}_ids",))

    def counters(self, kind: str) -> dict[str, tuple[int, int]]:
        rows = self._conn.execute("SELECT id, calls, fired FROM items WHERE kind = ?", (kind,)).fetchall()
        return {item_id: (calls, fired) for item_id, calls, fired in rows}

    def set_meta(self, values: dict[str, str | None], conn: sqlite3.Connection | None = None) -> None:
        if conn is None:
            with self.transaction() as own:
                self.set_meta(values, own)
            return
        for key, value in values.items():
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bump(self, conn: sqlite3.Connection, key: str) -> str:
        """Add one to a counter in `meta`; returns its new value."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        value = str(int(row[0]) + 1 if row else 1)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        return value


def _rng_state(rng: random.Random) -> bytes:
    return marshal.dumps(rng.getstate())


class SharedFaultSet(FaultSet):
    """The group's faults: defined in the shared file, counted there under its lock."""

    def __init__(self, store: SharedStore, default_seed: int = 0) -> None:
        super().__init__(default_seed)
        self.store = store

    def add(self, spec: Any) -> Fault:
        with self.store.transaction() as conn:
            fault_id = self.store.next_id(conn, FAULT)
            fault = Fault.parse(spec, fault_id=fault_id, default_seed=self.default_seed)
            self.store.insert(conn, FAULT, fault.id, fault.name, spec)
        self._faults.append(fault)
        return fault

    def load(self, specs: list[tuple[str, dict[str, Any]]]) -> None:
        seed = self.default_seed
        self._faults = [Fault.parse(spec, fault_id=fid, default_seed=seed) for fid, spec in specs]

    def remove(self, key: str) -> bool:
        super().remove(key)
        return self.store.remove(FAULT, key)

    def clear(self) -> None:
        super().clear()
        self.store.clear(FAULT)

    def list(self) -> list[Fault]:
        counts = self.store.counters(FAULT)
        for fault in self._faults:
            fault.calls, fault.fired = counts.get(fault.id, (fault.calls, fault.fired))
        return super().list()

    def decide(self, call: Call) -> tuple[list[Fault], float]:
        applying = [f for f in self._faults if f.applies_to(call)]
        if not applying:
            return [], 0.0
        marks = ",".join("?" * len(applying))
        with self.store.transaction(changes=False) as conn:
            rows = conn.execute(f"SELECT id, calls, fired, rng, latency_rng FROM items "
                                f"WHERE kind = 'fault' AND id IN ({marks})",
                                [f.id for f in applying]).fetchall()
            state = {row[0]: row[1:] for row in rows}
            applying = [f for f in applying if f.id in state]  # removed by another worker meanwhile
            for fault in applying:
                fault.calls, fault.fired, rng, latency_rng = state[fault.id]
                # Never drawn yet: the generators as the fault's seed starts them.
                fault._rng = _restored(rng) if rng else random.Random(fault.seed)
                fault._latency_rng = _restored(latency_rng) if latency_rng else random.Random(fault.seed + 1)
            fired, delay = decide_among(applying, call)
            conn.executemany(
                "UPDATE items SET calls = ?, fired = ?, rng = ?, latency_rng = ? "
                "WHERE kind = 'fault' AND id = ?",
                [(f.calls, f.fired, _rng_state(f._rng) if f.probability is not None else None,
                  _rng_state(f._latency_rng) if _draws_latency(f) else None, f.id) for f in applying])
        return fired, delay


def _draws_latency(fault: Fault) -> bool:
    return fault.latency is not None and fault.latency.fixed_ms is None


def _restored(state: bytes) -> random.Random:
    rng = random.Random()
    rng.setstate(marshal.loads(state))
    return rng


class SharedStubSet(StubSet):
    """The group's stubs: defined in the shared file; a stub's next answer is taken there."""

    def __init__(self, store: SharedStore) -> None:
        super().__init__()
        self.store = store

    def add(self, spec: Any) -> Stub:
        with self.store.transaction() as conn:
            stub = Stub.parse(spec, stub_id=self.store.next_id(conn, STUB))
            self.store.insert(conn, STUB, stub.id, stub.name, spec)
        self._stubs.append(stub)
        return stub

    def load(self, specs: list[tuple[str, dict[str, Any]]]) -> None:
        self._stubs = [Stub.parse(spec, stub_id=sid) for sid, spec in specs]

    def remove(self, key: str) -> bool:
        super().remove(key)
        return self.store.remove(STUB, key)

    def clear(self) -> None:
        super().clear()
        self.store.clear(STUB)

    def list(self) -> list[Stub]:
        counts = self.store.counters(STUB)
        for stub in self._stubs:
            stub.calls = counts.get(stub.id, (stub.calls, 0))[0]
        return super().list()

    def pick(self, call: Call) -> tuple[Stub, Answer] | None:
        for stub in reversed(self._stubs):
            if not stub.scope.matches(call):
                continue
            with self.store.transaction(changes=False) as conn:
                row = conn.execute(
                    "UPDATE items SET calls = calls + 1 WHERE kind = 'stub' AND id = ? "
                    "AND (? IS NULL OR calls < ?) RETURNING calls", (stub.id, stub.times, stub.times),
                ).fetchone()
            if row is not None:  # None: used up (by any worker) or removed meanwhile
                stub.calls = int(row[0])
                return stub, stub.answers[min(stub.calls - 1, len(stub.answers) - 1)]
        return None

