"""The GitHub Action (action.yml, report/action.yml): its steps are the scripts in scripts/action/, run
here as GitHub would run them (outputs and job variables through GITHUB_OUTPUT / GITHUB_ENV files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.node_projects import npm_ci
from tests.packaging import ROOT, fresh_venv
from tests.serving import free_port

SCRIPTS = ROOT / "scripts" / "action"
NODE_EXAMPLE = ROOT / "examples" / "node-openai"


def step_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a step: this venv's `workers-ai-emulator` on PATH, GitHub's files in tmp."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_ENV": str(tmp_path / "env"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }


def run_step(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_action_steps_are_the_scripts_and_outputs_come_from_the_start_step() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    runs = [step["run"] for step in action["runs"]["steps"] if "run" in step]
    assert runs == [
        "${GITHUB_ACTION_PATH}/scripts/action/install.sh",
        "${GITHUB_ACTION_PATH}/scripts/action/start.sh",
    ]
    assert set(action["outputs"]) == {"base-url", "openai-base-url", "binding-url", "account-id"}
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.start.outputs.{name} }}}}"
    report = yaml.safe_load((ROOT / "report" / "action.yml").read_text())
    assert report["runs"]["steps"][0]["run"] == "${GITHUB_ACTION_PATH}/../scripts/action/report.sh"
    for script in ("install.sh", "start.sh", "report.sh"):
        assert os.access(SCRIPTS / script, os.X_OK), f"{script} is executable"


def _node_calls(openai_base_url: str) -> None:
    """What a Node project's test step does: the openai npm package against the emulator."""
    npm_ci(NODE_EXAMPLE, marker=".package-lock.json", timeout=300)
    base = openai_base_url.split("/client/v4/")[0]
    node = subprocess.run(
        ["node", "index.mjs"],
        cwd=NODE_EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WORKERS_AI_BASE_URL": base},
    )
    assert node.returncode == 0, node.stderr[-2000:]


def _python_calls(openai_base_url: str) -> None:
    request = urllib.request.Request(
        f"{openai_base_url}/chat/completions",
        data=b'{"model": "@cf/meta/llama-3-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}',
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200


def test_start_then_a_node_job_then_report_fails_over_budget(tmp_path: Path) -> None:
    port = str(free_port())
    env = step_env(tmp_path, PORT=port, DATA_DIR=str(tmp_path / "data"), SERVE_ARGS="--seed 3")
    started = run_step("start.sh", env, tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        out = outputs(tmp_path / "output")
        base = f"http://127.0.0.1:{port}"
        assert out["base-url"] == base and out["binding-url"] == base + "/"
        assert out["openai-base-url"] == f"{base}/client/v4/accounts/{out['account-id']}/ai/v1"
        assert f"WORKERS_AI_EMULATOR_PORT={port}" in (tmp_path / "env").read_text()
        with urllib.request.urlopen(base + "/__emulator__/health", timeout=10) as resp:
            assert b'"ok"' in resp.read()
        if shutil.which("node") and shutil.which("npm"):
            _node_calls(out["openai-base-url"])
        else:  # without node the job's calls are made from Python; the action does not care which
            _python_calls(out["openai-base-url"])
    finally:
        # The report step finds the port through the variable the start step exported.
        report_env = {**env, "PORT": "", "WORKERS_AI_EMULATOR_PORT": port, "MAX_NEURONS": "1"}
        report = run_step("report.sh", report_env, tmp_path)
    assert report.returncode == 1, report.stdout + report.stderr
    assert "over budget" in report.stderr and "TOTAL" in report.stdout
    assert "TOTAL" in (tmp_path / "summary.md").read_text()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/__emulator__/health", timeout=2)


def test_report_passes_under_budget(tmp_path: Path) -> None:
    port = str(free_port())
    env = step_env(tmp_path, PORT=port, DATA_DIR=str(tmp_path / "data"))
    assert run_step("start.sh", env, tmp_path).returncode == 0
    report = run_step("report.sh", {**env, "MAX_NEURONS": "1000"}, tmp_path)
    assert report.returncode == 0, report.stderr
    assert "TOTAL" in report.stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_install_step_installs_from_the_action_checkout(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    env = {**os.environ, "PATH": str(python.parent) + os.pathsep + os.environ["PATH"], "SOURCE": ""}
    out = subprocess.run(
        ["bash", str(SCRIPTS / "install.sh")], env=env, capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "0.1.0" in out.stdout
    assert (python.parent / "workers-ai-emulator").is_file()
