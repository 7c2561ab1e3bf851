"""Golden answers: the exact bytes of one answer per fake family, for a fixed request and seed.

These are what the dependency ranges in pyproject.toml are proven against: faker (words), numpy
(vectors, noise), pillow (PNG encoding), lameenc (MP3 frames) and orjson (JSON bytes) all shape
these bytes, and tests/test_dependency_ranges.py runs this file with the lowest allowed versions.
A hash that changes means a dependency (or the code) changed what users' recorded answers contain.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import Emulator, wav_bytes

CASES = {
    "text": ("@cf/meta/llama-3-8b-instruct", {"prompt": "Where did Hello World come from?", "seed": 7}),
    "embeddings": ("@cf/baai/bge-small-en-v1.5", {"text": ["golden bytes", "second line"]}),
    "image": ("@cf/stabilityai/stable-diffusion-xl-base-1.0", {"prompt": "a lighthouse", "seed": 3}),
    "speech": ("@cf/myshell-ai/melotts", {"prompt": "Hello golden world"}),
    "translation": ("@cf/meta/m2m100-1.2b", {"text": "Good morning", "target_lang": "french"}),
    "transcription": ("@cf/openai/whisper", None),
}

GOLDEN = {
    "text": "14e7ef254a2acec2e3693e0662c7f5d7a8bbcb46607b32764ebbac25c702b144",
    "embeddings": "733f785f2411a094231bb832fabe45035dbece1ccffec2190da7bbd2ee5e506f",
    "image": "4df2a9fe5a151fda0b5cdf76ce5051f8b339b6e84f2d14fa157d0cba1a793c4c",
    "speech": "aa34eb90c032f4b6e9e498174b93908d0cc6273ff8527946245d4e6f5cada8ee",
    "translation": "66b84fd3e1b56c68d4c61235e4c657bf06a2d0f05326384c5d593cd45d45dcb6",
    "transcription": "005a26a04f00081de82998ab18f412b8d3e4d80a2cb89645c8429edaa03334bd",
}


async def answer_bytes(emulator: Emulator, case: str) -> bytes:
    model, body = CASES[case]
    if body is None:
        resp = await emulator.run(model, data=wav_bytes(1.0), headers={"Content-Type": "audio/wav"})
    else:
        resp = await emulator.run(model, body)
    assert resp.status == 200, await resp.text()
    return await resp.read()


@pytest.mark.parametrize("case", sorted(CASES))
async def test_answer_bytes_are_the_golden_ones(emulator: Emulator, case: str) -> None:
    digest = hashlib.sha256(await answer_bytes(emulator, case)).hexdigest()
    assert digest == GOLDEN[case], f"{case}: the answer's bytes changed (sha256 {digest})"
