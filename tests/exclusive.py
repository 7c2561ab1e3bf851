"""Tests that time the server (how long /health waits behind a hostile request) run alone.

The default suite runs on every core with pytest-xdist (`-n auto`, pyproject.toml). A test marked
`exclusive` measures waits of tens of milliseconds, which other tests' work on the same cores would
stretch: it takes, alone, a lock every other test takes shared, so it starts once the tests running
in other workers end, and none starts beside it. While it waits for them, it holds a gate that keeps
new tests from starting, so a stream of short tests cannot starve it. One process (no xdist) takes
the locks alone, at no cost.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import run_dir

MARK = "exclusive"


@contextmanager
def _flock(path: Path, kind: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, kind)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def _shared(gate: Path, running: Path) -> Iterator[None]:
    with _flock(gate, fcntl.LOCK_SH):  # waits while an exclusive test is waiting or running
        fd = os.open(running, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        yield
    finally:
        os.close(fd)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Setup, call and teardown of `item` under the run's lock: alone for an `exclusive` test,
    shared otherwise."""
    directory = run_dir.path()
    gate, running = directory / "gate.lock", directory / "running.lock"
    if item.get_closest_marker(MARK) is not None:
        with _flock(gate, fcntl.LOCK_EX), _flock(running, fcntl.LOCK_EX):
            yield
    else:
        with _shared(gate, running):
            yield
