"""The env.AI recipes of docs/workers.md, each run end to end against the real npm packages pinned in
its example project: vitest-pool-workers (with workers-ai-provider), wrangler's Miniflare options
from a wrangler config (the getPlatformProxy recipe), and `wrangler dev`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.node_projects import npm_ci
from tests.serving import free_port, serve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VITEST = EXAMPLES / "vitest-pool-workers"
EMULATOR_BIN = str(Path(sys.executable).with_name("workers-ai-emulator"))
# An account of this test's own, so its stubs, faults and usage are apart from the default account's.
OWN_ACCOUNT = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
# Per-test bounds instead of the suite's 120 s. Measured on the 2-core machine at load 10-14, with the
# example's node_modules installed: vitest 57 s, getPlatformProxy 31 s, wrangler dev 22 s, the Miniflare
# options script 21 s. Each bound is about five times that, plus the example's first `npm ci` (bounded
# by npm_ci itself), which whichever of these tests runs first pays.
INSTALL_SECONDS = 900
VITEST_SECONDS = 300
WRANGLER_SECONDS = 180


@pytest.mark.timeout(INSTALL_SECONDS + VITEST_SECONDS + 60)
def test_vitest_pool_workers_project_passes_offline_with_stubs_and_faults(tmp_path: Path) -> None:
    """`npm test` in the example: its vitest config starts the emulator through the JS helper (nothing
    answers on the port it is given), and every test, stubs and faults included, passes."""
    npm_ci(VITEST, marker="@cloudflare/vitest-pool-workers", timeout=INSTALL_SECONDS)
    report = tmp_path / "report.json"
    env = {**os.environ, "WORKERS_AI_EMULATOR_URL": f"http://127.0.0.1:{free_port()}",
           "WORKERS_AI_EMULATOR_BIN": EMULATOR_BIN, "CI": "1",
           # No Cloudflare credentials at all: nothing may need a login.
           "CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": ""}
    out = subprocess.run(["npx", "vitest", "run", "--reporter=json", f"--outputFile={report}"], cwd=VITEST,
                         capture_output=True, text=True, timeout=VITEST_SECONDS, env=env)
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


@contextmanager
def wrangler_dev(*args: str, env: dict[str, str]) -> Iterator[str]:
    """`npx wrangler dev …` in the example project on a free port; yields its URL once it answers."""
    port = free_port()
    # A free inspector port too: wrangler's default (9229) may be taken by another process.
    proc = subprocess.Popen(["npx", "wrangler", "dev", *args, "--port", str(port), "--ip", "127.0.0.1",
                             "--inspector-port", str(free_port())],
                            cwd=VITEST, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"wrangler dev did not start:\n{output[-3000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # npx, wrangler and workerd: the group this test started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wrangler_env(tmp_path: Path, binding_url: str) -> dict[str, str]:
    return {**os.environ, "CI": "1", "WRANGLER_SEND_METRICS": "false", "CLOUDFLARE_API_TOKEN": "",
            "WRANGLER_REGISTRY_PATH": str(tmp_path / "registry"),  # this test's dev registry only
            # The stand-in Worker reads the emulator's connection string from the process environment.
            "CLOUDFLARE_INCLUDE_PROCESS_ENV": "true", "WORKERS_AI_EMULATOR_URL": binding_url}


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.timeout(INSTALL_SECONDS + WRANGLER_SECONDS)
def test_wrangler_dev_answers_env_ai_from_the_emulator(tmp_path: Path) -> None:
    """`wrangler dev --env emulator -c wrangler.jsonc -c <stand-in Worker>`: no login, no network."""
    npm_ci(VITEST, marker="wrangler", timeout=INSTALL_SECONDS)
    stand_in = "node_modules/workers-ai-emulator/binding-worker/wrangler.jsonc"
    with serve(data_dir=tmp_path / "data") as (base, _), wrangler_dev(
        "--env", "emulator", "-c", "wrangler.jsonc", "-c", stand_in,
        env=wrangler_env(tmp_path, f"{base}/binding/{OWN_ACCOUNT}")
    ) as url:
        summary = post(f"{url}/summarize", {"text": "Workers AI runs models."})
        text = post(f"{url}/provider", {"mode": "text", "prompt": "hi"})
        streamed = post(f"{url}/provider", {"mode": "stream", "prompt": "hi"})
        log_url = f"{base}/__emulator__/requests?account={OWN_ACCOUNT}"
        with urllib.request.urlopen(log_url, timeout=10) as resp:
            log = json.loads(resp.read())
    assert isinstance(summary["summary"], str) and summary["summary"]
    assert text["text"] and streamed["text"] and streamed["chunks"] > 1
    assert [e["surface"] for e in log["requests"]] == ["binding"] * 3
    assert all(e["status"] == 200 and e["neurons"] > 0 for e in log["requests"])


@pytest.mark.timeout(INSTALL_SECONDS + WRANGLER_SECONDS)
def test_node_script_env_ai_with_wranglers_miniflare_options(tmp_path: Path) -> None:
    """The getPlatformProxy recipe with the wrangler config unchanged: wrangler's Miniflare options for
    it, given the binding connection string, and `getBindings()`."""
    npm_ci(VITEST, marker="wrangler", timeout=INSTALL_SECONDS)
    with serve(data_dir=tmp_path) as (base, _):
        seen = node_script("options", f"{base}/binding/{OWN_ACCOUNT}")
    check_node_env_ai(seen)


@pytest.mark.timeout(INSTALL_SECONDS + WRANGLER_SECONDS)
def test_get_platform_proxy_with_the_stand_in_worker(tmp_path: Path) -> None:
    """`getPlatformProxy({environment: "emulator"})` while the stand-in Worker runs in `wrangler dev`."""
    npm_ci(VITEST, marker="wrangler", timeout=INSTALL_SECONDS)
    stand_in = "node_modules/workers-ai-emulator/binding-worker/wrangler.jsonc"
    with serve(data_dir=tmp_path / "data") as (base, _):
        env = wrangler_env(tmp_path, f"{base}/binding/{OWN_ACCOUNT}")
        with wrangler_dev("-c", stand_in, env=env):
            seen = node_script("proxy", env=env)
    check_node_env_ai(seen, rpc=True)


def node_script(*args: str, env: dict[str, str] | None = None) -> Any:
    out = subprocess.run(["node", "scripts/platform-proxy.mjs", *args], cwd=VITEST, capture_output=True,
                         text=True, timeout=120, env=env or {**os.environ, "CI": "1"})
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_node_env_ai(seen: Any, *, rpc: bool = False) -> None:
    assert isinstance(seen["text"]["response"], str)
    assert seen["streamed"].endswith("data: [DONE]\n\n")
    # Over a service binding (RPC) the error's name travels inside its message.
    prefix = "InferenceUpstreamError: " if rpc else ""
    assert seen["error"] == prefix + "5007: No such model @cf/does/not-exist or task"
    assert "@cf/meta/m2m100-1.2b" in seen["models"]
