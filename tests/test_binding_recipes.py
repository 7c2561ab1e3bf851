"""The env.AI recipes of docs/workers.md, each run end to end against the real npm packages pinned in
its example project: vitest-pool-workers (with workers-ai-provider), wrangler's Miniflare options
from a wrangler config (the getPlatformProxy recipe), and `wrangler dev`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.node_projects import npm_ci
from tests.serving import free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VITEST = EXAMPLES / "vitest-pool-workers"
EMULATOR_BIN = str(Path(sys.executable).with_name("workers-ai-emulator"))


def test_vitest_pool_workers_project_passes_offline_with_stubs_and_faults(tmp_path: Path) -> None:
    """`npm test` in the example: its vitest config starts the emulator through the JS helper (nothing
    answers on the port it is given), and every test, stubs and faults included, passes."""
    npm_ci(VITEST, marker="@cloudflare/vitest-pool-workers")
    report = tmp_path / "report.json"
    env = {**os.environ, "WORKERS_AI_EMULATOR_URL": f"http://127.0.0.1:{free_port()}",
           "WORKERS_AI_EMULATOR_BIN": EMULATOR_BIN, "CI": "1",
           # No Cloudflare credentials at all: nothing may need a login.
           "CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": ""}
    out = subprocess.run(["npx", "vitest", "run", "--reporter=json", f"--outputFile={report}"], cwd=VITEST,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    results = json.loads(report.read_text())
    names = {a["title"]: a["status"] for f in results["testResults"] for a in f["assertionResults"]}
    assert names == {
        "answers with the emulator's deterministic fake": "passed",
        "returns what a stub says": "passed",
        "surfaces a capacity fault as InferenceUpstreamError": "passed",
        "streams server-sent events": "passed",
        "generateText": "passed",
        "streamText": "passed",
        "a tool call, then the answer": "passed",
    }
