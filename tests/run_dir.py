"""A directory shared by every process of one test run: the process that starts the run (the
pytest-xdist controller, or the one process without xdist) creates it before any worker starts (the
workers inherit its path through the environment) and removes it at the end. A pytest run that a
test starts in a child process is a run of its own, with a directory of its own. The exclusive lock
(tests/exclusive.py) and the one mypy run (tests/test_mypy.py) live there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ENV = "WORKERS_AI_TEST_RUN_DIR"


_owned = False


def create(config: pytest.Config) -> None:
    """Called by every process of the run as it is configured; an xdist worker (it has
    `workerinput`) keeps the directory it inherited."""
    global _owned
    if not hasattr(config, "workerinput"):
        os.environ[ENV] = tempfile.mkdtemp(prefix="workers-ai-emulator-tests-")
        _owned = True


def path() -> Path:
    return Path(os.environ[ENV])


def owned() -> bool:
    """Whether this process started the run (and so removes the directory at its end)."""
    return _owned


def remove() -> None:
    global _owned
    if _owned:
        shutil.rmtree(os.environ.pop(ENV), ignore_errors=True)
        _owned = False
