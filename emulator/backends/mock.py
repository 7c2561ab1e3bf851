"""The mock backend: deterministic fakes from the task modules, cached by request fingerprint."""

from __future__ import annotations

from typing import Any

import numpy as np

from emulator.call import BinaryInput, Call, Outcome, Surface
from emulator.fakes.seed import derive_seed, derive_seed_in_slices
from emulator.limits import INCREMENTAL_JSON_BYTES, LOOP_SLICE_SECONDS, check_call, off_loop
from emulator.lru import SizedLRU
from emulator.tasks import FakeContext, fake_for

# Inputs that change how an answer is delivered, not what it says: excluded from the seed so
# a streamed answer and a non-streamed one carry the same text.
DELIVERY_KEYS = frozenset({"stream", "stream_options", "options"})
CACHE_SIZE = 2048
# The cache also has a memory budget: a few 2048² PNGs or 100×1024 embedding batches would otherwise
# hold hundreds of MB. Sizes are estimates (a Python float in a list costs ~32 bytes).
CACHE_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD = 1024


def approx_size(outcome: Outcome) -> int:
    """Rough bytes an outcome keeps alive: its body, or the float rows of an embedding result."""
    size = ENTRY_OVERHEAD + (len(outcome.body) if outcome.body else 0)
    result = outcome.result
    data = result.get("data") if isinstance(result, dict) else None
    if isinstance(data, np.ndarray):
        size += data.nbytes
    elif isinstance(data, list):
        size += 32 * sum(len(row) for row in data if isinstance(row, list))
    return size


def fingerprint_inputs(inputs: dict[str, Any] | BinaryInput) -> Any:
    if isinstance(inputs, BinaryInput):
        form = inputs.form
        if form is not None:
            return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in form.items()}
        return inputs.data
    return {k: v for k, v in inputs.items() if k not in DELIVERY_KEYS}


def call_seed(call: Call, emulator_seed: int) -> int:
    """The seed of a call: (emulator seed, model, canonical inputs) and nothing else."""
    known = _remembered_seed(call, emulator_seed)
    if known is not None:
        return known
    seed = derive_seed(emulator_seed, call.model.name, fingerprint_inputs(call.inputs))
    call.seed_memo = (emulator_seed, call.inputs, seed)
    return seed


async def seed_of(call: Call, emulator_seed: int) -> int:
    """`call_seed`, from the event loop: a body of INCREMENTAL_JSON_BYTES or more is hashed in
    slices between which the loop runs."""
    known = _remembered_seed(call, emulator_seed)
    if known is not None:
        return known
    if len(call.raw_body) < INCREMENTAL_JSON_BYTES:
        return call_seed(call, emulator_seed)
    seed = await derive_seed_in_slices(emulator_seed, call.model.name, fingerprint_inputs(call.inputs),
                                       slice_seconds=LOOP_SLICE_SECONDS)
    call.seed_memo = (emulator_seed, call.inputs, seed)
    return seed


def _remembered_seed(call: Call, emulator_seed: int) -> int | None:
    """The seed worked out earlier for this call, while its inputs are the same object."""
    memo = call.seed_memo
    if memo is not None and memo[0] == emulator_seed and memo[1] is call.inputs:
        return memo[2]
    return None


CacheKey = tuple[int, bool, Surface, str]


def cache_key(call: Call, seed: int) -> CacheKey:
    """What an outcome depends on besides the seed: streaming, the surface (gpt-oss's Responses
    input answers a Responses object on `run/` only) and Accept (melotts answers raw audio/mpeg
    when asked for it)."""
    headers = call.headers
    return seed, call.stream, call.surface, headers.get("Accept") or headers.get("accept") or ""


class MockBackend:
    name = "mock"

    def __init__(self, *, seed: int = 0, quirks: dict[str, bool] | None = None) -> None:
        self.seed = seed
        self.quirks = quirks or {}
        # Once full, kept from a seed's second use: varied calls (most of a test suite's) build and evict
        # nothing.
        self._cache: SizedLRU[CacheKey, Outcome] = SizedLRU(max_entries=CACHE_SIZE, max_bytes=CACHE_BYTES,
                                                            second_use=True)

    async def handle(self, call: Call) -> Outcome:
        # Before any work: the fakes' cost grows with pixels, audio length, batch size. On a worker
        # thread for a large body: reading 5 million audio numbers into bytes holds the GIL ~65 ms.
        await off_loop(len(call.raw_body), check_call, call)
        seed = await seed_of(call, self.seed)
        key = cache_key(call, seed)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        context = FakeContext(seed=seed, emulator_seed=self.seed, quirks=self.quirks)
        outcome = await off_loop(len(call.raw_body), fake_for(call.model), call, context)
        outcome.repeatable = outcome.events is None
        if isinstance(outcome.events, list) or outcome.events is None:
            self._remember(key, outcome)
        return outcome

    def _remember(self, key: CacheKey, outcome: Outcome) -> None:
        if not self._cache.admits(key):
            return
        size = approx_size(outcome)
        if size > CACHE_BYTES // 8:
            return  # one huge answer would evict everything else for little gain
        self._cache.put(key, outcome, size)

    def answer_token(self) -> object | None:
        return self  # the fakes are pure: answers stay valid as long as this backend serves

    def cache_info(self) -> tuple[int, int]:
        """(cached answers, estimated bytes they hold)."""
        return len(self._cache), self._cache.bytes

    async def close(self) -> None:
        self._cache.clear()
