"""kill -9 mid-recording: cassettes stay whole and hold every answered call; the ledger keeps every charge."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from emulator.accounting.ledger import Ledger
from emulator.cassettes import load_cassette
from tests.conftest import ACCOUNT
from tests.fake_upstream import LLAMA, FakeUpstream, burst_then_kill_9, start_recording_server
from tests.serving import free_port, wait_ready

HEADERS = {"Authorization": "Bearer client-token"}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(event_gap=0.0)
    await fake.start()
    yield fake
    await fake.stop()


def _ledger(data_dir: Path) -> tuple[int, float]:
    Ledger(data_dir / "ledger.sqlite3").close()  # opening a ledger applies the dead server's journal
    with sqlite3.connect(data_dir / "ledger.sqlite3") as db:
        count, total = db.execute("SELECT COUNT(*), COALESCE(SUM(neurons), 0) FROM calls").fetchone()
    return int(count), float(total)


def _serve(port: int, upstream: FakeUpstream, tmp_path: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    return start_recording_server(port, upstream, tmp_path / "cassettes", "crash", data_dir, "--plan", "paid")


async def test_kill_9_loses_no_recorded_interaction_and_no_charged_neuron(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"  # the same ledger file across every restart
    rng = random.Random(11)
    answered: list[str] = []
    billed = 0.0
    for round_ in range(3):
        port = free_port()
        proc = _serve(port, upstream, tmp_path, data_dir)
        url = f"http://127.0.0.1:{port}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}"
        kill_after = rng.randint(3, 30)  # a different moment each round
        round_calls = await burst_then_kill_9(proc, url, HEADERS, [f"r{round_}-{i}" for i in range(80)],
                                              kill_after=kill_after)
        round_answered = [prompt for prompt, _ in round_calls]
        billed += sum(neurons for _, neurons in round_calls)
        answered += round_answered
        cassette = load_cassette((tmp_path / "cassettes" / "crash.json").read_bytes())  # never truncated
        stored = [i.request.body.json_["prompt"] for i in cassette.interactions]
        assert len(stored) == len(set(stored))
        assert set(answered) <= set(stored), set(answered) - set(stored)
        calls, total = _ledger(data_dir)
        # Every answered call was charged before its answer left; a call charged just before the kill
        # may never have reached its client, so the ledger can only hold more.
        assert calls >= len(answered)
        assert total + 1e-6 >= billed
    assert len(answered) >= 9


async def test_kill_9_in_mock_mode_keeps_every_charge(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    answered, billed = 0, 0.0
    for _ in range(2):
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--plan",
            "paid",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_ready, base)
            async with aiohttp.ClientSession() as session:
                for i in range(40):
                    body = {"prompt": f"p{answered}-{i}", "max_tokens": 8}
                    async with session.post(
                        f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}", json=body, headers=HEADERS
                    ) as resp:
                        assert resp.status == 200
                        billed += float(resp.headers["cf-ai-neurons"])
                        answered += 1
            os.kill(proc.pid, signal.SIGKILL)  # right after the last answer: nothing may be lost
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        calls, total = _ledger(data_dir)
        assert calls == answered
        assert abs(total - billed) < 1e-6
