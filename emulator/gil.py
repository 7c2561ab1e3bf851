"""Long Python work on a worker thread, paced so that the event loop's thread gets the GIL promptly."""

from __future__ import annotations

import asyncio
import time

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


def _loop_of_this_thread() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
