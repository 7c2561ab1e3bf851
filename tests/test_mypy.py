"""mypy over emulator/ at the strictness pyproject.toml states in `[tool.mypy]`: a type error fails."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ID = "tests/test_mypy.py::test_the_package_type_checks"

_run: subprocess.Popen[str] | None = None


def start_mypy() -> subprocess.Popen[str]:
    """mypy in a child process, started once. A cold run (no .mypy_cache yet, as in CI's clean
    checkout) checks every module, a minute or more; tests/conftest.py starts it as the session
    begins, at low priority, so it runs beside the tests collected before this one instead of adding
    its minute to the suite."""
    global _run
    if _run is None:
        _run = subprocess.Popen([sys.executable, "-m", "mypy"], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: os.nice(10))
    return _run


def stop_mypy() -> None:
    """A session that ends before this test (`-x`, Ctrl-C) leaves no mypy behind."""
    if _run is not None and _run.poll() is None:
        _run.kill()
        _run.wait()


@pytest.mark.timeout(900)
def test_the_package_type_checks() -> None:
    output, _ = start_mypy().communicate(timeout=880)
    assert _run is not None and _run.returncode == 0, output
    assert "Success: no issues found" in output, output


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("emulator").joinpath("py.typed").is_file()
    package_data = (ROOT / "pyproject.toml").read_text()
    assert '"py.typed"' in package_data
