"""Realtime WebSocket sessions in the cassette modes, against a real local WebSocket server standing in
for Cloudflare (tests/fake_upstream.py): relayed and recorded, replayed with the upstream gone, a
7404 miss before the upgrade and inside a session, passthrough, replay-or-record, a refused upgrade
and a connection the upstream dropped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator.cassettes import load_cassette
from tests.conftest import ACCOUNT, Emulator, ServerFactory
from tests.fake_upstream import REAL_ACCOUNT, REAL_TOKEN, FakeUpstream
from tests.test_record_replay import CLIENT_TOKEN, HEADERS, real_settings

NOVA = "@cf/deepgram/nova-3"
AURA = "@cf/deepgram/aura-1"
QUERY = {"encoding": "linear16", "sample_rate": "16000"}
AUDIO = [bytes([i]) * 3200 for i in range(1, 4)]  # three binary messages
SECRET_SPEECH = f"my key is {CLIENT_TOKEN}, mail me at alice@example.org"



def ws_url(emu: Emulator, model: str, query: dict[str, str]) -> str:
    url = emu.run_url(model).replace("http://", "ws://")
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


async def converse(emu: Emulator, model: str, sends: list[bytes | dict[str, Any]],
                   query: dict[str, str] | None = None) -> tuple[list[Any], int | None]:
    """Send every message, then collect what the server sends until it closes: JSON as dicts, binary
    as bytes; and the close code."""
    received: list[Any] = []
    async with emu.session.ws_connect(ws_url(emu, model, QUERY if query is None else query),
                                      headers=HEADERS) as ws:
        for item in sends:
            if isinstance(item, bytes):
                await ws.send_bytes(item)
            else:
                await ws.send_str(json.dumps(item))
        async for message in ws:
            received.append(json.loads(message.data) if message.type is aiohttp.WSMsgType.TEXT
                            else message.data)
        await asyncio.sleep(0)
        return received, ws.close_code


NOVA_SENDS: list[bytes | dict[str, Any]] = [*AUDIO, {"type": "CloseStream"}]
AURA_SENDS: list[bytes | dict[str, Any]] = [{"type": "Speak", "text": SECRET_SPEECH}, {"type": "Flush"},
                                            {"type": "Close"}]


async def charged(emu: Emulator, model: str) -> float:
    for _ in range(100):
        row = next((m for m in emu.state.ledger.usage(account=ACCOUNT).models if m.model == model), None)
        if row is not None:
            return row.neurons
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} was not charged")


async def test_record_then_replay_without_the_upstream(make_emulator: ServerFactory, upstream: FakeUpstream,
                                                       tmp_path: Path) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    nova, code = await converse(recorder, NOVA, NOVA_SENDS)
    assert code == 1000
    assert nova == [{"type": "Results", "n": i, "bytes": 3200} for i in (1, 2, 3)] + [
        {"type": "Metadata", "messages": 3, "query": QUERY}]
    aura, _ = await converse(recorder, AURA, AURA_SENDS, {})
    assert aura[0] == SECRET_SPEECH.encode()[::-1] and aura[1]["type"] == "Flushed"
    recorded_neurons = await charged(recorder, NOVA)
    assert recorded_neurons > 0  # 0.3 s of linear16 audio at nova-3's WebSocket rate

    # The upstream got the real token and account, the query, and the messages as sent.
    seen = [r for r in upstream.requests if r.method == "GET"]
    assert [r.path for r in seen] == [f"/client/v4/accounts/{REAL_ACCOUNT}/ai/run/{NOVA}",
                                      f"/client/v4/accounts/{REAL_ACCOUNT}/ai/run/{AURA}"]
    assert all(r.headers["Authorization"] == f"Bearer {REAL_TOKEN}" for r in seen)
    assert seen[0].query == QUERY

    path = tmp_path / "cassettes" / "suite.json"
    text = path.read_text()
    for secret in (CLIENT_TOKEN, REAL_TOKEN, REAL_ACCOUNT, ACCOUNT, "alice@example.org"):
        assert secret not in text
    cassette = load_cassette(text)
    first = cassette.interactions[0]
    assert first.request.method == "GET" and first.request.query == QUERY
    assert first.response.status == 101 and first.session is not None
    # Both ways in the order they passed (how they interleave depends on the network's timing).
    assert sorted(f.dir for f in first.session.frames) == ["in"] * 4 + ["out"] * 4
    assert [f.message() for f in first.session.frames if f.dir == "in"][:3] == AUDIO
    assert first.session.end == "server" and first.session.code == 1000
    offsets = [f.offset_ms for f in first.session.frames]
    assert offsets == sorted(offsets)
    assert first.neurons == recorded_neurons
    speak = cassette.interactions[1].session.frames[0]  # type: ignore[union-attr]
    assert speak.text is not None and "REDACTED" in speak.text

    await upstream.stop()
    player = await make_emulator(**real_settings(None, tmp_path, "replay"))
    assert await converse(player, NOVA, NOVA_SENDS) == (nova, 1000)
    assert (await converse(player, AURA, AURA_SENDS, {}))[0] == aura  # the secret matches once redacted
    assert await charged(player, NOVA) == recorded_neurons
    log = await (await player.session.get(f"{player.base}/__emulator__/requests")).json()
    sessions = [e for e in log["requests"] if e.get("model") == NOVA]
    assert sessions and sessions[-1]["status"] == 101


async def test_replay_misses(make_emulator: ServerFactory, upstream: FakeUpstream, tmp_path: Path) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    recorded, _ = await converse(recorder, NOVA, NOVA_SENDS)
    await upstream.stop()
    player = await make_emulator(**real_settings(None, tmp_path, "replay"))

    # Another query: refused before the upgrade, like a request miss.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await converse(player, NOVA, NOVA_SENDS, {**QUERY, "sample_rate": "8000"})
    assert refused.value.status == 404
    plain = ws_url(player, NOVA, {**QUERY, "sample_rate": "8000"}).replace("ws:", "http:")
    async with player.session.get(plain, headers={**HEADERS, "Upgrade": "websocket", "Connection": "Upgrade",
                                           "Sec-WebSocket-Version": "13",
                                           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
        body = await resp.json()
    assert body["errors"][0]["code"] == 7404 and "query" in body["errors"][0]["message"]

    # Other audio in the second message: what the recording sent before it is replayed (how many
    # answers that is depends on how they interleaved when recorded), then a 7404 message and 1008.
    got, code = await converse(player, NOVA, [AUDIO[0], b"\x09" * 3200, {"type": "CloseStream"}])
    *before, error = got
    assert before == recorded[:len(before)] and len(before) <= 2
    assert error["success"] is False and error["errors"][0]["code"] == 7404
    assert "message #2, binary 3200 bytes" in error["errors"][0]["message"]
    assert code == 1008


async def test_passthrough_stores_nothing_and_replay_or_record_records_once(
        make_emulator: ServerFactory, upstream: FakeUpstream, tmp_path: Path) -> None:
    passing = await make_emulator(**real_settings(upstream, tmp_path, "passthrough"))
    got, _ = await converse(passing, NOVA, NOVA_SENDS)
    assert got[-1]["type"] == "Metadata"
    assert not (tmp_path / "cassettes" / "suite.json").exists()

    either = await make_emulator(**real_settings(upstream, tmp_path, "replay-or-record"))
    first, _ = await converse(either, NOVA, NOVA_SENDS)
    sent = len(upstream.requests)
    await upstream.stop()
    assert await converse(either, NOVA, NOVA_SENDS) == (first, 1000)  # replayed: the upstream is gone
    assert len(upstream.requests) == sent
    assert len(load_cassette((tmp_path / "cassettes" / "suite.json").read_text()).interactions) == 1


async def test_a_refused_upgrade_is_relayed_recorded_and_replayed(
        make_emulator: ServerFactory, upstream: FakeUpstream, tmp_path: Path) -> None:
    settings = real_settings(upstream, tmp_path, "record", upstream_token="wrong-token")
    recorder = await make_emulator(**settings)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await converse(recorder, NOVA, NOVA_SENDS)
    assert refused.value.status == 401
    recorded = load_cassette((tmp_path / "cassettes" / "suite.json").read_text()).interactions
    assert recorded[0].response.status == 401 and recorded[0].session is None
    body = recorded[0].response.body
    assert body is not None and body.json_["errors"][0]["code"] == 10000
    await upstream.stop()
    player = await make_emulator(**real_settings(None, tmp_path, "replay"))
    with pytest.raises(aiohttp.WSServerHandshakeError) as again:
        await converse(player, NOVA, NOVA_SENDS)
    assert again.value.status == 401


async def test_a_dropped_upstream_connection_is_replayed_as_one(
        make_emulator: ServerFactory, upstream: FakeUpstream, tmp_path: Path) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    sends: list[bytes | dict[str, Any]] = [AUDIO[0], {"type": "Break"}]
    got, code = await converse(recorder, NOVA, sends)
    assert got == [{"type": "Results", "n": 1, "bytes": 3200}] and code != 1000
    session = load_cassette((tmp_path / "cassettes" / "suite.json").read_text()).interactions[0].session
    assert session is not None and session.end == "cut"
    await upstream.stop()
    player = await make_emulator(**real_settings(None, tmp_path, "replay"))
    again, code = await converse(player, NOVA, sends)
    assert again == got and code != 1000


async def test_the_upstream_unreachable_is_a_cloudflare_shaped_error(make_emulator: ServerFactory,
                                                                     tmp_path: Path) -> None:
    emu = await make_emulator(**real_settings(None, tmp_path, "record"))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await converse(emu, NOVA, NOVA_SENDS)
    assert refused.value.status == 502


async def test_faults_apply_to_relayed_and_replayed_sessions(make_emulator: ServerFactory,
                                                             upstream: FakeUpstream, tmp_path: Path) -> None:
    async def fault(emu: Emulator, spec: dict[str, Any]) -> None:
        async with emu.session.post(f"{emu.base}/__emulator__/faults", json=spec, headers=HEADERS) as r:
            assert r.status in (200, 201), await r.text()

    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    whole, _ = await converse(recorder, NOVA, NOVA_SENDS)
    await fault(recorder, {"model": NOVA, "kind": "cut_stream", "after_events": 2, "times": 1})
    cut, code = await converse(recorder, NOVA, NOVA_SENDS)
    assert cut == whole[:2] and code != 1000  # relayed, then dropped; not recorded (the model did not)
    assert len(load_cassette((tmp_path / "cassettes" / "suite.json").read_text()).interactions) == 1
    await upstream.stop()
    player = await make_emulator(**real_settings(None, tmp_path, "replay"))
    await fault(player, {"model": NOVA, "error": 3040, "times": 1})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await converse(player, NOVA, NOVA_SENDS)
    assert refused.value.status == 429
    await fault(player, {"model": NOVA, "kind": "cut_stream", "after_events": 1, "times": 1})
    cut, code = await converse(player, NOVA, NOVA_SENDS)
    assert cut == whole[:1] and code != 1000
