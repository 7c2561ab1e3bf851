"""mypy over emulator/ at the strictness pyproject.toml states in `[tool.mypy]`: a type error fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from tests import run_dir

ROOT = Path(__file__).resolve().parent.parent
TEST_ID = "tests/test_mypy.py::test_the_package_type_checks"

# Runs mypy in a child of its own and leaves its output and exit status in the run's directory.
_WRAPPER = """
import pathlib, subprocess, sys
directory = pathlib.Path(sys.argv[1])
with open(directory / "mypy.out", "w") as out:
    code = subprocess.run([sys.executable, "-m", "mypy"], stdout=out, stderr=subprocess.STDOUT).returncode
(directory / "mypy.partial").write_text(str(code))
(directory / "mypy.partial").rename(directory / "mypy.returncode")
"""


def start_mypy() -> None:
    """The run's one mypy, started by the first process that asks (the pytest-xdist workers share
    the run's directory, tests/run_dir.py). A cold run (no .mypy_cache yet, as in CI's clean
    checkout) checks every module, a minute or more: tests/conftest.py asks as soon as collection
    shows this test is wanted, and it runs at low priority beside the tests."""
    directory = run_dir.path()
    try:
        os.close(os.open(directory / "mypy.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(directory)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: os.nice(10))
    (directory / "mypy.pid").write_text(str(proc.pid))


def stop_mypy() -> None:
    """A run that ends before this test (`-x`, Ctrl-C) leaves no mypy behind: the process that
    started the run kills what is left of it."""
    if not run_dir.owned():
        return
    try:
        pid = int((run_dir.path() / "mypy.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError, KeyError):
        pass


@pytest.mark.timeout(900)
def test_the_package_type_checks() -> None:
    start_mypy()
    directory = run_dir.path()
    returncode = directory / "mypy.returncode"
    deadline = time.monotonic() + 880
    while not returncode.exists():
        assert time.monotonic() < deadline, "mypy did not finish in time"
        time.sleep(0.2)
    output = (directory / "mypy.out").read_text()
    assert returncode.read_text() == "0", output
    assert "Success: no issues found" in output, output


def test_the_package_says_it_is_typed() -> None:
    assert resources.files("emulator").joinpath("py.typed").is_file()
    package_data = (ROOT / "pyproject.toml").read_text()
    assert '"py.typed"' in package_data
