"""The audio encodings of the realtime models: G.711 μ-law and A-law against the standard's values,
nova-3 reading μ-law, aura writing μ-law, A-law and MP3, and the errors for the rest (the schema's
enum wording for an undeclared encoding, a clear 5006 for a declared one the emulator cannot code)."""

from __future__ import annotations

import io
import math
import struct
import warnings
from typing import Any

import aiohttp
import mutagen.mp3
import pytest

from emulator.realtime.codecs import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from tests.conftest import AUTH, Emulator
from tests.test_realtime import session, tone, ws_url

# (code, 16-bit value) pairs of the G.711 decoding tables, at their ends and around zero.
MULAW_TABLE = [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xF0, 120), (0x70, -120),
               (0xEF, 132), (0xBF, 1980)]
ALAW_TABLE = [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xC5, 264), (0xD4, 24)]


def reference_mulaw(sample: int) -> int:
    """One sample to μ-law, written from the G.711 description (sign, 14-bit magnitude + 33, segment,
    four mantissa bits, inverted), independently of the emulator's vectorised coder."""
    value = sample >> 2
    mask = 0x7F if value < 0 else 0xFF
    value = min(abs(value), 8159) + 33
    for segment, top in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)):
        if value <= top:
            return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def test_g711_decoding_tables() -> None:
    for code, value in MULAW_TABLE:
        assert struct.unpack("<h", mulaw_decode(bytes([code])))[0] == value, hex(code)
    for code, value in ALAW_TABLE:
        assert struct.unpack("<h", alaw_decode(bytes([code])))[0] == value, hex(code)


def test_g711_encoding_matches_the_reference() -> None:
    samples = [*range(-32768, 32768, 7), 32767]
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    assert mulaw_encode(pcm) == bytes(reference_mulaw(s) for s in samples)
    # Decoding what was encoded lands within one quantisation step of the input.
    back = struct.unpack(f"<{len(samples)}h", alaw_decode(alaw_encode(pcm)))
    assert all(abs(a - b) <= max(16, abs(a) // 16) for a, b in zip(samples, back, strict=True))


def test_g711_matches_audioop_where_python_still_has_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop: Any = pytest.importorskip("audioop", reason="audioop left the standard library in 3.13")
    every_code = bytes(range(256))
    every_sample = struct.pack("<65536h", *range(-32768, 32768))
    assert mulaw_decode(every_code) == audioop.ulaw2lin(every_code, 2)
    assert alaw_decode(every_code) == audioop.alaw2lin(every_code, 2)
    assert mulaw_encode(every_sample) == audioop.lin2ulaw(every_sample, 2)
    assert alaw_encode(every_sample) == audioop.lin2alaw(every_sample, 2)


async def test_nova3_reads_mulaw(emulator: Emulator) -> None:
    speech = tone(2.2, rate=8000)
    count = len(speech) // 2
    mulaw = bytes(reference_mulaw(s) for s in struct.unpack(f"<{count}h", speech))
    got = await session(emulator, "@cf/deepgram/nova-3", [mulaw, {"type": "CloseStream"}], chunk=800,
                        encoding="mulaw", sample_rate="8000")
    # The same results as the linear16 audio the μ-law codes stand for.
    expanded = mulaw_decode(mulaw)
    plain = await session(emulator, "@cf/deepgram/nova-3", [expanded, {"type": "CloseStream"}], chunk=1600,
                          encoding="linear16", sample_rate="8000")
    results = [m for m in got if m["type"] == "Results"]
    assert [r["duration"] for r in results] == [1.0, 1.0, 0.2]
    assert results[0]["channel"]["alternatives"][0]["words"]  # heard as speech
    def heard(messages: list[Any]) -> list[Any]:  # when words were heard (their text is seeded by the query)
        return [(m["start"], m["duration"], [(w["start"], w["end"]) for w in
                                             m["channel"]["alternatives"][0]["words"]])
                for m in messages if m["type"] == "Results"]

    assert heard(got) == heard(plain)
    assert got[-1]["duration"] == 2.2


async def test_aura_writes_mulaw_alaw_and_mp3(emulator: Emulator) -> None:
    line = "A sentence of about sixty characters for the speech to say."
    script = [{"type": "Speak", "text": line}, {"type": "Flush"}, {"type": "Close"}]

    async def speech(**query: str) -> bytes:
        got = await session(emulator, "@cf/deepgram/aura-1", script, **query)
        return b"".join(m for m in got if isinstance(m, bytes))

    pcm = await speech(encoding="linear16", sample_rate="8000")
    mulaw, alaw = await speech(encoding="mulaw"), await speech(encoding="alaw")  # 8 kHz by default
    assert len(mulaw) == len(alaw) == len(pcm) // 2  # one byte a sample, for the same duration
    for codes, decode in ((mulaw, mulaw_decode), (alaw, alaw_decode)):
        samples = struct.unpack(f"<{len(codes)}h", decode(codes))
        assert math.sqrt(sum(s * s for s in samples) / len(samples)) > 500  # speech, not noise or silence
    # Each code is the coding of the value it stands for (G.711 codes are fixed points of decode/encode;
    # μ-law's negative zero 0x7F codes as 0xFF).
    expanded = struct.unpack(f"<{len(mulaw)}h", mulaw_decode(mulaw))
    assert bytes(reference_mulaw(s) for s in expanded) == mulaw.replace(b"\x7f", b"\xff")
    assert alaw_encode(alaw_decode(alaw)) == alaw

    mp3 = await speech(encoding="mp3", bit_rate="32000")
    info = mutagen.mp3.MP3(io.BytesIO(mp3)).info
    assert info.sample_rate == 22050 and info.bitrate == 32000
    assert info.length == pytest.approx(len(line) / 15, abs=0.15)


async def refused(emulator: Emulator, model: str, **query: str) -> str:
    url = ws_url(emulator, model, **query).replace("ws:", "http:")
    headers = {**AUTH, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with emulator.session.get(url, headers=headers) as response:
        body = await response.json()
    assert response.status == 400 and body["errors"][0]["code"] == 5006
    message: str = body["errors"][0]["message"]
    with pytest.raises(aiohttp.WSServerHandshakeError):  # what a WebSocket client sees of it
        await session(emulator, model, [], **query)
    return message


async def test_encodings_the_emulator_cannot_code(emulator: Emulator) -> None:
    # Not declared by the catalog: the schema's enum error, as Cloudflare words it.
    assert "enum opus not in linear16 at '/encoding'" in await refused(
        emulator, "@cf/deepgram/flux", encoding="opus", sample_rate="16000")
    assert "enum alaw not in linear16,flac,mulaw,amr-nb,amr-wb,opus,speex,g729 at '/encoding'" in (
        await refused(emulator, "@cf/deepgram/nova-3", encoding="alaw"))
    assert "enum mp4 not in none,wav,ogg at '/container'" in await refused(
        emulator, "@cf/deepgram/aura-1", container="mp4")
    # Declared, but only a native codec reads or writes it: the emulator says what it takes.
    nova = await refused(emulator, "@cf/deepgram/nova-3", encoding="opus")
    assert "takes encoding linear16, mulaw, not 'opus'" in nova
    aura = await refused(emulator, "@cf/deepgram/aura-2-en", encoding="flac")
    assert "takes encoding linear16, mulaw, alaw, mp3, not 'flac'" in aura
    assert "container 'wav'" in await refused(emulator, "@cf/deepgram/aura-1", container="wav")

