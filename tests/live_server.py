"""A real emulator on a free port, run by its own event loop in a thread, for synchronous HTTP clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emulator.launch.background import BackgroundServer
from emulator.settings import Settings


@contextmanager
def live_server(**overrides: Any) -> Iterator[BackgroundServer]:
    with BackgroundServer(Settings(port=0, **overrides)) as server:
        yield server
