"""`serve --event-loop`: uvloop by default where it is installed, asyncio's own loop on request, and the
same answers on both (a real `serve` process each; /__emulator__/health names the loop it runs on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from emulator.launch import eventloop
from emulator.settings import EventLoop
from tests.conftest import ACCOUNT
from tests.serving import serve

pytestmark = pytest.mark.skipif(not eventloop.uvloop_installed(), reason="uvloop is not installed here")

RUN = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _run(base: str, prompt: str) -> bytes:
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    request = urllib.request.Request(base + RUN, data=json.dumps({"prompt": prompt}).encode(), method="POST",
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return bytes(json.loads(resp.read())["result"]["response"].encode())


@pytest.mark.parametrize(("option", "expected"), [((), "uvloop"), (("--event-loop", "uvloop"), "uvloop"),
                                                  (("--event-loop", "asyncio"), "asyncio")])
def test_the_server_runs_on_the_loop_asked_for(tmp_path: Path, option: tuple[str, ...],
                                               expected: str) -> None:
    with serve(*option, data_dir=tmp_path) as (base, proc):
        assert _get(base + "/__emulator__/health")["event_loop"] == expected
        assert _run(base, "hello")
    out = proc.stdout.read() if proc.stdout else ""
    assert f"event loop         {expected}" in out


def test_both_loops_give_the_same_answers(tmp_path: Path) -> None:
    answers = []
    for kind in ("uvloop", "asyncio"):
        with serve("--event-loop", kind, data_dir=tmp_path / kind) as (base, _):
            answers.append([_run(base, f"question {i}") for i in range(5)])
    assert answers[0] == answers[1]


def test_workers_run_on_the_chosen_loop(tmp_path: Path) -> None:
    with serve("--workers", "2", "--event-loop", "asyncio", data_dir=tmp_path) as (base, _):
        seen = {_get(base + "/__emulator__/health")["event_loop"] for _ in range(20)}
    assert seen == {"asyncio"}
    with serve("--workers", "2", data_dir=tmp_path) as (base, _):
        seen = {_get(base + "/__emulator__/health")["event_loop"] for _ in range(20)}
    assert seen == {"uvloop"}


def test_auto_falls_back_to_asyncio_and_uvloop_without_it_is_one_line(tmp_path: Path) -> None:
    """A machine without uvloop (simulated by a path entry that hides the package): `auto` serves on
    asyncio; `--event-loop uvloop` stops with one clear line, not a traceback."""
    hider = tmp_path / "hide"
    hider.mkdir()
    (hider / "uvloop.py").write_text("raise ImportError('hidden by the test')\n")
    (hider / "sitecustomize.py").write_text(
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = (\n"
        "    lambda name, *a, **k: None if name == 'uvloop' else _find(name, *a, **k))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hider), os.environ.get("PYTHONPATH", "")])}
    with serve(data_dir=tmp_path / "auto", env=env) as (base, _):
        assert _get(base + "/__emulator__/health")["event_loop"] == "asyncio"
    command = [sys.executable, "-m", "emulator", "serve", "--event-loop", "uvloop", "--port", "0"]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0
    assert "uvloop is not installed" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert eventloop.chosen(EventLoop.ASYNCIO) is EventLoop.ASYNCIO
