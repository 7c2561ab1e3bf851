"""Neuron ledger in SQLite: daily free allowance, paid-plan overage, rate limits and usage reports.

Shared safely by threads (one connection behind a lock) and by several processes on one file
(`--workers N`): every write is one `BEGIN IMMEDIATE` transaction, taken in turn through a kernel
file lock, and totals are bumped in place with `INSERT … ON CONFLICT DO UPDATE SET neurons =
neurons + excluded.neurons`, so no update is lost. File databases use WAL.

The server charges with `charge_async`: the charges of one event-loop turn are appended together to
this process's memory-mapped journal (emulator/accounting/journal.py) before their answers leave, so an
answered call survives a kill -9 (with `durable=True`, an msync per batch, also an OS crash). The journal
moves into SQLite in one transaction at most `DRAIN_SECONDS` later (or once `DRAIN_BATCH` charges
wait), and before any read of this ledger; a ledger opened after a crash replays the journals
left behind. Admission reads day totals kept in memory: exact for this process; with several
workers, another worker's calls are seen once its journal reached SQLite (within
`DRAIN_SECONDS`), so near the wall each worker may let that many more calls through.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import sqlite3
import threading
import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from emulator.accounting.checkpoint import Checkpointer
from emulator.accounting.journal import Journal, JournalLine, encode_line, journals
from emulator.accounting.pricing import NEURON_USD, PriceBook, dollars, load_prices
from emulator.errors import ErrorKind
from emulator.settings import Plan

__all__ = [
    "REFUSAL_CODES",
    "Admission",
    "ChargeResult",
    "Clock",
    "FixedClock",
    "Ledger",
    "ModelUsage",
    "Plan",
    "SystemClock",
    "UsageReport",
    "next_reset",
]

MEMORY = ":memory:"
RATE_WINDOW_SECONDS = 60.0
# Reason → Workers AI error code the server answers with (docs/errors.md).
REFUSAL_CODES: dict[ErrorKind, int] = {
    ErrorKind.DAILY_LIMIT: 4006, ErrorKind.REQUIRES_PAID: 5035, ErrorKind.RATE_LIMITED: 3040,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily (
    account   TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    model     TEXT    NOT NULL,
    requests  INTEGER NOT NULL DEFAULT 0,
    errors    INTEGER NOT NULL DEFAULT 0,
    neurons   REAL    NOT NULL DEFAULT 0,
    estimated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, day, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refusals (
    account TEXT    NOT NULL,
    day     TEXT    NOT NULL,
    model   TEXT    NOT NULL,
    code    INTEGER NOT NULL,
    count   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, day, model, code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    id        INTEGER PRIMARY KEY,
    ts        REAL    NOT NULL,
    account   TEXT    NOT NULL,
    day       TEXT    NOT NULL,
    hour      INTEGER NOT NULL,
    model     TEXT    NOT NULL,
    neurons   REAL    NOT NULL,
    status    INTEGER NOT NULL,
    source    TEXT    NOT NULL,
    estimated INTEGER NOT NULL DEFAULT 0,
    surface   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_day_account ON calls (day, account);
CREATE TABLE IF NOT EXISTS rate_hits (
    account TEXT NOT NULL,
    model   TEXT NOT NULL,
    ts      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_hits_key ON rate_hits (account, model, ts);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journals (
    name    TEXT    PRIMARY KEY,
    applied INTEGER NOT NULL
) WITHOUT ROWID;
"""
# Journaled charges reach SQLite this long after the first of them, or as soon as this many wait.
# Short drains keep each pause of the event loop short (~0.5 ms at 10,000 calls a second).
DRAIN_SECONDS = 0.005
DRAIN_BATCH = 512
# A timed drain finding another worker mid-write tries again this much later, this many times.
BUSY_RETRY_SECONDS = 0.001
BUSY_RETRIES = 20


# Columns added to a table after ledgers were first written: a ledger file without one gets it (its
# older rows take the default) when it is opened.
_ADDED_COLUMNS = (("calls", "surface", "TEXT NOT NULL DEFAULT ''"),)
# How a call charged without a recorded surface (a row written before the column existed) is shown.
UNRECORDED_SURFACE = "unrecorded"


class WriterBusy(Exception):
    """Another process holds the ledger's writer lock (only raised to a caller that will not wait)."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def timestamp(self) -> float:
        """`now()` as UNIX time; every charge reads it, so a clock can skip the datetime."""
        ...

    @property
    def frozen(self) -> bool:
        """True while the clock stands still (so per-call stamps repeat and a snapshot can pin them)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def timestamp(self) -> float:
        return _time.time()

    @property
    def frozen(self) -> bool:
        return False


class FixedClock:
    """A clock that only moves when told to (tests, `--clock` control-plane endpoints)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start or datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self._now

    def timestamp(self) -> float:
        return self._now.timestamp()

    @property
    def frozen(self) -> bool:
        return True

    def set(self, when: datetime) -> None:
        self._now = _aware(when)

    def advance(self, delta: timedelta) -> None:
        self._now = self._now + delta


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    reason: ErrorKind | None = None  # DAILY_LIMIT, REQUIRES_PAID or RATE_LIMITED

    @property
    def code(self) -> int | None:
        """The Workers AI error code for a refusal (4006, 5035, 3040); None when allowed."""
        return REFUSAL_CODES.get(self.reason) if self.reason else None


ADMITTED = Admission(True, None)


@dataclass(slots=True)
class ChargeResult:
    day: date
    neurons: float  # what this call added
    day_total: float  # the account's neurons for the day after this call
    overage_neurons: float  # the part of this call beyond the daily allowance (any plan)
    overage_dollars: float  # what that part costs; 0 on the free plan, which never bills


class ModelUsage(BaseModel):
    model: str
    requests: int = 0
    errors: int = 0
    refused: int = 0
    refusals: dict[str, int] = {}  # error code ("4006", "5035", "3040") → count
    neurons: float = 0.0
    dollars: float = 0.0
    estimated: bool = False
    # The part of this model's neurons beyond the daily allowance, attributed call by call in the
    # order the calls were charged; billed (overage_dollars > 0) on the paid plan only.
    overage_neurons: float = 0.0
    overage_dollars: float = 0.0


class SurfaceUsage(BaseModel):
    """The charged calls that arrived on one surface (the request log's name for it: native, chat,
    embeddings, responses, compat_chat, binding, realtime)."""

    surface: str
    requests: int = 0
    errors: int = 0
    neurons: float = 0.0
    dollars: float = 0.0


class UsageReport(BaseModel):
    account: str | None
    day: date
    plan: Plan
    daily_neurons: float
    neuron_usd: float = NEURON_USD
    models: list[ModelUsage]
    requests: int
    errors: int
    refused: int
    neurons: float
    dollars: float
    estimated: bool
    free_allowance_left: float
    overage_neurons: float
    overage_dollars: float
    resets_at: datetime
    surfaces: list[SurfaceUsage] = []  # the same charged calls, per surface


def _aware(when: datetime) -> datetime:
    # Naive datetimes are taken as UTC: the ledger's day is always the UTC date.
    if when.tzinfo is UTC:
        return when
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(slots=True)  # not frozen: a frozen dataclass pays a setattr call per field, per charge
class _Entry:
    """One charge waiting to be written, with its UTC time in the forms the tables use."""

    account: str
    ts: float
    day: date
    iso: str  # the day as the tables key it
    hour: int
    neurons: float
    model: str
    status: int
    source: str
    estimated: bool
    surface: str

    @classmethod
    def at(cls, ts: float, account: str, neurons: float, model: str, status: int, source: str,
           estimated: bool, surface: str) -> _Entry:
        day, iso, hour = _utc_hour(int(ts // 3600))
        return cls(account, ts, day, iso, hour, neurons, model, status, source, estimated, surface)

    def journal_line(self) -> bytes:
        return encode_line(self.ts, self.account, self.model, self.neurons, self.status, self.source,
                           self.estimated, self.surface)

    @classmethod
    def from_journal(cls, line: JournalLine) -> _Entry:
        return cls.at(line.ts, line.account, line.neurons, line.model, line.status, line.source,
                      line.estimated, line.surface)


@functools.lru_cache(maxsize=256)
def _utc_hour(hours_since_epoch: int) -> tuple[date, str, int]:
    """(UTC day, the day as the tables key it, hour of day) of an hour: charges in the same hour
    share one answer instead of building a datetime each."""
    start = datetime.fromtimestamp(hours_since_epoch * 3600, UTC)
    return start.date(), start.date().isoformat(), start.hour


def next_reset(day: date) -> datetime:
    """The free allowance of `day` resets at the next 00:00 UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


class Ledger:
    """Per-account, per-UTC-day neuron accounting.

    Wall rule (free plan): a call is refused with `daily_limit` (4006) when the account's neurons
    for the day have ALREADY reached the allowance (`total >= daily_neurons`) before the call, so
    the call that crosses the wall goes through and the next one is refused. Concurrent calls
    admitted just under the wall all go through too (the check is not a reservation). To refuse
    instead any call that would cross, change `_wall_reached` (the one comparison).

    Paid plan: never refused for the allowance; neurons beyond it are overage billed at
    $0.011 / 1,000. `requires_paid` models are refused on the free plan (5035). With
    `rate_limits=True`, more than `rate_limit_rpm(model, task)` admitted calls per account and
    model in the last 60 s are refused (`rate_limited`, 3040).

    `admit()` does not record refusals: the caller answers the error and calls `record_refusal`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        plan: Plan | str = Plan.FREE,
        daily_neurons: float = 10_000,
        rate_limits: bool = False,
        prices: PriceBook | None = None,
        durable: bool = True,
        busy_timeout: float = 30.0,
        background_checkpoints: bool = False,
    ) -> None:
        self.path = str(path)
        self.clock: Clock = clock or SystemClock()
        self.plan = Plan(plan)
        self.daily_neurons = float(daily_neurons)
        self.rate_limits = rate_limits
        self.prices = prices or load_prices()
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        if self.path != MEMORY:
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._totals: dict[tuple[str, str], float] = {}
        self._pending: list[tuple[_Entry, asyncio.Future[ChargeResult]]] = []
        self._durable = durable
        self._journal: Journal | None = None
        self._backlog: list[tuple[int, _Entry]] = []  # journaled, not yet in SQLite, with end offsets
        self._drain_timer: asyncio.TimerHandle | None = None
        self._checkpointer: Checkpointer | None = None
        self._busy_retries = 0
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._init_db(durable, busy_timeout)
        if background_checkpoints and self.path != MEMORY:
            # The server: checkpoints run on a thread (emulator/accounting/checkpoint.py), not in a drain.
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = Checkpointer(self.path, busy_timeout=busy_timeout)

    def _init_db(self, durable: bool, busy_timeout: float) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if self.path != MEMORY:
            # Switching to WAL needs a moment of exclusive access; other workers may be starting.
            deadline = _time.monotonic() + busy_timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError:
                    if _time.monotonic() > deadline:
                        raise
                    _time.sleep(0.01)
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        with self._write() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            for table, column, declaration in _ADDED_COLUMNS:
                if column not in {row[1] for row in c.execute(f"PRAGMA table_info({table})")}:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        self.catch_up()  # journals a killed server left behind

    def catch_up(self) -> None:
        """Bring SQLite up to date with every journal of this file: this process's backlog, the
        unapplied lines of other live processes' journals, and journals left by dead ones (applied,
        then removed). Every read of the ledger catches up first, so it sees every answered call."""
        if self.path == MEMORY:
            return
        self.drain()
        own = self._journal.name if self._journal is not None else None
        for journal in journals(self.path, skip=own):
            try:
                with self._write() as c:
                    lines, end = journal.lines(self._applied(c, journal.name))
                    if lines:
                        self._insert(c, [_Entry.from_journal(line) for line in lines])
                        self._mark(c, journal.name, end)
            finally:
                journal.close()
            if journal.orphan:
                with self._write() as c:
                    self._forget(c, journal.name)
        self._totals.clear()  # other processes' charges just arrived: re-read totals when needed

    @contextmanager
    def _write(self, *, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; with `wait=False`, raises `WriterBusy` at once if another process
        is writing instead of queueing for its turn."""
        with self._lock, self._writer_turn(wait=wait):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _writer_turn(self, *, wait: bool = True) -> Iterator[None]:
        """Processes sharing the file queue on a kernel lock before writing: SQLite's own busy
        handler sleeps in growing steps (1, 2, 5 … 100 ms), which made two workers slower than one;
        a blocked flock wakes as soon as the other transaction ends."""
        if self._lock_fd is None:
            yield
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WriterBusy from None
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:
        self.catch_up()
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _now(self) -> datetime:
        return _aware(self.clock.now())

    def _wall_reached(self, day_total: float) -> bool:
        # THE wall rule: refuse once the allowance is already used up; the crossing call passes.
        return day_total >= self.daily_neurons

    @staticmethod
    def _day_total(conn: sqlite3.Connection, account: str, day: str) -> float:
        row = conn.execute(
            "SELECT COALESCE(SUM(neurons), 0) FROM daily WHERE account = ? AND day = ?", (account, day)
        ).fetchone()
        return float(row[0])

    def record_settings(self) -> None:
        """Store this server's plan and allowance in the file, so `workers-ai-emulator usage` can
        report a stopped server's usage with the plan it ran under."""
        with self._write() as c:
            c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          [("plan", self.plan.value), ("daily_neurons", repr(self.daily_neurons))])

    def stored_settings(self) -> dict[str, str]:
        """The plan and allowance the last server on this file ran with ({} if none was recorded)."""
        return {str(k): str(v) for k, v in self._read("SELECT key, value FROM meta")}

    def day_total(self, account: str, day: date | None = None) -> float:
        """The account's neurons for the day. Totals are refreshed from the file at every commit this
        process makes (so they include other workers' charges up to then) and read from the file
        when unknown; admission therefore costs no query on the hot path."""
        d = (day or self._now().date()).isoformat()
        known = self._totals.get((account, d))
        if known is not None:
            return known
        with self._lock:
            total = self._day_total(self._conn, account, d)
        self._totals[(account, d)] = total
        return total

    def pending_total(self, account: str) -> float:
        """The account's neurons for today charged in this event-loop turn and not yet booked into
        `day_total` (charge_async stores a turn's charges together)."""
        if not self._pending:
            return 0.0
        today = self._now().date()
        return sum(e.neurons for e, _ in self._pending if e.account == account and e.day == today)

    def admit(self, account: str, model: str, *, task: str, requires_paid: bool) -> Admission:
        if self.plan is Plan.PAID and not self.rate_limits:
            return ADMITTED  # nothing to check: no wall, no rate window
        now = self._now()
        if self.plan is Plan.FREE:
            if requires_paid:
                return Admission(False, ErrorKind.REQUIRES_PAID)
            if self._wall_reached(self.day_total(account, now.date())):
                return Admission(False, ErrorKind.DAILY_LIMIT)
        if self.rate_limits:
            rpm = self.prices.rate_limit_rpm(model, task)
            if rpm is not None and not self._take_rate_slot(account, model, now, rpm):
                return Admission(False, ErrorKind.RATE_LIMITED)
        return ADMITTED

    def _take_rate_slot(self, account: str, model: str, now: datetime, rpm: int) -> bool:
        ts = now.timestamp()
        # Count and insert in one write transaction so workers sharing the file cannot both take
        # the last slot.
        with self._write() as c:
            c.execute(
                "DELETE FROM rate_hits WHERE account = ? AND model = ? AND ts <= ?",
                (account, model, ts - RATE_WINDOW_SECONDS),
            )
            (used,) = c.execute(
                "SELECT COUNT(*) FROM rate_hits WHERE account = ? AND model = ?", (account, model)
            ).fetchone()
            if used >= rpm:
                return False
            c.execute("INSERT INTO rate_hits (account, model, ts) VALUES (?, ?, ?)", (account, model, ts))
            return True

    def charge(
        self,
        account: str,
        model: str,
        neurons: float,
        *,
        status: int = 200,
        estimated: bool = False,
        source: str = "mock",
        surface: str = "",
    ) -> ChargeResult:
        """Record one finished call and the surface it arrived on. In "mock" mode the emulator priced
        the call itself, so a model whose price rule is an estimate is marked estimated even if the
        caller did not say so."""
        entry = self._entry(account, model, neurons, status, estimated, source, surface)
        self.drain()  # in order after the journaled charges
        return self._commit([entry])[0]

    async def charge_async(
        self,
        account: str,
        model: str,
        neurons: float,
        *,
        status: int = 200,
        estimated: bool = False,
        source: str = "mock",
        surface: str = "",
    ) -> ChargeResult:
        """The server's `charge`, in groups: the charges of one event-loop turn are stored together
        (one copy into the mapped journal, plus an msync when durable; one transaction for an
        in-memory ledger) and each caller resumes once its group is stored, so an answer sent after
        it survives a kill -9. Storing each charge at once measured slower on the server (about
        +25% CPU a call): the shared pause also batches the answers, so the loop and the kernel
        handle them together instead of one wake-up at a time."""
        entry = self._entry(account, model, neurons, status, estimated, source, surface)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[ChargeResult] = loop.create_future()
        self._pending.append((entry, waiter))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_pending)
        return await waiter

    def _flush_pending(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = self._journal_batch([entry for entry, _ in batch])
        except Exception as exc:  # every waiter learns the batch failed; none is left hanging
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), result in zip(batch, results, strict=True):
            if not waiter.done():
                waiter.set_result(result)

    def _journal_batch(self, entries: list[_Entry]) -> list[ChargeResult]:
        """Append a batch to the journal (one write) and book it in the in-memory day totals."""
        if self.path == MEMORY:
            return self._commit(entries)  # nothing outlives the process anyway
        lines = [e.journal_line() for e in entries]
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        if self._journal is not None and not self._journal.fits(len(data)):
            self._retire_journal()
        if self._journal is None:
            # A batch bigger than a whole journal (never seen: ~14,000 charges in one loop turn) gets
            # a journal of its size rather than an error.
            self._journal = Journal(self.path, fsync=self._durable, at_least=len(data))
        end = self._journal.append(data) - len(data)
        results = []
        for e, line in zip(entries, lines, strict=True):
            end += len(line)
            self._backlog.append((end, e))
            key = (e.account, e.iso)
            before = self._totals.get(key)
            if before is None:
                before = self.day_total(e.account, e.day)
            self._totals[key] = before + e.neurons
            results.append(self._result(e.day, e.neurons, before))
        self._schedule_drain()
        return results

    def _schedule_drain(self) -> None:
        if self._drain_timer is not None and len(self._backlog) < DRAIN_BATCH:
            return  # already due soon (and asking for the running loop costs a getpid() syscall)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.drain()
            return
        if len(self._backlog) >= DRAIN_BATCH:
            loop.call_soon(self.drain)
        elif self._drain_timer is None:
            self._drain_timer = loop.call_later(DRAIN_SECONDS, self._timed_drain)

    def drain(self, *, wait: bool = True) -> None:
        """Move the journaled charges into SQLite (one transaction) and refresh the day totals from
        the file, other workers' charges included. Every read of the ledger drains first.

        The drain timer passes `wait=False`: while another worker is writing, the drain comes back a
        moment later instead of holding up this worker's event loop (up to `BUSY_RETRIES` times,
        then it queues for its turn like any other write)."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if not self._backlog or self._journal is None:
            return
        journal = self._journal
        try:
            with self._write(wait=wait or self._busy_retries >= BUSY_RETRIES) as c:
                applied = self._applied(c, journal.name)  # a reader elsewhere may have applied some
                totals = self._apply(c, [e for end, e in self._backlog if end > applied])
                self._mark(c, journal.name, journal.size)
        except WriterBusy:
            self._busy_retries += 1
            self._drain_timer = asyncio.get_running_loop().call_later(BUSY_RETRY_SECONDS, self._timed_drain)
            return
        self._busy_retries = 0
        self._backlog = []
        self._totals.update(totals)

    def _timed_drain(self) -> None:
        self._drain_timer = None
        self.drain(wait=False)

    def _retire_journal(self) -> None:
        """Apply this process's journal to its end and delete it; the next charge opens a new one."""
        self.drain()
        journal, self._journal = self._journal, None
        if journal is None:
            return
        journal.remove()
        with self._write() as c:
            self._forget(c, journal.name)

    def _entry(self, account: str, model: str, neurons: float, status: int, estimated: bool,
               source: str, surface: str) -> _Entry:
        est = estimated or (source == "mock" and self.prices.rule(model).estimated)
        return _Entry.at(self.clock.timestamp(), account, max(0.0, float(neurons)), model, status, source,
                         est, surface)

    def _commit(self, entries: list[_Entry]) -> list[ChargeResult]:
        """Write charges in one transaction; day totals are re-read inside it (other workers' charges
        included) and kept for `admit`."""
        with self._write() as c:
            results = [self._result(e.day, e.neurons, 0.0) for e in entries]
            totals = self._apply(c, entries, results)
        self._totals.update(totals)
        return results

    def _apply(self, c: sqlite3.Connection, entries: list[_Entry],
               results: list[ChargeResult] | None = None) -> dict[tuple[str, str], float]:
        """Insert charges inside a transaction; returns the day totals after them. With `results`,
        fills in each charge's result (the day total before it comes from the file)."""
        totals: dict[tuple[str, str], float] = {}
        for i, e in enumerate(entries):
            key = (e.account, e.iso)
            before = totals[key] if key in totals else self._day_total(c, e.account, e.iso)
            totals[key] = before + e.neurons
            if results is not None:
                results[i] = self._result(e.day, e.neurons, before)
        self._insert(c, entries)
        return totals

    @staticmethod
    def _insert(c: sqlite3.Connection, entries: list[_Entry]) -> None:
        c.executemany(
            "INSERT INTO daily (account, day, model, requests, errors, neurons, estimated)"
            " VALUES (?, ?, ?, 1, ?, ?, ?)"
            " ON CONFLICT (account, day, model) DO UPDATE SET"
            " requests = requests + 1, errors = errors + excluded.errors,"
            " neurons = neurons + excluded.neurons, estimated = MAX(estimated, excluded.estimated)",
            [(e.account, e.iso, e.model, int(e.status >= 400), e.neurons,
              int(e.estimated)) for e in entries],
        )
        c.executemany(
            "INSERT INTO calls (ts, account, day, hour, model, neurons, status, source, estimated, surface)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(e.ts, e.account, e.iso, e.hour, e.model, e.neurons,
              e.status, e.source, int(e.estimated), e.surface) for e in entries],
        )

    @staticmethod
    def _applied(c: sqlite3.Connection, name: str) -> int:
        row = c.execute("SELECT applied FROM journals WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _mark(c: sqlite3.Connection, name: str, applied: int) -> None:
        c.execute("INSERT INTO journals (name, applied) VALUES (?, ?)"
                  " ON CONFLICT (name) DO UPDATE SET applied = excluded.applied", (name, applied))

    @staticmethod
    def _forget(c: sqlite3.Connection, name: str) -> None:
        """Drop a removed journal's mark (only after its file is gone: a mark that outlives its file is
        harmless, a file without its mark would be applied again)."""
        c.execute("DELETE FROM journals WHERE name = ?", (name,))

    def _result(self, day: date, neurons: float, before: float) -> ChargeResult:
        after = before + neurons
        overage = max(0.0, after - max(before, self.daily_neurons))
        return ChargeResult(
            day=day,
            neurons=neurons,
            day_total=after,
            overage_neurons=overage,
            overage_dollars=dollars(overage) if overage and self.plan is Plan.PAID else 0.0,
        )

    def record_refusal(self, account: str, model: str, code: int) -> None:
        """Count a refused call (4006 / 5035 / 3040 …) for the day's usage report."""
        day = self._now().date().isoformat()
        with self._write() as c:
            c.execute(
                "INSERT INTO refusals (account, day, model, code, count) VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT (account, day, model, code) DO UPDATE SET count = count + 1",
                (account, day, model, int(code)),
            )

    def usage(self, *, account: str | None = None, day: date | None = None) -> UsageReport:
        """One UTC day's usage, per model and in total, for one account or all of them.

        For all accounts, `free_allowance_left` is that of the account nearest its wall and
        overage is summed per account (each account has its own allowance).
        """
        self.catch_up()
        d = day or self._now().date()
        where, args = "day = ?", [d.isoformat()]
        if account is not None:
            where, args = "day = ? AND account = ?", [d.isoformat(), account]
        with self._lock:
            rows = self._conn.execute(
                f"SELECT model, SUM(requests), SUM(errors), SUM(neurons), MAX(estimated)"
                f" FROM daily WHERE {where} GROUP BY model",
                args,
            ).fetchall()
            refusal_rows = self._conn.execute(
                f"SELECT model, code, SUM(count) FROM refusals WHERE {where} GROUP BY model, code", args
            ).fetchall()
            per_account = self._conn.execute(
                f"SELECT account, SUM(neurons) FROM daily WHERE {where} GROUP BY account", args
            ).fetchall()
            call_rows = self._conn.execute(
                f"SELECT account, model, neurons FROM calls WHERE {where} ORDER BY id", args
            ).fetchall()
            surface_rows = self._conn.execute(
                f"SELECT surface, COUNT(*), SUM(status >= 400), SUM(neurons) FROM calls WHERE {where}"
                f" GROUP BY surface", args
            ).fetchall()

        models: dict[str, ModelUsage] = {}
        for model, requests, errors, neurons, est in rows:
            models[model] = ModelUsage(
                model=model,
                requests=int(requests),
                errors=int(errors),
                neurons=float(neurons),
                dollars=dollars(float(neurons)),
                estimated=bool(est),
            )
        for model, code, count in refusal_rows:
            mu = models.setdefault(model, ModelUsage(model=model))
            mu.refusals[str(code)] = mu.refusals.get(str(code), 0) + int(count)
            mu.refused += int(count)
        self._attribute_overage(models, call_rows)
        ordered = sorted(models.values(), key=lambda m: (-m.neurons, m.model))
        surfaces = sorted(
            (SurfaceUsage(surface=surface or UNRECORDED_SURFACE, requests=int(count), errors=int(errors),
                          neurons=float(neurons), dollars=dollars(float(neurons)))
             for surface, count, errors, neurons in surface_rows),
            key=lambda s: (-s.neurons, s.surface),
        )

        totals = [float(t) for _, t in per_account]
        total = sum(m.neurons for m in ordered)
        overage = sum(max(0.0, t - self.daily_neurons) for t in totals) if self.plan is Plan.PAID else 0.0
        return UsageReport(
            account=account,
            day=d,
            plan=self.plan,
            daily_neurons=self.daily_neurons,
            models=ordered,
            requests=sum(m.requests for m in ordered),
            errors=sum(m.errors for m in ordered),
            refused=sum(m.refused for m in ordered),
            neurons=total,
            dollars=dollars(total),
            estimated=any(m.estimated for m in ordered),
            free_allowance_left=max(0.0, self.daily_neurons - max(totals, default=0.0)),
            overage_neurons=overage,
            overage_dollars=dollars(overage),
            resets_at=next_reset(d),
            surfaces=surfaces,
        )

    def _attribute_overage(self, models: dict[str, ModelUsage], call_rows: list[tuple]) -> None:
        running: dict[str, float] = {}
        for account_id, model, neurons in call_rows:
            before = running.get(account_id, 0.0)
            after = before + float(neurons)
            running[account_id] = after
            over = max(0.0, after - max(before, self.daily_neurons))
            if over > 0 and model in models:
                models[model].overage_neurons += over
        for mu in models.values():
            mu.overage_dollars = dollars(mu.overage_neurons) if self.plan is Plan.PAID else 0.0

    def hourly(self, *, account: str | None = None, day: date | None = None) -> list[tuple[int, float]]:
        """Neurons per UTC hour 0..23 of one day (every hour present, zero when idle)."""
        d = (day or self._now().date()).isoformat()
        if account is None:
            rows = self._read("SELECT hour, SUM(neurons) FROM calls WHERE day = ? GROUP BY hour", (d,))
        else:
            rows = self._read(
                "SELECT hour, SUM(neurons) FROM calls WHERE day = ? AND account = ? GROUP BY hour",
                (d, account),
            )
        by_hour = {int(h): float(n) for h, n in rows}
        return [(h, by_hour.get(h, 0.0)) for h in range(24)]

    def call_rows(self, account: str) -> list[tuple[datetime, str, float]]:
        """Every charged call of an account, oldest first: (UTC time, model, neurons)."""
        rows = self._read("SELECT ts, model, neurons FROM calls WHERE account = ? ORDER BY id", (account,))
        return [(datetime.fromtimestamp(ts, UTC), str(model), float(n)) for ts, model, n in rows]

    def days(self) -> list[date]:
        rows = self._read("SELECT day FROM daily UNION SELECT day FROM refusals ORDER BY day")
        return [date.fromisoformat(r[0]) for r in rows]

    def reset(self, account: str | None = None) -> None:
        """Forget every charge and refusal, or only one account's (a test's own account)."""
        # Every worker's journaled charges first: applied after the delete, they would outlive it.
        self.catch_up()
        self._totals.clear()
        with self._write() as c:
            for table in ("daily", "refusals", "calls", "rate_hits"):
                if account is None:
                    c.execute(f"DELETE FROM {table}")
                else:
                    c.execute(f"DELETE FROM {table} WHERE account = ?", (account,))

    def forget_totals(self) -> None:
        """Read the day totals from the file again: another process reset it."""
        self._totals.clear()

    def close(self) -> None:
        if self._pending:
            self._flush_pending()
        self._retire_journal()
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
