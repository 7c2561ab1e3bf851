"""Long Python work, paced so that the event loop answers other requests meanwhile: on a worker
thread by handing over the GIL (`GilTurns`), on the loop's own thread by yielding to it (`LoopTurns`),
and with the cyclic garbage collector kept from walking every object meanwhile (`collector_paused`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Iterator

# Work on a worker thread beside the event loop lets go of the GIL every this many seconds. A thread
# waiting for the GIL gets it only after the 5 ms switch interval, and the loop takes it several
# times per request it answers (each socket call releases it), so `/health` waited 10-50 ms behind a
# thread that never let go, where one that lets go every millisecond kept it at 2-6 ms (median).
GIL_TURN_SECONDS = 0.001


class GilTurns:
    """Paces long Python work on a worker thread: `tick()` between small steps calls `time.sleep(0)`
    once GIL_TURN_SECONDS have passed since the last time, which releases the GIL around a system
    call: a thread waiting for it (the event loop's) is woken and takes it then, and when none waits
    it costs a microsecond. On a thread running an event loop (work run inline for a small body)
    it never sleeps."""

    __slots__ = ("_due", "_paced")

    def __init__(self) -> None:
        self._paced = _loop_of_this_thread() is None
        self._due = time.perf_counter() + GIL_TURN_SECONDS

    def tick(self) -> None:
        if self._paced and time.perf_counter() >= self._due:
            time.sleep(0)
            self._due = time.perf_counter() + GIL_TURN_SECONDS


class LoopTurns:
    """Paces long work on the event loop's own thread: `await tick()` between small steps yields to
    the loop once `seconds` have passed since it last did, so other requests are answered between
    the steps."""

    __slots__ = ("_started", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self._started > self.seconds:
            await asyncio.sleep(0)
            self._started = time.perf_counter()


def _loop_of_this_thread() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_collector_pauses = 0
_collector_was_enabled = True
_collector_lock = threading.Lock()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector kept from running automatically while the block builds a great
    many long-lived objects (a cassette's interactions, on worker threads). Each automatic full
    collection walks every object the process holds, in one step holding the GIL: over the 30,000
    interactions of an 18 MB cassette the loop waited 480-620 ms behind them, 2-7 s over 200,000.
    Objects are still freed by reference counting, and cycles made meanwhile wait for the next
    collection. Blocks may nest and run on several threads at once: collection resumes when the last
    one ends, unless it was off before the first began."""
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()
