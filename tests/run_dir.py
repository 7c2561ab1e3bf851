"""A directory shared by every process of one test run: the pytest-xdist controller creates it
before its workers start (they inherit its path through the environment), a run without xdist the
same way; the controller removes it at the end. The exclusive lock (tests/exclusive.py) and the one
mypy run (tests/test_mypy.py) live there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "WORKERS_AI_TEST_RUN_DIR"


def create() -> None:
    """Called by the process that starts the run (not by an xdist worker)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ[ENV] = tempfile.mkdtemp(prefix="workers-ai-emulator-tests-")


def path() -> Path:
    return Path(os.environ[ENV])


def owned() -> bool:
    """Whether this process started the run (and so removes the directory at its end)."""
    return "PYTEST_XDIST_WORKER" not in os.environ


def remove() -> None:
    if owned() and ENV in os.environ:
        shutil.rmtree(os.environ.pop(ENV), ignore_errors=True)
