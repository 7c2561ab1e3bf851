"""What sharing the control plane across `serve --workers N` costs a call, measured in one process.

    python bench/control_overhead.py

The end-to-end `workers` scenario of bench/run.py swings by more than this cost on a shared machine,
so the per-call work is timed directly, each beside what one process does for the same thing:

- every call: the generation check in `dispatch` and the request log's id (shared counter + lock);
- a call a fault applies to: its counters read and written in shared memory under the group's lock;
- a call a stub answers: its position in its sequence moved the same way.

Figures are µs per call, and the share of a worker's ~90 µs per cached call (README, Performance).
"""

from __future__ import annotations

import itertools
import multiprocessing
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.call import Call, Surface
from emulator.catalog import load_catalog
from emulator.control.faults import FaultSet
from emulator.control.shared import SharedFaultSet, SharedStore, SharedStubSet
from emulator.control.stubs import StubSet
from emulator.server.worker_group import WorkerGroup

WORKER_CALL_US = 90.0
FAULT = {"kind": "capacity", "model": "@cf/meta/*", "every": 1_000_000}
STUB = {"model": "@cf/meta/*", "text": "stubbed"}


def per_call_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    group = WorkerGroup.create(2, multiprocessing.get_context("fork"))
    try:
        store = SharedStore(group)
        model = load_catalog().get("@cf/meta/llama-3-8b-instruct")
        assert model is not None
        call = Call(model=model, inputs={"prompt": "hi"}, surface=Surface.NATIVE, raw_body=b'{"prompt":"hi"}')
        generation, seen = group.generation, store.generation()
        local_ids = itertools.count(1).__next__
        rows: list[tuple[str, float, float]] = [
            ("every call: generation check + log id",
             per_call_us(local_ids, 200_000),
             per_call_us(lambda: (generation.value != seen, group.next_log_id()), 200_000)),
        ]
        local_faults, shared_faults = FaultSet(), SharedFaultSet(store)
        local_faults.add(FAULT)
        shared_faults.add(FAULT)
        rows.append(("a call a fault applies to", per_call_us(lambda: local_faults.decide(call), 20_000),
                     per_call_us(lambda: shared_faults.decide(call), 2_000)))
        local_stubs, shared_stubs = StubSet(), SharedStubSet(store)
        local_stubs.add(STUB)
        shared_stubs.add(STUB)
        rows.append(("a call a stub answers", per_call_us(lambda: local_stubs.pick(call), 20_000),
                     per_call_us(lambda: shared_stubs.pick(call), 2_000)))
    finally:
        group.remove()
    print(f"{'per call':42} {'1 process µs':>13} {'workers µs':>11} {'added µs':>9} {'of a call':>9}")
    for label, alone, shared in rows:
        added = shared - alone
        print(f"{label:42} {alone:13.2f} {shared:11.2f} {added:9.2f} {added / WORKER_CALL_US:9.1%}")


if __name__ == "__main__":
    main()
