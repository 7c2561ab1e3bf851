"""CI runs the contract suite on both offline targets: the mock emulator and the shipped cassettes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHILD_RUN_OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def _child_env() -> dict[str, str]:
    """This process's environment without pytest's variables (an xdist worker's, the current
    test's, the options of this run), with the options every child run takes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, "PYTEST_ADDOPTS": CHILD_RUN_OPTIONS}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", ["emulator", "replay"])
def test_contract_suite_passes(target: str) -> None:
    env = _child_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "contract",
            "--target",
            target,
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"pytest contract --target {target} failed:\n{tail}"
    assert " passed" in proc.stdout, tail


def test_real_target_without_credentials_skips_with_one_line() -> None:
    credentials = ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID")
    env = {k: v for k, v in _child_env().items() if k not in credentials}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "contract", "--target", "real", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    reasons = [line for line in proc.stdout.splitlines() if "CLOUDFLARE_API_TOKEN" in line]
    assert len(reasons) == 1 and reasons[0].startswith("SKIPPED"), proc.stdout[-2000:]
    assert " passed" not in proc.stdout and " skipped" in proc.stdout
