"""mypy over emulator/ at the strictness pyproject.toml states in `[tool.mypy]`: a type error fails."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# A cold run (no .mypy_cache yet) checks every module: minutes on a busy machine, seconds after.
@pytest.mark.timeout(900)
def test_the_package_type_checks() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("emulator").joinpath("py.typed").is_file()
    package_data = (ROOT / "pyproject.toml").read_text()
    assert '"py.typed"' in package_data
