"""The ledger records the surface each charged call arrived on (REST run/, OpenAI /v1, gateway compat,
the env.AI binding, realtime); `usage --by surface` and the control plane's usage JSON show it, and a
ledger file written before the column existed opens with its rows kept."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.accounting import journal as ledger_journal
from emulator.accounting.ledger import UNRECORDED_SURFACE, FixedClock, Ledger
from tests.conftest import AUTH, Emulator
from tests.fake_upstream import LLAMA

EMBED = "@cf/baai/bge-base-en-v1.5"
# The two tables as a ledger without surfaces wrote them (the rest are created when missing).
OLD_SCHEMA = """
CREATE TABLE daily (
    account TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0,
    neurons REAL NOT NULL DEFAULT 0, estimated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, day, model)
) WITHOUT ROWID;
CREATE TABLE calls (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, account TEXT NOT NULL, day TEXT NOT NULL,
    hour INTEGER NOT NULL, model TEXT NOT NULL, neurons REAL NOT NULL, status INTEGER NOT NULL,
    source TEXT NOT NULL, estimated INTEGER NOT NULL DEFAULT 0
);
"""


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def test_a_ledger_without_surfaces_opens_keeps_its_rows_and_records_surfaces_from_then_on(
    tmp_path: Path, clock: FixedClock
) -> None:
    db = tmp_path / "ledger.sqlite3"
    ts = clock.now().timestamp()
    day = clock.now().date().isoformat()
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT INTO daily VALUES ('acc', ?, ?, 1, 0, 5.0, 0)", (day, LLAMA))
        conn.execute("INSERT INTO calls (ts, account, day, hour, model, neurons, status, source, estimated)"
                     " VALUES (?, 'acc', ?, 0, ?, 5.0, 200, 'mock', 0)", (ts, day, LLAMA))
    conn.close()
    # A journal an older server left behind when it was killed: seven fields a line, no surface.
    old_line = json.dumps([ts, "acc", LLAMA, 2.0, 200, "mock", False]).encode() + b"\n"
    orphan = Path(str(db) + ledger_journal.SUFFIX + "999997-old")
    orphan.write_bytes(old_line)

    with Ledger(db, clock=clock) as ledger:
        ledger.charge("acc", LLAMA, 3.0, surface="binding")
        ledger.charge("acc", EMBED, 1.0, surface="native")
        report = ledger.usage(account="acc")
    assert not orphan.exists()
    assert report.requests == 4 and report.neurons == 11.0
    assert {(s.surface, s.requests, s.neurons) for s in report.surfaces} == {
        (UNRECORDED_SURFACE, 2, 7.0), ("binding", 1, 3.0), ("native", 1, 1.0)}
    assert [s.surface for s in report.surfaces] == [UNRECORDED_SURFACE, "binding", "native"]  # by neurons

    with Ledger(db, clock=clock) as again:  # the column is added once; opening again changes nothing
        assert again.usage(account="acc").surfaces == report.surfaces
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
    conn.close()
    assert columns.count("surface") == 1


def test_a_journal_line_keeps_the_surface_and_reads_the_older_seven_field_form() -> None:
    line = ledger_journal.JournalLine(1.0, "acc", LLAMA, 2.0, 200, "mock", False, "chat")
    assert ledger_journal.JournalLine.decode(line.encode().rstrip()) == line
    old = ledger_journal.JournalLine.decode(b'[1.0, "acc", "m", 2.0, 200, "mock", false]')
    assert old is not None and old.surface == ""
    assert ledger_journal.JournalLine.decode(b'[1.0, "acc", "m", 2.0, 200, "mock", false, "x", 9]') is None


def _binding_headers(model: str) -> dict[str, str]:
    return {"MF-Binding": "AI", "MF-URL": "https://workers-binding.ai/run?version=3",
            "MF-Header-content-type": "application/json", "MF-Header-cf-consn-model-id": model}


async def test_usage_json_counts_each_surface_over_http(emulator: Emulator) -> None:
    for _ in range(2):  # the second answer is the answer cache's: still charged to `native`
        assert (await emulator.run(LLAMA, {"prompt": "hello"})).status == 200
    assert (await emulator.run(EMBED, {"text": "hello"})).status == 200
    chat = await emulator.session.post(f"{emulator.ai}/v1/chat/completions", headers=AUTH,
                                       json={"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 200
    for _ in range(3):
        binding = await emulator.session.post(f"{emulator.base}/", headers=_binding_headers(LLAMA),
                                              data=json.dumps({"inputs": {"prompt": "hi"}, "options": {}}))
        assert binding.status == 200, await binding.text()
    gateway = await emulator.session.post(
        f"{emulator.base}/v1/{emulator.account}/my-gateway/compat/chat/completions", headers=AUTH,
        json={"model": f"workers-ai/{LLAMA}", "messages": [{"role": "user", "content": "hi"}]})
    assert gateway.status == 200, await gateway.text()

    usage = await (await emulator.session.get(f"{emulator.base}/__emulator__/usage")).json()
    by_surface = {s["surface"]: s for s in usage["surfaces"]}
    assert {k: v["requests"] for k, v in by_surface.items()} == {
        "native": 3, "chat": 1, "binding": 3, "compat_chat": 1}
    assert sum(s["requests"] for s in usage["surfaces"]) == usage["requests"]
    assert sum(s["neurons"] for s in usage["surfaces"]) == pytest.approx(usage["neurons"])
    # The request log names the same surfaces.
    log = await (await emulator.session.get(f"{emulator.base}/__emulator__/requests")).json()
    assert {e["surface"] for e in log["requests"]} == set(by_surface)


def test_usage_by_surface_table_from_a_running_server(tmp_path: Path) -> None:
    from tests.serving import serve
    from tests.test_ci_usage import ACCOUNT, cli, post

    with serve(data_dir=tmp_path / "data") as (base, _):
        post(f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}", b'{"prompt": "rest"}',
             {**AUTH, "Content-Type": "application/json"})
        post(f"{base}/", json.dumps({"inputs": {"prompt": "binding"}, "options": {}}).encode(),
             _binding_headers(LLAMA))
        port = base.rsplit(":", 1)[1]
        table = cli("usage", "--port", port, "--by", "surface")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["surface", "requests", "errors", "neurons", "dollars"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line and not line.startswith("-")}
    assert rows["native"][1] == "1" and rows["binding"][1] == "1" and rows["TOTAL"][1] == "2"
    # Read from the ledger on disk as well, once the server is gone.
    offline = subprocess.run([sys.executable, "-m", "emulator", "usage", "--data-dir", str(tmp_path / "data"),
                              "--by", "surface", "--json"], capture_output=True, text=True, timeout=60)
    assert offline.returncode == 0, offline.stderr
    assert {s["surface"] for s in json.loads(offline.stdout)["surfaces"]} == {"native", "binding"}
