"""The benchmark script runs end to end on a tiny load and writes its JSON (not a performance test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
