"""`workers-ai-emulator serve` as a user runs it: banner, env settings, determinism across processes, curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT
from tests.serving import free_port, serve, wait_ready


def post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.read()


def test_banner_lists_base_urls(tmp_path: Path) -> None:
    with serve(data_dir=tmp_path) as (base, proc):
        pass
    out = proc.stdout.read() if proc.stdout else ""
    assert f"{base}/client/v4" in out
    assert f"{base}/client/v4/accounts/{ACCOUNT}/ai/v1" in out
    assert "curl " in out and "/ai/run/@cf/meta/llama-3-8b-instruct" in out


def test_port_and_seed_from_environment(tmp_path: Path) -> None:
    import os
    import subprocess as sp
    import sys

    port = free_port()
    proc = sp.Popen(
        [sys.executable, "-m", "emulator", "serve", "--data-dir", str(tmp_path)],
        stdout=sp.PIPE,
        text=True,
        env={**os.environ, "WORKERS_AI_EMULATOR_PORT": str(port), "WORKERS_AI_EMULATOR_SEED": "7"},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_same_request_same_bytes_across_two_processes(tmp_path: Path) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "Write a haiku about rain"}]}).encode()
    image = json.dumps({"prompt": "lighthouse", "width": 256, "height": 256}).encode()
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    answers = []
    for i in range(2):
        with serve("--seed", "3", data_dir=tmp_path / str(i)) as (base, _):
            ai = f"{base}/client/v4/accounts/{ACCOUNT}/ai/run"
            answers.append(
                (
                    post(f"{ai}/@cf/meta/llama-3-8b-instruct", body, headers),
                    post(f"{ai}/@cf/stabilityai/stable-diffusion-xl-base-1.0", image, headers),
                    post(f"{ai}/@cf/baai/bge-small-en-v1.5", b'{"text": "hello"}', headers),
                )
            )
    assert answers[0] == answers[1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_guide_translation_curl_verbatim(tmp_path: Path) -> None:
    with serve(data_dir=tmp_path) as (base, _):
        out = subprocess.run(
            [
                "curl",
                "-s",
                f"{base}/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/m2m100-1.2b",
                "-H",
                "Authorization: Bearer {API_TOKEN}",
                "-d",
                '{ "text": "I\'ll have an order of the moule frites", "source_lang": "english", '
                '"target_lang": "french" }',
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
    body = json.loads(out)
    assert body["success"] is True
    assert body["result"]["translated_text"]
