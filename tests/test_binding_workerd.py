"""The Miniflare recipe (examples/miniflare-binding): a real Worker in workerd calls env.AI, and the
emulator answers through Miniflare's AI binding, with no Cloudflare login and no network."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.node_projects import npm_ci
from tests.serving import serve

PROJECT = Path(__file__).resolve().parent.parent / "examples" / "miniflare-binding"
ALL_CASES = ["text", "chat", "stream", "embeddings", "image", "raw", "audio", "gateway", "models", "markdown",
             "unknownModel", "badInput"]
# An account of this test's own, so its stubs, faults and usage are apart from the default account's.
OWN_ACCOUNT = "5eed5eed5eed5eed5eed5eed5eed5eed"


def run_worker(connection: str, *cases: str) -> dict[str, Any]:
    out = subprocess.run(["node", "run.mjs", connection, *cases], cwd=PROJECT, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    answers: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return answers


def control(base: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/__emulator__{path}", data=data,
                                     method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_worker_in_workerd_gets_every_kind_of_answer(tmp_path: Path) -> None:
    npm_ci(PROJECT, marker="miniflare")
    with serve(data_dir=tmp_path) as (base, _):
        answers = run_worker(control(base, "/health")["binding_url"], *ALL_CASES)
        log = control(base, "/requests")
        usage = control(base, "/usage?account=0123456789abcdef0123456789abcdef")
    text = answers["text"]
    assert isinstance(text["result"]["response"], str) and text["result"]["usage"]["total_tokens"] > 0
    assert len(text["lastRequestId"]) == 36  # cf-ai-req-id became env.AI.lastRequestId
    assert answers["stream"]["isStream"] and answers["stream"]["text"].endswith("data: [DONE]\n\n")
    assert answers["embeddings"] == {"shape": [2, 768], "dims": 768}
    image = answers["image"]
    assert image["isStream"] and image["magic"] == [0x89, 0x50, 0x4E, 0x47] and image["bytes"] > 1000
    raw = answers["raw"]
    assert raw["isResponse"] and raw["status"] == 200 and raw["contentType"] == "application/json"
    assert "transcript" in json.dumps(answers["audio"]["result"])  # a ReadableStream input (nova-3)
    assert answers["gateway"]["aiGatewayLogId"]
    assert "@cf/meta/m2m100-1.2b" in answers["models"]["names"]
    page, pdf = answers["markdown"]["results"]
    assert page["data"] == "# Title\n\nBody\n" and pdf["format"] == "error"
    assert answers["unknownModel"]["error"] == {"name": "InferenceUpstreamError",
                                                "message": "5007: No such model @cf/does/not-exist or task"}
    assert answers["badInput"]["error"]["message"].startswith("5006: Error: oneOf at '/' not met")
    binding_calls = [e for e in log["requests"] if e["surface"] == "binding"]
    assert len(binding_calls) >= len(ALL_CASES) - 1  # models/markdown are logged without a model
    assert usage["neurons"] > 0 and usage["requests"] >= 7


def test_stubs_faults_and_usage_stay_in_one_tests_account(tmp_path: Path) -> None:
    """A per-test account in the connection string keeps its stubs, faults, log and usage apart."""
    npm_ci(PROJECT, marker="miniflare")
    with serve(data_dir=tmp_path) as (base, _):
        control(base, "/stubs", {"account": OWN_ACCOUNT, "model": "@cf/meta/llama-3.1-8b-instruct",
                                 "text": "Stubbed hello"})
        control(base, "/faults", {"account": OWN_ACCOUNT, "model": "@cf/does/*", "kind": "capacity"})
        control(base, "/faults", {"account": OWN_ACCOUNT, "model": "@cf/baai/*", "kind": "capacity"})
        mine = run_worker(f"{base}/binding/{OWN_ACCOUNT}", "text", "embeddings", "stream")
        default = run_worker(f"{base}/", "text")
        log = control(base, f"/requests?account={OWN_ACCOUNT}")
        usage = control(base, f"/usage?account={OWN_ACCOUNT}")
    assert mine["text"]["result"]["response"] == "Stubbed hello"
    pieces = [json.loads(line[6:]).get("response", "") for line in mine["stream"]["text"].split("\n\n")
              if line.startswith("data: {")]
    assert "".join(pieces) == "Stubbed hello"
    capacity = "3040: Capacity temporarily exceeded, please try again."
    assert mine["embeddings"]["error"] == {"name": "InferenceUpstreamError", "message": capacity}
    assert default["text"]["result"]["response"] != "Stubbed hello"
    assert {e["account"] for e in log["requests"]} == {OWN_ACCOUNT} and log["count"] == 3
    assert usage["neurons"] > 0


def test_binding_with_several_server_workers(tmp_path: Path) -> None:
    """`serve --workers 2`: every worker answers the binding; the ledger they share has every charge."""
    npm_ci(PROJECT, marker="miniflare")
    with serve("--workers", "2", data_dir=tmp_path) as (base, _):
        answers = run_worker(f"{base}/binding/{OWN_ACCOUNT}", "text", "stream", "image", "embeddings")
        usage = control(base, f"/usage?account={OWN_ACCOUNT}")
    assert all("error" not in a for a in answers.values()), answers
    assert usage["requests"] == 4 and usage["neurons"] > 0
