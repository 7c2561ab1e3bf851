"""The mock backend's answer cache: repeated requests reuse answers, and memory stays within budget."""

from __future__ import annotations

from emulator.backends.mock import CACHE_BYTES, MockBackend
from tests.conftest import Emulator


async def test_repeated_request_is_served_from_the_cache(emulator: Emulator) -> None:
    backend = emulator.state.backend
    assert isinstance(backend, MockBackend)
    answers = []
    sizes = []
    for _ in range(3):
        resp = await emulator.run("@cf/meta/llama-3-8b-instruct", {"prompt": "cache me"})
        answers.append(await resp.read())
        sizes.append(backend.cache_info()[0])
    assert answers[0] == answers[1] == answers[2]
    assert sizes == [0, 1, 1]  # noted on its first use, kept on its second, reused on its third


async def test_cache_stays_within_its_memory_budget(emulator: Emulator) -> None:
    backend = emulator.state.backend
    assert isinstance(backend, MockBackend)
    # 100 batches of 100×1024 float64 (800 kB each) would hold 80 MB uncapped.
    for i in range(100):
        texts = [f"batch {i} text {j}" for j in range(100)]
        for _ in range(2):  # kept on its second use
            resp = await emulator.run("@cf/baai/bge-large-en-v1.5", {"text": texts})
            assert resp.status == 200
            await resp.read()
    entries, held = backend.cache_info()
    assert held <= CACHE_BYTES
    assert 0 < entries < 100
