"""The benchmark script runs end to end on a tiny load and writes its JSON (not a performance test)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_on_a_tiny_load(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--duration", "0.3", "--rounds", "1",
         "--scenarios", "baseline,text", "--concurrency", "1,4", "--loadgen", "python", "--no-pin",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1 = a target failed, which a smoke run may
    assert "vs base" in proc.stdout
    summary = json.loads(out.read_text())
    rows = {(r["scenario"], r["concurrency"]): r for r in summary["rows"]}
    assert set(rows) == {("baseline", 1), ("baseline", 4), ("text", 1), ("text", 4)}
    assert all(r["rps"] > 0 and r["errors"] == 0 for r in rows.values())


@pytest.mark.parametrize("loadgen", ["python", "wrk"])
def test_bench_drives_the_binding_with_its_miniflare_headers(tmp_path: Path, loadgen: str) -> None:
    """The binding scenario's MF-* headers reach the server through either load generator: every
    request is answered (a request without them would be refused as a REST path)."""
    if loadgen == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk); the Python load generator is tested")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--duration", "1", "--rounds", "1",
         "--scenarios", "binding", "--concurrency", "16", "--loadgen", loadgen, "--no-pin",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "binding text (env.AI.run)" in proc.stdout
    summary = json.loads(out.read_text())
    row = next(r for r in summary["rows"] if r["scenario"] == "binding")
    assert row["table"] == "varied" and row["rps"] > 0 and row["errors"] == 0
    assert any(t["target"].startswith("varied binding") and t["limit"] == 0.40 for t in summary["targets"])


def test_bench_reports_the_embeddings_floor_beside_the_emulator(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--rounds", "1", "--scenarios", "embeddings_latency",
         "--no-pin", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    latency = json.loads(out.read_text())["special"]["embeddings_latency"]
    # Both measured over HTTP in the same run: the emulator's answer and the bare floor handler's.
    assert latency["p50_ms"] > 0 and latency["floor_p50_ms"] > 0
    assert "floor" in proc.stdout


def test_bench_prints_the_varied_table_before_the_repeated_one(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--duration", "0.3", "--rounds", "1",
         "--scenarios", "text-repeated,text", "--concurrency", "16", "--loadgen", "python", "--no-pin",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert 0 <= proc.stdout.index("Varied requests") < proc.stdout.index("One request repeated")
    summary = json.loads(out.read_text())
    tables = {r["scenario"]: r["table"] for r in summary["rows"]}
    assert tables == {"baseline": "baseline", "text": "varied", "text-repeated": "repeated"}
    names = [t["target"] for t in summary["targets"]]
    assert names[0].startswith("varied text") and any(n.startswith("repeated text") for n in names)


def test_bench_measures_the_floors_on_the_baseline_server(tmp_path: Path) -> None:
    """The text and 32-text embeddings floors (bench/baseline.py) answer every varied call, in the
    baseline table, so each emulator row can be read against what a bare server reaches."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--duration", "0.3", "--rounds", "1",
         "--scenarios", "text-floor,embeddings-floor", "--concurrency", "16", "--loadgen", "python",
         "--no-pin", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    rows = {r["scenario"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("text-floor", "embeddings-floor"):
        assert rows[name]["table"] == "baseline", rows[name]
        assert rows[name]["rps"] > 0 and rows[name]["errors"] == 0, rows[name]
    assert "floor: text (run/)" in proc.stdout


async def test_the_load_generator_never_sends_the_same_varied_body_twice(aiohttp_server: Any) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from loadgen import Job, run

    seen: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(body=b"{}", content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    server = await aiohttp_server(app)
    templates = [{"method": "POST", "path": "/a", "body": '{"prompt":"one @@N@@","seed":@@N@@}'},
                 {"method": "POST", "path": "/b", "body": '{"fixed":true}'}]
    result = await run(Job(host="127.0.0.1", port=server.port, requests=templates, concurrency=4,
                           duration=10.0, max_requests=200, vary_base=1000))
    varied = [b for b in seen if b != b'{"fixed":true}']
    assert result["requests"] == len(seen) >= 200 and len(varied) >= 100
    assert len(set(varied)) == len(varied)
    # The marker is filled in everywhere with the same number, and the body stays valid JSON.
    for raw in varied:
        value = json.loads(raw)
        assert value["prompt"] == f"one {value['seed']}" and value["seed"] > 1000


def test_handler_bench_times_the_request_path_in_process() -> None:
    """bench/handler.py: every request answered (it raises on an error status), a figure per scenario."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "handler.py"), "text", "binding", "replay",
         "-n", "20", "-r", "1"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "text (run/)", "binding text (env.AI.run)", "replay (10,000 interactions)"]
    assert all("µs/request" in line and float(line.split()[-8]) > 0 for line in lines), lines


def test_profile_bench_reports_server_cpu_per_request() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile.py"), "chat", "-d", "1", "--no-profile",
         "--loadgen", "python"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "µs/request" in proc.stdout and " 0 errors" in proc.stdout, proc.stdout
