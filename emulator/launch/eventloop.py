"""The event loop a server process runs on.

uvloop (libuv under asyncio's interface) answers the same requests with less CPU than asyncio's own
selector loop: +15-20% calls a second on a varied `run/` load on one core (bench/run.py,
`--event-loop asyncio` against the default). It is a dependency where it builds (Linux, macOS);
elsewhere, or with `--event-loop asyncio`, the server runs on asyncio's loop and behaves the same.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from emulator.settings import EventLoop

_T = TypeVar("_T")


class EventLoopUnavailable(Exception):
    """`--event-loop uvloop` on a machine without uvloop."""


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def chosen(kind: EventLoop) -> EventLoop:
    """The loop `kind` means on this machine: `auto` resolves to uvloop when it is installed."""
    if kind is EventLoop.AUTO:
        return EventLoop.UVLOOP if uvloop_installed() else EventLoop.ASYNCIO
    if kind is EventLoop.UVLOOP and not uvloop_installed():
        raise EventLoopUnavailable("--event-loop uvloop: uvloop is not installed (pip install uvloop)")
    return kind


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What `asyncio.Runner` builds its loop with; None is asyncio's default."""
    if chosen(kind) is EventLoop.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, _T], kind: EventLoop) -> _T:
    """`asyncio.run(main)` on the loop `kind` names."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)

