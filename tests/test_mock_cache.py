"""The mock backend's answer cache: repeated requests reuse answers, and memory stays within budget."""

from __future__ import annotations

from emulator.backends.mock import CACHE_BYTES, MockBackend
from tests.conftest import Emulator


async def test_repeated_request_is_served_from_the_cache(emulator: Emulator) -> None:
    backend = emulator.state.backend
    assert isinstance(backend, MockBackend)
    first = await (await emulator.run("@cf/meta/llama-3-8b-instruct", {"prompt": "cache me"})).read()
    entries, _ = backend.cache_info()
    second = await (await emulator.run("@cf/meta/llama-3-8b-instruct", {"prompt": "cache me"})).read()
    assert first == second
    assert backend.cache_info()[0] == entries


async def test_cache_stays_within_its_memory_budget(emulator: Emulator) -> None:
    backend = emulator.state.backend
    assert isinstance(backend, MockBackend)
    # 100 batches of 100×1024 float64 (800 kB each) would hold 80 MB uncapped.
    for i in range(100):
        texts = [f"batch {i} text {j}" for j in range(100)]
        resp = await emulator.run("@cf/baai/bge-large-en-v1.5", {"text": texts})
        assert resp.status == 200
        await resp.read()
    entries, held = backend.cache_info()
    assert held <= CACHE_BYTES
    assert 0 < entries < 100
