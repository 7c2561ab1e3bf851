"""Tests for the ledger: free-plan wall, day rollover, paid overage, limits, durability, concurrency."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from emulator.accounting.ledger import Admission, FixedClock, Ledger, Plan, UsageReport, next_reset
from emulator.accounting.pricing import dollars

ROOT = Path(__file__).resolve().parents[1]
LLAMA = "@cf/meta/llama-3.1-8b-instruct"
TG = "Text Generation"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 14, 12, 0, tzinfo=UTC))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def free(db: Path, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger(db, clock=clock, daily_neurons=100) as ledger:
        yield ledger


def admit(
    ledger: Ledger, account: str = "acc", model: str = LLAMA, *, requires_paid: bool = False
) -> Admission:
    return ledger.admit(account, model, task=TG, requires_paid=requires_paid)


def test_wall_lets_the_crossing_call_through_and_refuses_the_next(free: Ledger) -> None:
    # Allowance 100, 30 per call: before-call totals 0, 30, 60, 90 are all under the wall, so four
    # calls pass (day total 120) and the fifth is refused.
    for expected_total in (30, 60, 90, 120):
        assert admit(free) == Admission(True, None)
        assert free.charge("acc", LLAMA, 30).day_total == expected_total
    refused = admit(free)
    assert refused == Admission(False, "daily_limit")
    assert refused.code == 4006
    # Another account has its own allowance.
    assert admit(free, "other").allowed


def test_wall_refuses_when_allowance_is_exactly_used(free: Ledger) -> None:
    for _ in range(3):
        assert admit(free).allowed
        free.charge("acc", LLAMA, 100 / 3)
    free.charge("acc", LLAMA, 100 - free.day_total("acc"))
    assert free.day_total("acc") == 100
    assert admit(free).reason == "daily_limit"


def test_free_plan_charge_reports_overage_but_never_bills_it(free: Ledger) -> None:
    free.charge("acc", LLAMA, 90)
    result = free.charge("acc", LLAMA, 30)
    assert result.overage_neurons == pytest.approx(20)
    assert result.overage_dollars == 0.0
    report = free.usage(account="acc")
    assert report.overage_neurons == 0.0 and report.overage_dollars == 0.0
    assert report.free_allowance_left == 0.0


def test_day_rollover_at_midnight_utc(db: Path) -> None:
    clock = FixedClock(datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC))
    with Ledger(db, clock=clock, daily_neurons=100) as ledger:
        ledger.charge("acc", LLAMA, 150)
        assert admit(ledger).reason == "daily_limit"
        report = ledger.usage(account="acc")
        assert report.resets_at == datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
        clock.advance(timedelta(seconds=1))
        assert clock.now() == datetime(2026, 3, 15, 0, 0, 0, tzinfo=UTC)
        assert admit(ledger).allowed
        assert ledger.day_total("acc") == 0.0
        ledger.charge("acc", LLAMA, 10)
        assert ledger.usage(account="acc").neurons == 10
        assert ledger.usage(account="acc").free_allowance_left == 90
        assert ledger.usage(account="acc", day=date(2026, 3, 14)).neurons == 150
        assert ledger.days() == [date(2026, 3, 14), date(2026, 3, 15)]


def test_day_follows_utc_not_local_offset(db: Path) -> None:
    from datetime import timezone

    plus5 = timezone(timedelta(hours=5))
    # 02:00 at +05:00 is 21:00 UTC the previous day.
    clock = FixedClock(datetime(2026, 3, 15, 2, 0, tzinfo=plus5))
    with Ledger(db, clock=clock) as ledger:
        assert ledger.charge("acc", LLAMA, 1).day == date(2026, 3, 14)
        assert ledger.hourly(day=date(2026, 3, 14))[21] == (21, 1.0)
    naive = FixedClock(datetime(2026, 3, 15, 2, 0))
    assert naive.now().tzinfo is UTC


def test_paid_plan_overage_neurons_and_dollars(db: Path, clock: FixedClock) -> None:
    with Ledger(db, clock=clock, plan=Plan.PAID, daily_neurons=100) as ledger:
        results = []
        for _ in range(5):
            assert admit(ledger).allowed
            results.append(ledger.charge("acc", LLAMA, 30))
        assert [r.overage_neurons for r in results] == [0, 0, 0, 20, 30]
        assert results[3].overage_dollars == pytest.approx(20 * 0.011 / 1000)
        report = ledger.usage(account="acc")
        assert report.plan is Plan.PAID
        assert report.neurons == 150
        assert report.overage_neurons == 50
        assert report.overage_dollars == pytest.approx(50 * 0.011 / 1000)
        assert report.dollars == pytest.approx(dollars(150))
        assert report.free_allowance_left == 0


def test_paid_plan_default_allowance_is_ten_thousand(db: Path, clock: FixedClock) -> None:
    with Ledger(db, clock=clock, plan="paid") as ledger:
        ledger.charge("acc", LLAMA, 12_500)
        assert admit(ledger).allowed
        report = ledger.usage(account="acc")
        assert report.overage_neurons == 2_500
        assert report.overage_dollars == pytest.approx(0.0275)


def test_requires_paid(db: Path, clock: FixedClock) -> None:
    kimi = "@cf/moonshotai/kimi-k2.6"
    with Ledger(db, clock=clock) as ledger:
        refused = admit(ledger, model=kimi, requires_paid=True)
        assert refused == Admission(False, "requires_paid") and refused.code == 5035
    with Ledger(db, clock=clock, plan=Plan.PAID) as ledger:
        assert admit(ledger, model=kimi, requires_paid=True).allowed


def test_rate_limit_per_account_and_model(db: Path, clock: FixedClock) -> None:
    kimi = "@cf/moonshotai/kimi-k2.6"  # 20 rpm (reference §8 frontier limit)
    with Ledger(db, clock=clock, plan=Plan.PAID, rate_limits=True) as ledger:
        for _ in range(20):
            assert admit(ledger, model=kimi).allowed
            clock.advance(timedelta(seconds=1))
        refused = admit(ledger, model=kimi)
        assert refused == Admission(False, "rate_limited") and refused.code == 3040
        assert admit(ledger, "other", model=kimi).allowed
        assert admit(ledger, model=LLAMA).allowed  # different model, its own 300 rpm window
        # The window slides: the first call was at +0 s, now it is +20 s; at +60 s one slot frees.
        clock.advance(timedelta(seconds=40))
        assert admit(ledger, model=kimi).allowed
        assert admit(ledger, model=kimi).reason == "rate_limited"
        # A task without a published limit is never rate limited.
        for _ in range(50):
            assert ledger.admit(
                "acc", "@cf/myshell-ai/melotts", task="Text-to-Speech", requires_paid=False
            ).allowed


def test_rate_limits_off_by_default(db: Path, clock: FixedClock) -> None:
    with Ledger(db, clock=clock, plan=Plan.PAID) as ledger:
        assert all(admit(ledger, model="@cf/moonshotai/kimi-k2.6").allowed for _ in range(50))


def test_refusals_errors_and_estimates_in_usage(free: Ledger) -> None:
    free.charge("acc", LLAMA, 10)
    free.charge("acc", LLAMA, 0, status=500)
    free.charge("acc", "@cf/tiiuae/falcon-7b-instruct", 5)  # estimated price rule
    free.charge("acc", "@cf/qwen/qwen1.5-7b-chat-awq", 5, source="replay")  # real neurons: not estimated
    free.record_refusal("acc", LLAMA, 4006)
    free.record_refusal("acc", LLAMA, 4006)
    free.record_refusal("acc", "@cf/moonshotai/kimi-k2.6", 5035)
    report = free.usage(account="acc")
    by_model = {m.model: m for m in report.models}
    llama = by_model[LLAMA]
    assert (llama.requests, llama.errors, llama.neurons, llama.refused) == (2, 1, 10, 2)
    assert llama.refusals == {"4006": 2}
    assert not llama.estimated
    assert by_model["@cf/tiiuae/falcon-7b-instruct"].estimated
    assert not by_model["@cf/qwen/qwen1.5-7b-chat-awq"].estimated
    kimi = by_model["@cf/moonshotai/kimi-k2.6"]
    assert (kimi.requests, kimi.refused, kimi.refusals) == (0, 1, {"5035": 1})
    assert (report.requests, report.errors, report.refused, report.neurons) == (4, 1, 3, 20)
    assert report.estimated
    assert report.models[0].model == LLAMA  # ordered by neurons, largest first
    assert report.free_allowance_left == 80


def test_usage_json_for_the_control_plane(free: Ledger) -> None:
    free.charge("acc", LLAMA, 12.5)
    doc = json.loads(free.usage().model_dump_json())
    assert doc["day"] == "2026-03-14"
    assert doc["resets_at"].startswith("2026-03-15T00:00:00")
    assert doc["plan"] == "free"
    assert doc["account"] is None
    assert doc["models"][0]["neurons"] == 12.5
    assert UsageReport.model_validate(doc).neurons == 12.5


def test_usage_across_accounts(free: Ledger) -> None:
    free.charge("a", LLAMA, 70)
    free.charge("b", LLAMA, 20)
    report = free.usage()
    assert report.neurons == 90
    assert report.free_allowance_left == 30  # the account nearest its wall
    assert free.usage(account="b").free_allowance_left == 80
    assert free.usage(account="nobody").free_allowance_left == 100


def test_hourly_buckets(db: Path) -> None:
    clock = FixedClock(datetime(2026, 3, 14, 1, 10, tzinfo=UTC))
    with Ledger(db, clock=clock) as ledger:
        ledger.charge("a", LLAMA, 1.5)
        clock.set(datetime(2026, 3, 14, 1, 50, tzinfo=UTC))
        ledger.charge("b", LLAMA, 2.0)
        clock.set(datetime(2026, 3, 14, 13, 0, tzinfo=UTC))
        ledger.charge("a", LLAMA, 4.0)
        clock.set(datetime(2026, 3, 15, 1, 0, tzinfo=UTC))
        ledger.charge("a", LLAMA, 100.0)
        hours = ledger.hourly(day=date(2026, 3, 14))
        assert len(hours) == 24 and [h for h, _ in hours] == list(range(24))
        assert hours[1] == (1, 3.5) and hours[13] == (13, 4.0)
        assert sum(n for _, n in hours) == 7.5
        assert ledger.hourly(account="a", day=date(2026, 3, 14))[1] == (1, 1.5)
        assert ledger.hourly()[1] == (1, 100.0)  # today by default


def test_persistence_across_reopen(db: Path, clock: FixedClock) -> None:
    with Ledger(db, clock=clock, daily_neurons=100) as ledger:
        ledger.charge("acc", LLAMA, 60)
        ledger.charge("acc", LLAMA, 50)
        ledger.record_refusal("acc", LLAMA, 4006)
    with Ledger(db, clock=clock, daily_neurons=100) as ledger:
        assert ledger.day_total("acc") == 110
        assert admit(ledger).reason == "daily_limit"
        assert ledger.usage(account="acc").refused == 1


def test_reset(free: Ledger) -> None:
    free.charge("acc", LLAMA, 500)
    free.record_refusal("acc", LLAMA, 4006)
    free.reset()
    assert free.days() == []
    assert free.usage().models == []
    assert admit(free).allowed
    assert all(n == 0 for _, n in free.hourly())


def test_memory_ledger(clock: FixedClock) -> None:
    with Ledger(":memory:", clock=clock, daily_neurons=10) as ledger:
        ledger.charge("acc", LLAMA, 10)
        assert admit(ledger).reason == "daily_limit"


def test_next_reset() -> None:
    assert next_reset(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_wal_and_full_sync_on_file_db(db: Path) -> None:
    with Ledger(db) as ledger:
        assert ledger._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Ledger(db, durable=False) as ledger:
        assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_64_threads_on_one_ledger_lose_nothing(db: Path, clock: FixedClock) -> None:
    with Ledger(db, clock=clock, plan=Plan.PAID) as ledger:

        def work() -> None:
            for _ in range(50):
                ledger.charge("acc", LLAMA, 0.5)

        threads = [threading.Thread(target=work) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report = ledger.usage(account="acc")
        assert report.requests == 64 * 50
        assert report.neurons == 64 * 50 * 0.5


def test_threads_with_separate_connections_lose_nothing(db: Path, clock: FixedClock) -> None:
    ledgers = [Ledger(db, clock=clock, plan=Plan.PAID) for _ in range(8)]
    try:

        def work(ledger: Ledger) -> None:
            for _ in range(50):
                ledger.charge("acc", LLAMA, 0.25)

        threads = [threading.Thread(target=work, args=(ledgers[i % 8],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledgers[0].usage(account="acc").neurons == 16 * 50 * 0.25
    finally:
        for ledger in ledgers:
            ledger.close()


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import UTC, datetime
    from emulator.accounting.ledger import FixedClock, Ledger
    path, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ledger = Ledger(path, clock=FixedClock(datetime(2026, 3, 14, 12, tzinfo=UTC)), plan="paid")
    print(0, flush=True)
    while not os.path.exists(go):  # start together so the writers really contend
        time.sleep(0.005)
    for i in range(n):
        ledger.charge("acc", "@cf/meta/llama-3.1-8b-instruct", 1.0)
        if i % 10 == 9:
            print(i + 1, flush=True)
    ledger.close()
    """
)


def _spawn(db: Path, n: int) -> subprocess.Popen[str]:
    """A worker process charging 1 neuron n times once `<db>.go` exists; prints its count as it goes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    go = str(db) + ".go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(db), str(n), go], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "0"
    return proc


def test_several_processes_share_one_file(db: Path, clock: FixedClock) -> None:
    procs = [_spawn(db, 300) for _ in range(3)]
    Path(str(db) + ".go").touch()
    for p in procs:
        p.communicate(timeout=60)
        assert p.returncode == 0
    with Ledger(db, clock=clock) as ledger:
        report = ledger.usage(account="acc")
        assert report.requests == 900
        assert report.neurons == 900.0


def test_committed_charges_survive_kill_9(db: Path, clock: FixedClock) -> None:
    proc = _spawn(db, 1_000_000)
    Path(str(db) + ".go").touch()
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 200 and time.monotonic() < deadline:
        seen = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert seen >= 200
    with Ledger(db, clock=clock) as ledger:
        report = ledger.usage(account="acc")
        assert report.requests >= seen
        # The totals row and the call log are written in one transaction: they always agree.
        con = sqlite3.connect(db)
        (calls, neurons) = con.execute("SELECT COUNT(*), SUM(neurons) FROM calls").fetchone()
        con.close()
        assert calls == report.requests and neurons == report.neurons
