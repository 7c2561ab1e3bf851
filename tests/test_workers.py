"""`serve --workers 2`: two processes on one port, one ledger whose total equals the neuron headers sent."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulator.accounting.ledger import Ledger
from tests.conftest import ACCOUNT
from tests.serving import serve

MODELS = [
    ("@cf/meta/llama-3-8b-instruct", lambda i: {"prompt": f"question number {i}"}),
    ("@cf/baai/bge-small-en-v1.5", lambda i: {"text": [f"sentence {i}", "another one"]}),
    ("@cf/meta/m2m100-1.2b", lambda i: {"text": f"good morning {i}", "target_lang": "fr"}),
]


def call(base: str, i: int) -> float:
    model, make = MODELS[i % len(MODELS)]
    request = urllib.request.Request(
        f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{model}", data=json.dumps(make(i)).encode(),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"}, method="POST")
    # A new connection per call, so the kernel spreads calls over both workers.
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        return float(resp.headers["cf-ai-neurons"])


@pytest.mark.parametrize("calls", [120])
def test_two_workers_share_one_ledger_exactly(tmp_path: Path, calls: int) -> None:
    with (serve("--workers", "2", "--plan", "paid", data_dir=tmp_path) as (base, proc),
          ThreadPoolExecutor(8) as pool):
        neurons = list(pool.map(lambda i: call(base, i), range(calls)))
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0
    assert "2 workers" in out
    with Ledger(tmp_path / "ledger.sqlite3", plan="paid") as ledger:
        usage = ledger.usage(account=ACCOUNT)
    assert usage.requests == calls
    assert usage.neurons == pytest.approx(sum(neurons), abs=1e-6)
    assert sum(neurons) > 0


def test_workers_share_port_zero(tmp_path: Path) -> None:
    """`--port 0` picks one free port for every worker, and the banner names it."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "emulator", "serve", "--workers", "2", "--port", "0",
                             "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        port = int(first.split("listening on http://127.0.0.1:")[1].split()[0])
        assert call(f"http://127.0.0.1:{port}", 0) >= 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
