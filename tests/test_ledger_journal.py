"""The ledger's journal: charges reach a file with one write, SQLite later, and no reader misses or
double-counts one."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from emulator.accounting import journal as ledger_journal
from emulator.accounting import ledger as ledger_module
from emulator.accounting.ledger import FixedClock, Ledger

MODEL = "@cf/meta/llama-3.1-8b-instruct"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 14, 12, tzinfo=UTC))


def _journals(db: Path) -> list[Path]:
    return sorted(db.parent.glob(db.name + ledger_journal.SUFFIX + "*"))


def _rows(db: Path) -> tuple[int, float]:
    with sqlite3.connect(db) as conn:
        count, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(neurons), 0) FROM calls").fetchone()
    return int(count), float(total)


async def test_charges_are_journaled_first_and_drained_later(tmp_path: Path, clock: FixedClock) -> None:
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid")
    results = await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.5) for _ in range(10)))
    assert [r.day_total for r in results] == [1.5 * (i + 1) for i in range(10)]
    (journal,) = _journals(db)
    assert len(journal.read_bytes().rstrip(b"\0").splitlines()) == 10
    assert _rows(db) == (0, 0.0)  # not in SQLite yet …
    await asyncio.sleep(ledger_module.DRAIN_SECONDS * 3)
    assert _rows(db) == (10, 15.0)  # … but soon after, without any read
    assert ledger.day_total("acc") == 15.0
    ledger.close()
    assert _journals(db) == []


async def test_a_reader_elsewhere_applies_a_live_journal_and_nothing_counts_twice(
    tmp_path: Path, clock: FixedClock
) -> None:
    db = tmp_path / "l.sqlite3"
    server = Ledger(db, clock=clock, plan="paid")
    await asyncio.gather(*(server.charge_async("acc", MODEL, 2.0) for _ in range(5)))
    reader = Ledger(db, clock=clock, plan="paid")  # its own file descriptor: sees the journal as live
    assert reader.usage(account="acc").requests == 5
    assert _journals(db), "a live journal is applied, not removed"
    await asyncio.gather(*(server.charge_async("acc", MODEL, 2.0) for _ in range(3)))
    server.drain()  # the owner applies only the lines the reader did not
    assert _rows(db) == (8, 16.0)
    assert reader.usage(account="acc").neurons == 16.0
    server.close()
    reader.close()
    assert _rows(db) == (8, 16.0)


def test_an_orphaned_journal_is_applied_once_and_a_torn_line_is_ignored(
    tmp_path: Path, clock: FixedClock
) -> None:
    db = tmp_path / "l.sqlite3"
    Ledger(db, clock=clock).close()
    lines = [ledger_journal.JournalLine(clock.now().timestamp(), "acc", MODEL, 3.0, 200, "mock", False)
             for _ in range(4)]
    orphan = Path(str(db) + ledger_journal.SUFFIX + "999999-dead")
    orphan.write_bytes(b"".join(line.encode() for line in lines) + b'[17000')  # cut by a power loss
    with Ledger(db, clock=clock) as ledger:
        assert ledger.usage(account="acc").requests == 4
    assert not orphan.exists()
    with Ledger(db, clock=clock) as ledger:
        assert ledger.usage(account="acc").neurons == 12.0


async def test_a_full_journal_is_applied_and_replaced(tmp_path: Path, clock: FixedClock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_journal, "CAPACITY", 500)  # room for about four charges
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid")
    names = set()
    for _ in range(6):
        await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.0) for _ in range(5)))
        names.update(p.name for p in _journals(db))
        assert len(_journals(db)) <= 1
    assert len(names) > 1
    assert ledger.usage(account="acc").requests == 30
    ledger.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM journals").fetchone() == (0,)


def test_a_journal_holds_data_up_to_its_first_zero_byte(tmp_path: Path, clock: FixedClock) -> None:
    """The file is preallocated: zeros after the data are not lines, and a line cut by them (a copy
    another process has not finished) waits for later."""
    db = tmp_path / "l.sqlite3"
    Ledger(db, clock=clock).close()
    line = ledger_journal.JournalLine(clock.now().timestamp(), "acc", MODEL, 2.0, 200, "mock", False)
    orphan = Path(str(db) + ledger_journal.SUFFIX + "999998-zeros")
    orphan.write_bytes(line.encode() * 2 + line.encode()[:10] + b"\0" * 4096)
    with Ledger(db, clock=clock) as ledger:
        assert ledger.usage(account="acc").requests == 2


async def test_durable_ledger_syncs_each_batch(tmp_path: Path, clock: FixedClock,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_append = ledger_journal.Journal.append

    def counting(self: ledger_journal.Journal, data: bytes) -> int:
        synced.append(self.fsync)
        return real_append(self, data)

    monkeypatch.setattr(ledger_journal.Journal, "append", counting)
    ledger = Ledger(tmp_path / "l.sqlite3", clock=clock, durable=True)
    await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.0) for _ in range(3)))
    assert synced == [True]  # one batch, one synced append
    ledger.close()


async def test_the_servers_charge_is_in_the_journal_when_it_returns(
    tmp_path: Path, clock: FixedClock
) -> None:
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid", durable=False)
    await ledger.charge_async("acc", MODEL, 4.0)
    (journal,) = _journals(db)
    assert journal.read_bytes().rstrip(b"\0").count(b"\n") == 1  # visible to any reader, no msync
    ledger.close()


async def test_a_server_ledger_checkpoints_on_its_own_thread(tmp_path: Path, clock: FixedClock,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.accounting import checkpoint as ledger_checkpoint

    monkeypatch.setattr(ledger_checkpoint, "INTERVAL_SECONDS", 0.02)
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid", durable=False, background_checkpoints=True)
    assert ledger._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # not inside a drain
    checkpointer = ledger._checkpointer
    assert checkpointer is not None
    for _ in range(20):
        await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.0) for _ in range(10)))
        ledger.drain()
    runs = checkpointer.runs
    deadline = asyncio.get_running_loop().time() + 5
    while checkpointer.runs < runs + 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    with sqlite3.connect(db) as conn:
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert checkpointer.runs >= runs + 2 and busy == 0 and log == done  # nothing left to copy
    ledger.close()
    assert not checkpointer._thread.is_alive()
    assert _rows(db) == (200, 200.0)


async def test_a_batch_bigger_than_a_journal_gets_a_journal_of_its_size(
    tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_journal, "CAPACITY", 100)  # less than one batch of ten charges
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid")
    results = await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.0) for _ in range(10)))
    assert results[-1].day_total == 10.0
    assert ledger.usage(account="acc").requests == 10
    ledger.close()


async def test_a_timed_drain_never_waits_for_another_writer(tmp_path: Path, clock: FixedClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import os
    import time

    # The "other worker" below is this very thread: a drain that gave up retrying would wait forever.
    monkeypatch.setattr(ledger_module, "BUSY_RETRIES", 10**6)
    db = tmp_path / "l.sqlite3"
    ledger = Ledger(db, clock=clock, plan="paid", durable=False)
    other = os.open(str(db) + ".lock", os.O_RDWR)  # another worker, mid-transaction
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        await asyncio.gather(*(ledger.charge_async("acc", MODEL, 1.0) for _ in range(3)))
        started = time.monotonic()
        await asyncio.sleep(ledger_module.DRAIN_SECONDS * 4)  # timed drains fire and find it busy
        assert time.monotonic() - started < 1.0  # the loop was never held up
        assert _rows(db) == (0, 0.0)
        assert ledger.day_total("acc") == 3.0  # admission still counts them
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    await asyncio.sleep(ledger_module.BUSY_RETRY_SECONDS * 20)
    assert _rows(db) == (3, 3.0)  # the next try got its turn
    ledger.close()
