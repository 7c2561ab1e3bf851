"""One control-plane state for all the workers of a `serve --workers N` server.

The parent process makes a `WorkerGroup` before it forks (emulator/server/worker_group.py): a private run
directory holding a SQLite file (the stubs, faults, clock and mode every worker obeys) and each
worker's unix socket, and shared memory: the generation, moved by every change to that file, the
request log's ids, and every stub's and fault's counters. Before each call a worker compares the
generation with the one it last loaded (one read of shared memory) and reloads the file only when
it moved.

Counting is exact across workers: a call a fault applies to reads and writes that fault's counters
(calls, fired, and how many probability and latency draws were made; a draw is a pure function of
the seed and its number) under one lock, and a stub's position in its sequence moves under the same
lock; calls are counted in the order they take it, so the same seed and the same calls fail the
same calls as in one process. The request log stays in each worker (a call writes nothing shared);
reading it asks every other worker for its entries over its socket and merges them by id.
"""

from __future__ import annotations

import asyncio
import builtins
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web

from emulator.call import Call
from emulator.control.faults import Fault, FaultSet, decide_among
from emulator.control.scope import SpecError
from emulator.control.stubs import Answer, Stub, StubSet
from emulator.server.worker_group import SLOT_FIELDS, SLOTS, WorkerGroup

STUB, FAULT = "stub", "fault"
WORKER_GROUP: web.AppKey[WorkerGroup] = web.AppKey("worker_group", WorkerGroup)


@dataclass(frozen=True, slots=True)
class Item:
    """A stub or fault as the shared file holds it: its id, spec, and counter slot with its tag."""

    id: str
    spec: dict[str, Any]
    slot: int
    tag: int


@dataclass
class Snapshot:
    """The shared state as one worker last loaded it."""

    stubs: list[Item] = field(default_factory=list)
    faults: list[Item] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)


class SharedStore:
    """The group's SQLite file and counters; every write to the file happens under one file lock and
    moves the generation."""

    def __init__(self, group: WorkerGroup) -> None:
        self.group = group
        self._conn = sqlite3.connect(group.database, isolation_level=None, check_same_thread=False,
                                     timeout=30)
        self._conn.execute("PRAGMA synchronous = OFF")  # the file lives as long as the server
        self._lock_fd = os.open(str(group.database) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.counter_lock = group.counter_lock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, after which other workers reload."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            self.group.generation.value += 1  # after the commit: whoever sees it reads the change
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def generation(self) -> int:
        return int(self.group.generation.value)

    def load(self) -> Snapshot:
        snapshot = Snapshot()
        rows = self._conn.execute("SELECT kind, id, spec, slot, seq FROM items ORDER BY seq").fetchall()
        for kind, item_id, spec, slot, seq in rows:
            item = Item(item_id, orjson.loads(spec), slot, seq)
            (snapshot.stubs if kind == STUB else snapshot.faults).append(item)
        snapshot.meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return snapshot

    def next_id(self, conn: sqlite3.Connection, kind: str) -> str:
        return f"{kind}-{self.bump(conn, f'{kind}_ids')}"

    def insert(self, conn: sqlite3.Connection, kind: str, item_id: str, name: str | None, spec: Any) -> Item:
        """Store a new stub or fault and give it a counter slot, zeroed and tagged with its `seq`."""
        used = {row[0] for row in conn.execute("SELECT slot FROM items")}
        slot = next((n for n in range(SLOTS) if n not in used), None)
        if slot is None:
            raise SpecError(f"at most {SLOTS} stubs and faults can be set at once")
        cursor = conn.execute("INSERT INTO items (kind, id, name, spec, slot) VALUES (?, ?, ?, ?, ?)",
                              (kind, item_id, name, orjson.dumps(spec).decode(), slot))
        tag = int(cursor.lastrowid or 0)
        with self.counter_lock:
            base = slot * SLOT_FIELDS
            self.group.counters[base:base + SLOT_FIELDS] = [tag] + [0] * (SLOT_FIELDS - 1)
        return Item(item_id, spec, slot, tag)

    def read(self, item: Item) -> list[int] | None:
        """The item's counters (call under `counter_lock`); None once its slot belongs to another."""
        base = item.slot * SLOT_FIELDS
        counters = self.group.counters
        return counters[base + 1:base + SLOT_FIELDS] if counters[base] == item.tag else None

    def write(self, item: Item, values: list[int]) -> None:
        base = item.slot * SLOT_FIELDS + 1
        self.group.counters[base:base + len(values)] = values

    def remove(self, kind: str, key: str) -> bool:
        with self.transaction() as conn:
            rows = conn.execute("DELETE FROM items WHERE kind = ? AND (id = ? OR name = ?) RETURNING slot",
                                (kind, key, key)).fetchall()
            self._untag([slot for (slot,) in rows])
            return bool(rows)

    def clear(self, kind: str) -> None:
        with self.transaction() as conn:
            rows = conn.execute("DELETE FROM items WHERE kind = ? RETURNING slot", (kind,)).fetchall()
            self._untag([slot for (slot,) in rows])
            conn.execute("DELETE FROM meta WHERE key = ?", (f"{kind}_ids",))

    def _untag(self, slots: list[int]) -> None:
        # A worker that has not reloaded yet finds the tag gone and counts nothing for the item.
        with self.counter_lock:
            for slot in slots:
                self.group.counters[slot * SLOT_FIELDS] = 0

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


FAULT_COUNTERS = ("calls", "fired", "draws", "latency_draws")


class SharedFaultSet(FaultSet):
    """The group's faults: defined in the shared file, counted in shared memory."""

    def __init__(self, store: SharedStore, default_seed: int = 0) -> None:
        super().__init__(default_seed)
        self.store = store
        self._items: dict[str, Item] = {}

    def add(self, spec: Any) -> Fault:
        with self.store.transaction() as conn:
            fault_id = self.store.next_id(conn, FAULT)
            fault = Fault.parse(spec, fault_id=fault_id, default_seed=self.default_seed)
            self._items[fault.id] = self.store.insert(conn, FAULT, fault.id, fault.name, spec)
        self._faults.append(fault)
        return fault

    def load(self, items: list[Item]) -> None:
        seed = self.default_seed
        self._faults = [Fault.parse(item.spec, fault_id=item.id, default_seed=seed) for item in items]
        self._items = {item.id: item for item in items}

    def remove(self, key: str) -> bool:
        super().remove(key)
        return self.store.remove(FAULT, key)

    def clear(self) -> None:
        super().clear()
        self.store.clear(FAULT)

    def forget(self, account: str) -> None:
        for fault in [f for f in self._faults if f.scope.account == account]:
            self.remove(fault.id)

    def list(self) -> list[Fault]:
        with self.store.counter_lock:
            live = [f for f in self._faults if self._load(f)]
        return live

    def _load(self, fault: Fault) -> bool:
        values = self.store.read(self._items[fault.id])
        if values is None:
            return False
        fault.calls, fault.fired, fault.draws, fault.latency_draws = values[:4]
        return True

    def decide(self, call: Call) -> tuple[builtins.list[Fault], float]:
        applying = [f for f in self._faults if f.applies_to(call)]
        if not applying:
            return [], 0.0
        with self.store.counter_lock:
            live = [f for f in applying if self._load(f)]  # not removed by another worker meanwhile
            fired, delay = decide_among(live, call)
            for fault in live:
                self.store.write(self._items[fault.id], [getattr(fault, name) for name in FAULT_COUNTERS])
        return fired, delay


class SharedStubSet(StubSet):
    """The group's stubs: defined in the shared file; a stub's next answer is taken in shared memory."""

    def __init__(self, store: SharedStore) -> None:
        super().__init__()
        self.store = store
        self._items: dict[str, Item] = {}

    def add(self, spec: Any) -> Stub:
        with self.store.transaction() as conn:
            stub = Stub.parse(spec, stub_id=self.store.next_id(conn, STUB))
            self._items[stub.id] = self.store.insert(conn, STUB, stub.id, stub.name, spec)
        self._stubs.append(stub)
        return stub

    def load(self, items: list[Item]) -> None:
        self._stubs = [Stub.parse(item.spec, stub_id=item.id) for item in items]
        self._items = {item.id: item for item in items}

    def remove(self, key: str) -> bool:
        super().remove(key)
        return self.store.remove(STUB, key)

    def clear(self) -> None:
        super().clear()
        self.store.clear(STUB)

    def forget(self, account: str) -> None:
        for stub in [s for s in self._stubs if s.scope.account == account]:
            self.remove(stub.id)

    def list(self) -> list[Stub]:
        with self.store.counter_lock:
            live = []
            for stub in self._stubs:
                values = self.store.read(self._items[stub.id])
                if values is not None:
                    stub.calls = values[0]
                    live.append(stub)
        return live

    def pick(self, call: Call) -> tuple[Stub, Answer] | None:
        for stub in reversed(self._stubs):
            if not stub.scope.matches(call):
                continue
            item = self._items[stub.id]
            with self.store.counter_lock:
                values = self.store.read(item)
                # None: removed meanwhile; at `times`: used up, by any worker.
                if values is None or (stub.times is not None and values[0] >= stub.times):
                    continue
                stub.calls = values[0] + 1
                self.store.write(item, [stub.calls])
            return stub, stub.answers[min(stub.calls - 1, len(stub.answers) - 1)]
        return None


async def ask_peers(group: WorkerGroup, query: dict[str, str]) -> list[dict[str, Any]]:
    """The request-log entries every other worker of the group holds (its `worker-log` route on its
    unix socket) for `query`; a worker that is gone adds nothing."""
    async def ask(path: str) -> list[dict[str, Any]]:
        try:
            async with (ClientSession(connector=UnixConnector(path=path)) as session,
                        session.get("http://worker/__emulator__/worker-log", params=query,
                                    timeout=ClientTimeout(total=30)) as resp):
                found: list[dict[str, Any]] = orjson.loads(await resp.read()) if resp.status == 200 else []
                return found
        except (OSError, ClientError, TimeoutError):
            return []

    answers = await asyncio.gather(*(ask(str(path)) for path in group.peer_sockets()))
    return [entry for found in answers for entry in found]
