"""Realtime models over real WebSockets (aiohttp's client): flux turns, nova-3 streaming results, aura
speech frames, smart-turn predictions; determinism, billing, the request log and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from typing import Any

import aiohttp
import pytest

from emulator.accounting.pricing import round_neurons
from emulator.call import Usage
from tests.conftest import ACCOUNT, AUTH, Emulator

RATE = 16000


def tone(seconds: float, rate: int = RATE, amplitude: int = 8000) -> bytes:
    """Voiced audio: a 220 Hz tone, 16-bit little-endian PCM, made without the emulator's fakes."""
    count = round(seconds * rate)
    return struct.pack(f"<{count}h", *(int(amplitude * math.sin(2 * math.pi * 220 * i / rate))
                                       for i in range(count)))


def silence(seconds: float, rate: int = RATE) -> bytes:
    return b"\x00\x00" * round(seconds * rate)


def ws_url(emulator: Emulator, model: str, **query: str) -> str:
    url = emulator.run_url(model).replace("http://", "ws://")
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def session(emulator: Emulator, model: str, sends: list[bytes | dict[str, Any]], *, chunk: int = 3200,
                  **query: str) -> list[Any]:
    """Connect, send each item (audio cut into `chunk`-byte frames, or a JSON message), and collect every
    server message until the server closes: JSON messages as dicts, binary ones as bytes."""
    received: list[Any] = []
    async with emulator.session.ws_connect(ws_url(emulator, model, **query), headers=AUTH) as ws:
        async def reader() -> None:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(message.data))
                elif message.type is aiohttp.WSMsgType.BINARY:
                    received.append(message.data)
        task = asyncio.create_task(reader())
        for item in sends:
            if isinstance(item, dict):
                await ws.send_str(json.dumps(item))
            else:
                for i in range(0, len(item), chunk):
                    await ws.send_bytes(item[i:i + chunk])
        await asyncio.wait_for(task, 10)
    return received


async def model_usage(emulator: Emulator, model: str, requests: int) -> Any:
    """The ledger's row for `model` once it counts `requests` sessions (a session is charged just after
    its socket closes, so the client can get there first)."""
    for _ in range(100):
        usage = emulator.state.ledger.usage(account=ACCOUNT)
        row = next((m for m in usage.models if m.model == model), None)
        if row is not None and row.requests >= requests:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} was not charged {requests} time(s)")


def events(messages: list[Any]) -> list[tuple[str, int, str]]:
    return [(m["event"], m["turn_index"], m["transcript"]) for m in messages
            if isinstance(m, dict) and m.get("type") == "TurnInfo" and m["event"] != "Update"]


FLUX_AUDIO = [silence(0.4), tone(1.2), silence(1.2), tone(0.8), {"type": "CloseStream"}]


async def test_flux_turns_from_the_audio(emulator: Emulator) -> None:
    got = await session(emulator, "@cf/deepgram/flux", FLUX_AUDIO, encoding="linear16", sample_rate="16000")
    assert got[0]["type"] == "Connected" and got[0]["sequence_id"] == 0
    assert [m["sequence_id"] for m in got] == list(range(len(got)))
    turns = events(got)
    assert [(e, t) for e, t, _ in turns] == [("StartOfTurn", 0), ("EndOfTurn", 0), ("StartOfTurn", 1),
                                              ("EndOfTurn", 1)]
    first_end = next(m for m in got if m.get("event") == "EndOfTurn")
    assert len(first_end["words"]) == 3  # 1.2 s of speech at 2.5 words a second
    assert first_end["transcript"] == " ".join(w["word"] for w in first_end["words"])
    assert all(set(w) == {"word", "confidence"} for w in first_end["words"])
    assert first_end["end_of_turn_confidence"] >= 0.7
    assert first_end["audio_window_start"] == pytest.approx(0.4, abs=0.03)
    updates = [m for m in got if m.get("event") == "Update"]
    assert len(updates) >= 10  # about every 0.25 s of the 3.6 s of audio
    # Same audio and seed, different chunking: the same turns and words.
    again = await session(emulator, "@cf/deepgram/flux", FLUX_AUDIO, chunk=1000, encoding="linear16",
                          sample_rate="16000")
    assert events(again) == turns
    flux = await model_usage(emulator, "@cf/deepgram/flux", 2)
    expected = float(round_neurons(3.6 / 60 * 700))
    assert flux.requests == 2 and flux.neurons == pytest.approx(2 * expected)


async def test_flux_eager_end_of_turn_and_resume(emulator: Emulator) -> None:
    audio = [tone(1.0), silence(0.5), tone(0.6), silence(1.0), {"type": "CloseStream"}]
    got = await session(emulator, "@cf/deepgram/flux", audio, encoding="linear16", sample_rate="16000",
                        eager_eot_threshold="0.5")
    names = [e for e, _, _ in events(got)]
    assert names == ["StartOfTurn", "EagerEndOfTurn", "TurnResumed", "EagerEndOfTurn", "EndOfTurn"]
    eager = [m for m in got if m.get("event") == "EagerEndOfTurn"]
    end = next(m for m in got if m.get("event") == "EndOfTurn")
    assert eager[0]["transcript"] and end["transcript"] == eager[-1]["transcript"]


async def test_flux_query_is_checked_before_the_upgrade(emulator: Emulator) -> None:
    for query in ({"encoding": "linear16"}, {"sample_rate": "16000", "encoding": "opus"},
                  {"sample_rate": "16000", "encoding": "linear16", "eot_threshold": "2"},
                  # int() refuses 4,300 digits; "\u0661\u0666\u0660\u0660\u0660" is 16000 to int() only
                  {"sample_rate": "9" * 5000, "encoding": "linear16"},
                  {"sample_rate": "\u0661\u0666\u0660\u0660\u0660", "encoding": "linear16"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session(emulator, "@cf/deepgram/flux", [], **query)
        assert caught.value.status == 400
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:  # a model without a realtime interface
        await session(emulator, "@cf/meta/llama-3.1-8b-instruct", [])
    assert caught.value.status == 400
    async with emulator.session.get(ws_url(emulator, "@cf/deepgram/flux"), headers=AUTH) as response:
        assert response.status == 405  # run/ without the upgrade is POST only


async def test_nova3_streaming_results_and_metadata(emulator: Emulator) -> None:
    audio = [tone(2.5), {"type": "KeepAlive"}, {"type": "CloseStream"}]
    got = await session(emulator, "@cf/deepgram/nova-3", audio, encoding="linear16", sample_rate="16000")
    results = [m for m in got if m["type"] == "Results"]
    assert [r["start"] for r in results] == [0.0, 1.0, 2.0]
    assert [r["duration"] for r in results] == [1.0, 1.0, 0.5]
    words = results[0]["channel"]["alternatives"][0]["words"]
    assert len(words) == 2 or len(words) == 3
    assert {"word", "start", "end", "confidence", "punctuated_word"} <= set(words[0])
    assert got[-1]["type"] == "Metadata" and got[-1]["duration"] == 2.5
    nova = await model_usage(emulator, "@cf/deepgram/nova-3", 1)
    assert nova.neurons == pytest.approx(float(round_neurons(2.5 / 60 * 836.36)))  # the WebSocket rate
    assert emulator.state.prices.neurons("@cf/deepgram/nova-3", Usage(audio_seconds=2.5)) < nova.neurons
    finalized = await session(emulator, "@cf/deepgram/nova-3", [tone(0.4), {"type": "Finalize"},
                                                                {"type": "CloseStream"}])
    assert finalized[0]["from_finalize"] is True and finalized[0]["duration"] == 0.4


@pytest.mark.parametrize("model", ["@cf/deepgram/aura-1", "@cf/deepgram/aura-2-en", "@cf/deepgram/aura-2-es"])
async def test_aura_streams_speech(emulator: Emulator, model: str) -> None:
    line = "Line one, out of three lines that will be provided to the aura model."
    got = await session(emulator, model, [{"type": "Speak", "text": line}, {"type": "Flush"},
                                          {"type": "Speak", "text": "dropped"}, {"type": "Clear"},
                                          {"type": "Close"}])
    assert got[0]["type"] == "Metadata"
    frames = [m for m in got if isinstance(m, bytes)]
    audio = b"".join(frames)
    assert len(audio) == round(round(len(line) / 15, 3) * 24000) * 2  # 24 kHz linear16 for its length
    assert max(abs(v) for (v,) in struct.iter_unpack("<h", audio[:4800])) > 1000  # not silence
    assert {"type": "Flushed", "sequence_id": 0} in got and {"type": "Cleared", "sequence_id": 1} in got
    again = await session(emulator, model, [{"type": "Speak", "text": line}, {"type": "Flush"},
                                            {"type": "Close"}])
    assert b"".join(m for m in again if isinstance(m, bytes)) == audio  # deterministic
    billed = await model_usage(emulator, model, 2)
    rate = 1363.64 if model.endswith("aura-1") else 2727.27
    assert billed.neurons == pytest.approx(2 * float(round_neurons(len(line) / 1000 * rate)))


async def test_smart_turn_predictions(emulator: Emulator) -> None:
    ended = tone(0.8) + silence(0.5)
    speaking = silence(0.2) + tone(0.8)
    got = await session(emulator, "@cf/pipecat-ai/smart-turn-v2",
                        [ended, speaking, {"audio": base64.b64encode(ended).decode(), "dtype": "uint8"},
                         {"type": "Close"}], chunk=10**9)
    assert got[0]["is_complete"] is True and got[0]["probability"] > 0.9
    assert got[1]["is_complete"] is False and got[1]["probability"] < 0.1
    assert got[2] == got[0]
    row = await model_usage(emulator, "@cf/pipecat-ai/smart-turn-v2", 1)
    assert row.neurons == float(round_neurons(3.6 / 60 * 0.51))  # 1.3 s + 1.0 s + 1.3 s of audio


async def test_sessions_in_the_request_log(emulator: Emulator) -> None:
    await session(emulator, "@cf/deepgram/flux", FLUX_AUDIO, encoding="linear16", sample_rate="16000")
    await model_usage(emulator, "@cf/deepgram/flux", 1)
    async with emulator.session.get(f"{emulator.base}/__emulator__/requests", params={"surface": "realtime"},
                                    headers=AUTH) as response:
        logged = (await response.json())["requests"]
    assert len(logged) == 1
    entry = logged[0]
    assert entry["status"] == 101 and entry["model"] == "@cf/deepgram/flux" and entry["stream"] is True
    assert entry["neurons"] == float(round_neurons(3.6 / 60 * 700))
    assert entry["response"]["kind"] == "websocket" and entry["response"]["audio_seconds"] == 3.6
    assert entry["response"]["messages_in"] > 0 and entry["response"]["messages_out"] > 0
    async with emulator.session.get(f"{emulator.base}/__emulator__/", params={"request": str(entry["id"])},
                                    headers=AUTH) as response:
        page = await response.text()
    assert response.status == 200
    assert "@cf/deepgram/flux" in page
    assert f"WebSocket session: {entry['response']['messages_in']} messages in" in page  # the dashboard


async def add_fault(emulator: Emulator, spec: dict[str, Any]) -> None:
    async with emulator.session.post(f"{emulator.base}/__emulator__/faults", json=spec, headers=AUTH) as r:
        assert r.status in (200, 201), await r.text()


async def test_faults_refuse_cut_and_delay(emulator: Emulator) -> None:
    await add_fault(emulator, {"model": "@cf/deepgram/nova-3", "error": 3040, "times": 1})
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await session(emulator, "@cf/deepgram/nova-3", [])
    assert caught.value.status == 429
    await add_fault(emulator, {"model": "@cf/deepgram/flux", "kind": "cut_stream", "after_events": 3,
                               "times": 1})
    got = await session(emulator, "@cf/deepgram/flux", FLUX_AUDIO, encoding="linear16", sample_rate="16000")
    assert len(got) == 3  # then the connection dropped
    async with emulator.session.get(f"{emulator.base}/__emulator__/requests",
                                    params={"surface": "realtime"}, headers=AUTH) as response:
        assert (await response.json())["requests"][-1]["cut"] is True
    await add_fault(emulator, {"model": "@cf/deepgram/aura-1", "kind": "slow_stream", "delay_ms": 150,
                               "times": 1})
    started = time.monotonic()
    got = await session(emulator, "@cf/deepgram/aura-1", [{"type": "Speak", "text": "hi"}, {"type": "Flush"},
                                                          {"type": "Close"}])
    assert time.monotonic() - started >= 0.15 * len(got)
