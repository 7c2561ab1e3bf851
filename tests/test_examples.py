"""The runnable examples under examples/ work: the Python app's own suite, and the Node openai script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_projects import npm_ci
from tests.packaging import build_wheel, fresh_venv, run
from tests.serving import free_port, serve

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def test_python_app_suite_passes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/python-app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "5 passed" in out.stdout
    assert "Workers AI cost" in out.stdout  # the plugin's per-test cost report


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_python_app_installs_the_emulator_as_a_user_would(tmp_path: Path) -> None:
    """A copy of the example (a project of its own, pinning pydantic==2.10.6) in a fresh venv: the
    emulator's wheel and the project's `test` extra in one pip command, as its README says."""
    project = tmp_path / "textkit"
    skip = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".venv")
    shutil.copytree(EXAMPLES / "python-app", project, ignore=skip)
    wheel = build_wheel(tmp_path / "dist")
    python = fresh_venv(tmp_path / "venv")
    run([str(python), "-m", "pip", "install", "-q", str(wheel), f"{project}[test]"], timeout=900)
    pydantic = run([str(python), "-c", "import pydantic; print(pydantic.VERSION)"], timeout=60)
    assert pydantic.strip() == "2.10.6"
    out = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=600, cwd=project)
    assert "5 passed" in out and "Workers AI cost" in out


def test_python_app_runs_as_a_script(tmp_path: Path) -> None:
    with serve(data_dir=tmp_path) as (base, _):
        env = {
            **os.environ,
            "CLOUDFLARE_BASE_URL": f"{base}/client/v4",
            "CLOUDFLARE_API_TOKEN": "any-token",
            "CLOUDFLARE_ACCOUNT_ID": "0123456789abcdef0123456789abcdef",
        }
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "python-app" / "textkit.py")],
            input="Hello there.",
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("summary: ") and "\nfrench: " in out.stdout


def test_node_openai_example(tmp_path: Path) -> None:
    project = EXAMPLES / "node-openai"
    npm_ci(project, marker=".package-lock.json", timeout=300)
    with serve(data_dir=tmp_path) as (base, _):
        out = subprocess.run(
            ["node", "index.mjs"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "WORKERS_AI_BASE_URL": base},
        )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("chat: ") and len(lines[0]) > 10
    assert any(line.startswith("stream: ") and len(line) > 10 for line in lines)
    assert "embeddings: 2 vectors of 384" in lines


@pytest.mark.timeout(600)  # workerd start-up is slow on a busy machine
def test_guide_workers_example_runs_against_the_emulator(tmp_path: Path) -> None:
    """examples/guide-workers/start.mjs --check: the emulator, the image host stand-in and the three
    workers in workerd, one call through each."""
    workers = ROOT / "contract" / "workers"
    npm_ci(workers, marker=".package-lock.json", timeout=600)
    emulator = str(Path(sys.executable).parent / "workers-ai-emulator")
    env = {**os.environ, "EMULATOR": emulator, "EMULATOR_PORT": str(free_port()), "DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        ["node", str(EXAMPLES / "guide-workers" / "start.mjs"), "--check"],
        capture_output=True,
        text=True,
        timeout=500,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["image"] == 200 and seen["image_type"] == "image/png"
    assert seen["text"] and seen["translation"] and seen["neurons"] > 0
