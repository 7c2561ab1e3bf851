"""`gil.collector_paused`: the collector stays off while any pause runs, on any thread, and comes back
as it was before the first began."""

from __future__ import annotations

import gc
import threading

from emulator.gil import collector_paused


def test_nested_and_concurrent_pauses_resume_collecting_when_the_last_ends() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    with collector_paused():
        other.start()
        inside.wait(10)
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread's pause still runs
    release.set()
    other.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
