"""The request log learns about a request's model call from what the call carries back (its report on
the response, on the streamed response when a stream is cut, on the error when the call failed), on
every surface, over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from emulator.server.tomarkdown import DESCRIPTION_MODEL
from tests.conftest import AUTH, Emulator, ServerFactory, parse_sse
from tests.fake_upstream import LLAMA as RECORDED_LLAMA
from tests.fake_upstream import SSE_EVENTS, FakeUpstream
from tests.test_batch import MODEL as BATCH_MODEL
from tests.test_batch import post as batch_post
from tests.test_binding import ENDPOINT, framed
from tests.test_binding import run as binding_run
from tests.test_control_plane import LLAMA, chat, ctl
from tests.test_record_replay import read_stream, real_settings
from tests.test_tomarkdown import png_bytes, transform

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


async def fault(emulator: Emulator, spec: dict[str, Any]) -> str:
    created = await ctl(emulator, "POST", "faults", spec, expect=201)
    return str(created["id"])


async def only_entry(emulator: Emulator) -> dict[str, Any]:
    [entry] = (await ctl(emulator, "GET", "requests"))["requests"]
    return entry


async def read_until_cut(response: aiohttp.ClientResponse) -> bytes:
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in response.content.iter_any():
            received += chunk
    return received


async def test_a_cut_native_stream_is_logged_with_its_call(emulator: Emulator) -> None:
    fault_id = await fault(emulator, {"kind": "cut_stream", "after_events": 2})
    r = await emulator.run(LLAMA, {"prompt": "tell me a story", "stream": True})
    await read_until_cut(r)
    entry = await only_entry(emulator)
    assert entry["cut"] and entry["faulted"] and entry["fault_ids"] == [fault_id]
    assert entry["status"] == 200 and entry["stream"] and entry["surface"] == "native"
    assert entry["model"] == LLAMA and entry["source"] == "mock"
    assert entry["request_id"] == r.headers["cf-ai-req-id"]
    assert entry["neurons"] == pytest.approx(float(r.headers["cf-ai-neurons"]))


async def test_a_cut_openai_stream_names_the_model_of_its_body(emulator: Emulator) -> None:
    # The chat path names no model: only the call's report can.
    fault_id = await fault(emulator, {"kind": "cut_stream", "after_events": 1, "surface": "chat"})
    r = await chat(emulator, {"model": LLAMA, "messages": HI, "stream": True})
    received = await read_until_cut(r)
    assert b"[DONE]" not in received
    entry = await only_entry(emulator)
    assert entry["model"] == LLAMA and entry["surface"] == "chat" and entry["stream"]
    assert entry["cut"] and entry["fault_ids"] == [fault_id]


async def test_a_slow_openai_stream_is_slowed_and_logged(emulator: Emulator) -> None:
    fault_id = await fault(emulator, {"kind": "slow_stream", "delay_ms": 30, "surface": "chat"})
    r = await chat(emulator, {"model": LLAMA, "messages": HI, "stream": True})
    events = parse_sse(await r.text())
    assert events[-1] == "[DONE]"
    entry = await only_entry(emulator)
    assert entry["latency_ms"] >= 30 * len(events)
    assert not entry["cut"] and entry["faulted"] and entry["fault_ids"] == [fault_id]


async def test_an_injected_error_is_logged_with_the_call_it_refused(emulator: Emulator) -> None:
    await fault(emulator, {"kind": "capacity", "surface": "chat"})
    r = await chat(emulator, {"model": LLAMA, "messages": HI})
    assert r.status == 429
    entry = await only_entry(emulator)
    assert entry["status"] == 429 and entry["error_code"] == 3040 and entry["faulted"]
    assert entry["model"] == LLAMA and entry["surface"] == "chat"
    assert entry["request_id"] == r.headers["cf-ai-req-id"]


async def test_binding_streams_take_stream_faults_and_are_logged(emulator: Emulator) -> None:
    fault_id = await fault(emulator, {"kind": "cut_stream", "after_events": 2, "surface": "binding"})
    r = await binding_run(emulator, LLAMA, {"prompt": "tell me a story", "stream": True})
    received = await read_until_cut(r)
    assert b"[DONE]" not in received and received.count(b"data: ") == 2
    entry = await only_entry(emulator)
    assert entry["surface"] == "binding" and entry["model"] == LLAMA and entry["stream"]
    assert entry["cut"] and entry["fault_ids"] == [fault_id] and entry["source"] == "mock"


async def test_a_stubbed_answer_is_logged_with_its_stub(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"model": LLAMA, "text": "stubbed"}, expect=201)
    r = await chat(emulator, {"model": LLAMA, "messages": HI})
    assert (await r.json())["choices"][0]["message"]["content"] == "stubbed"
    entry = await only_entry(emulator)
    assert entry["stubbed"] and entry["stub_id"] == "stub-1" and entry["source"] == "stub"
    assert entry["model"] == LLAMA and entry["neurons"] == pytest.approx(float(r.headers["cf-ai-neurons"]))


async def test_tomarkdown_logs_one_line_with_what_its_image_calls_cost(emulator: Emulator) -> None:
    status, body, response = await transform(emulator, [("red.png", png_bytes(), "image/png")])
    assert status == 200 and body["result"][0]["format"] == "markdown"
    entry = await only_entry(emulator)
    assert entry["surface"] == "tomarkdown" and entry["model"] == DESCRIPTION_MODEL
    assert entry["source"] == "mock" and not entry["faulted"]
    assert entry["request_id"] == response.headers["cf-ai-req-id"]
    assert entry["neurons"] > 0
    assert entry["neurons"] == pytest.approx(float(response.headers["cf-ai-neurons"]))


async def test_a_refused_image_call_marks_the_tomarkdown_line_faulted(emulator: Emulator) -> None:
    await fault(emulator, {"kind": "capacity", "model": DESCRIPTION_MODEL})
    status, body, _ = await transform(emulator, [("red.png", png_bytes(), "image/png")])
    assert status == 200 and body["result"][0]["format"] == "error"
    entry = await only_entry(emulator)
    assert entry["surface"] == "tomarkdown" and entry["faulted"] and entry["model"] == DESCRIPTION_MODEL


async def test_a_binding_tomarkdown_logs_one_line_with_all_its_image_calls(emulator: Emulator) -> None:
    image = base64.b64encode(png_bytes()).decode()
    files = [{"name": f"{n}.png", "mimeType": "image/png", "data": image} for n in ("a", "b")]
    headers = framed(f"{ENDPOINT}/to-everything/markdown/transformer", {"content-type": "application/json"})
    r = await emulator.session.post(f"{emulator.base}/", data=json.dumps({"files": files}), headers=headers)
    assert [f["format"] for f in (await r.json())["result"]] == ["markdown", "markdown"]
    entry = await only_entry(emulator)
    assert entry["surface"] == "binding" and entry["model"] == DESCRIPTION_MODEL
    usage = await ctl(emulator, "GET", "usage")
    assert usage["neurons"] > 0 and entry["neurons"] == pytest.approx(usage["neurons"])


async def test_native_calls_without_a_control_plane_answer_as_before(make_emulator: Any) -> None:
    emu = await make_emulator(control_plane=False)
    r = await emu.session.post(emu.run_url(LLAMA), json={"prompt": "x", "stream": True}, headers=AUTH)
    assert parse_sse(await r.text())[-1] == "[DONE]"


async def test_a_replayed_stream_is_cut_by_a_stream_fault_and_logged(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    received, broke, _ = await read_stream(recorder, "Hi")
    assert not broke and received.count(b"data: ") == len(SSE_EVENTS)
    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    fault_id = await fault(replayer, {"kind": "cut_stream", "after_events": 2})
    received, broke, _ = await read_stream(replayer, "Hi")
    assert broke and received.count(b"data: ") == 2
    [entry] = (await ctl(replayer, "GET", "requests"))["requests"]
    assert entry["source"] == "replay" and entry["model"] == RECORDED_LLAMA and entry["stream"]
    assert entry["cut"] and entry["fault_ids"] == [fault_id]


async def test_the_batch_poll_that_runs_a_batch_names_its_last_call(emulator: Emulator) -> None:
    status, body = await batch_post(emulator, BATCH_MODEL, {"requests": [{"text": "one"}, {"text": "two"}]})
    batch_id = body["result"]["request_id"]
    while "responses" not in body["result"]:
        status, body = await batch_post(emulator, BATCH_MODEL, {"request_id": batch_id})
        assert status == 200
    log = (await ctl(emulator, "GET", "requests"))["requests"]
    assert log[-1]["request_id"] == f"{batch_id}/1" and log[-1]["model"] == BATCH_MODEL
    assert log[-1]["neurons"] > 0 and log[-1]["source"] == "mock"
    assert all(e["request_id"] != f"{batch_id}/1" for e in log[:-1])
