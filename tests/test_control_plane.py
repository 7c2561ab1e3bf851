"""The control plane over real HTTP: every /__emulator__/ route, stubs on every surface, each fault kind."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import AUTH, Emulator, ServerFactory, parse_sse

LLAMA = "@cf/meta/llama-3-8b-instruct"
EMBED = "@cf/baai/bge-small-en-v1.5"


async def ctl(
    emu: Emulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    expect: int | None = 200,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with emu.session.request(
        method, f"{emu.base}/__emulator__/{path}", json=body, headers=headers
    ) as r:
        payload = await r.json()
        if expect is not None:
            assert r.status == expect, payload
        return payload


async def chat(emu: Emulator, body: dict[str, Any]) -> aiohttp.ClientResponse:
    return await emu.session.post(f"{emu.ai}/v1/chat/completions", json=body, headers=AUTH)


async def test_health_is_open_and_names_the_mode(emulator: Emulator) -> None:
    body = await ctl(emulator, "GET", "health")
    assert body["status"] == "ok" and body["mode"] == "mock" and body["version"]


async def test_text_stub_renders_on_native_json_and_is_billed_by_its_tokens(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"model": LLAMA, "text": "The answer is 42."}, expect=201)
    r = await emulator.run(LLAMA, {"prompt": "What is the answer?"})
    body = await r.json()
    assert r.status == 200
    assert body["result"]["response"] == "The answer is 42."
    assert body["result"]["usage"]["completion_tokens"] > 0
    assert float(r.headers["cf-ai-neurons"]) > 0
    usage = await ctl(emulator, "GET", "usage")
    assert usage["requests"] == 1 and usage["neurons"] == pytest.approx(float(r.headers["cf-ai-neurons"]))
    [entry] = (await ctl(emulator, "GET", "requests"))["requests"]
    assert (
        entry["stubbed"]
        and entry["stub_id"] == "stub-1"
        and entry["body"] == {"prompt": "What is the answer?"}
    )


async def test_text_stub_streams_on_native_sse(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"model": "@cf/meta/*", "text": "Streaming works fine."}, expect=201)
    r = await emulator.run(LLAMA, {"prompt": "hi", "stream": True})
    events = parse_sse(await r.text())
    assert events[-1] == "[DONE]"

    text = "".join(json.loads(e)["response"] for e in events[:-1])
    assert text == "Streaming works fine."


async def test_text_stub_on_openai_chat_stream_and_non_stream(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"surface": "chat", "text": "From the OpenAI side."}, expect=201)
    messages = [{"role": "user", "content": "hello"}]
    r = await chat(emulator, {"model": LLAMA, "messages": messages})
    assert r.status == 200
    assert (await r.json())["choices"][0]["message"]["content"] == "From the OpenAI side."
    r = await chat(emulator, {"model": LLAMA, "messages": messages, "stream": True})

    events = parse_sse(await r.text())
    assert events[-1] == "[DONE]"
    deltas = [
        json.loads(e)["choices"][0]["delta"].get("content") or ""
        for e in events[:-1]
        if json.loads(e).get("choices")
    ]
    assert "".join(deltas) == "From the OpenAI side."
    # The native surface is out of this stub's scope.
    native = await (await emulator.run(LLAMA, {"prompt": "hello"})).json()
    assert native["result"]["response"] != "From the OpenAI side."


async def test_stub_sequence_last_repeats_and_error_codes(emulator: Emulator) -> None:
    await ctl(
        emulator,
        "POST",
        "stubs",
        {"model": LLAMA, "results": [{"text": "first"}, {"error": 3040}, {"text": "last"}]},
        expect=201,
    )
    seen = []
    for _ in range(4):
        r = await emulator.run(LLAMA, {"prompt": "x"})
        body = await r.json()
        seen.append(body["result"]["response"] if r.status == 200 else (r.status, body["errors"][0]["code"]))
    assert seen == ["first", (429, 3040), "last", "last"]
    [stub] = (await ctl(emulator, "GET", "stubs"))["stubs"]
    assert stub["calls"] == 4


async def test_stub_matching_prompt_regex_body_subset_and_newest_wins(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"model": "@cf/meta/*", "text": "generic"}, expect=201)
    await ctl(
        emulator, "POST", "stubs", {"prompt": r"(?i)weather", "text": "sunny", "name": "weather"}, expect=201
    )
    await ctl(emulator, "POST", "stubs", {"body": {"max_tokens": 7}, "text": "seven"}, expect=201)

    async def say(body: dict[str, Any]) -> str:
        return str((await (await emulator.run(LLAMA, body)).json())["result"]["response"])

    assert await say({"messages": [{"role": "user", "content": "What's the WEATHER?"}]}) == "sunny"
    assert await say({"prompt": "anything", "max_tokens": 7}) == "seven"
    assert await say({"prompt": "anything"}) == "generic"
    await ctl(emulator, "DELETE", "stubs/weather")
    assert await say({"prompt": "weather"}) == "generic"
    await ctl(emulator, "DELETE", "stubs")
    assert (await ctl(emulator, "GET", "stubs"))["stubs"] == []
    assert await say({"prompt": "anything"}) != "generic"


async def test_raw_result_stub_for_other_tasks(emulator: Emulator) -> None:
    await ctl(
        emulator,
        "POST",
        "stubs",
        {"model": EMBED, "result": {"shape": [1, 2], "data": [[0.5, 0.5]]}},
        expect=201,
    )
    body = await (await emulator.run(EMBED, {"text": "hi"})).json()
    assert body["result"] == {"shape": [1, 2], "data": [[0.5, 0.5]]}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"text": 3},
        {"text": "a", "result": 1},
        {"error": 99999},
        {"error": "nope"},
        {"prompt": "("},
        {"surface": "fax", "text": "x"},
        {"results": []},
        {"text": "x", "bogus": 1},
    ],
)
async def test_bad_stub_specs_get_400(emulator: Emulator, spec: dict[str, Any]) -> None:
    body = await ctl(emulator, "POST", "stubs", spec, expect=400)
    assert body["error"]


FAULT_FIELDS = ("['account', 'after_events', 'body', 'delay_ms', 'error', 'every', 'id', 'kind', "
                "'latency_ms', 'model', 'name', 'nth', 'probability', 'prompt', 'seed', 'surface', 'times']")
STUB_FIELDS = ("['account', 'body', 'error', 'finish_reason', 'id', 'model', 'name', 'prompt', 'result', "
               "'results', 'surface', 'text', 'times']")


@pytest.mark.parametrize(
    ("path", "spec", "message"),
    [
        ('faults', [1],
         'a fault is a JSON object, e.g. {"kind": "capacity", "model": "@cf/meta/*"}'),
        ('faults', {'kind': 'capacity', 'bogus': 1},
         "unknown fault field(s) ['bogus']; known: " + FAULT_FIELDS),
        ('faults', {'model': '@cf/meta/*'},
         'a fault needs `kind` (capacity, timeout, upstream, server_error, daily_limit, latency, '
         'slow_stream, cut_stream) or `error` (a Cloudflare code)'),
        ('faults', {'kind': 'nope'},
         "unknown error kind 'nope'; use a code (3040, 3007, 7009, 1000, 4006, …) or one of "
         "['aborted', 'capacity', 'daily_limit', 'server_error', 'timeout', 'upstream_unavailable']"),
        ('faults', {'error': [1]},
         '`error` must be a Cloudflare error code or kind, not [1]'),
        ('faults', {'kind': True},
         '`error` must be a Cloudflare error code or kind, not True'),
        ('faults', {'error': 99999},
         "no Cloudflare error with code 99999 in the emulator's catalogue"),
        ('faults', {'kind': 'capacity', 'probability': 2},
         '`probability` must be a number between 0 and 1'),
        ('faults', {'kind': 'capacity', 'seed': 'x'},
         '`seed` must be an integer'),
        ('faults', {'kind': 'capacity', 'latency_ms': -1},
         'latency must be >= 0 ms'),
        ('faults', {'kind': 'capacity', 'latency_ms': 'x'},
         '`latency_ms` must be a number or {"distribution": "uniform"|"normal", …}'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'uniform', 'max_ms': 'x'}},
         'latency bounds must be numbers'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'uniform', 'max_ms': -1}},
         'latency values must be >= 0'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'uniform'}},
         'a uniform latency needs `max_ms` (and optionally `min_ms`)'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'uniform', 'min_ms': 9, 'max_ms': 1}},
         '`min_ms` is larger than `max_ms`'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'normal'}},
         'a normal latency needs `mean_ms` (and `stddev_ms`, optional bounds)'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'zipf'}},
         'unknown latency distribution \'zipf\'; use "uniform" or "normal"'),
        ('faults', {'kind': 'latency', 'latency_ms': {}},
         'unknown latency distribution None; use "uniform" or "normal"'),
        ('faults', {'kind': 'latency'},
         'a latency fault needs `latency_ms` (a number or a distribution)'),
        ('faults', {'kind': 'slow_stream', 'delay_ms': -1},
         '`delay_ms` must be a number >= 0'),
        ('faults', {'kind': 'slow_stream', 'delay_ms': 1e300},
         '`delay_ms` must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'latency', 'latency_ms': 1e300},
         'latency values must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'latency', 'latency_ms': 600_001},
         'latency values must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'normal', 'mean_ms': 1e308}},
         'latency values must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'normal', 'mean_ms': 5,
                                                      'stddev_ms': 1e300}},
         'latency values must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': 'uniform', 'max_ms': 1e300}},
         'latency values must be at most 600,000 ms (10 minutes)'),
        ('faults', {'kind': 'slow_stream'},
         'a slow_stream fault needs `delay_ms` (the extra delay before every event)'),
        ('faults', {'kind': 'cut_stream', 'after_events': -1},
         '`after_events` must be an integer >= 0'),
        ('faults', {'kind': 'cut_stream'},
         'a cut_stream fault needs `after_events` (events sent before the connection drops)'),
        ('faults', {'kind': 'capacity', 'name': 5},
         '`name` must be a string'),
        ('faults', {'kind': 'capacity', 'nth': 0},
         '`nth` must be an integer >= 1'),
        ('faults', {'kind': 'capacity', 'every': 'x'},
         '`every` must be an integer >= 1'),
        ('faults', {'kind': 'capacity', 'times': True},
         '`times` must be an integer >= 1'),
        ('faults', {'kind': 'capacity', 'model': 5},
         '`model` must be a model name or a glob'),
        ('faults', {'kind': 'capacity', 'surface': 'fax'},
         "unknown surface 'fax'; one of ['native', 'chat', 'embeddings', 'responses', "
         "'compat_chat', 'binding', 'realtime']"),
        ('faults', {'kind': 'capacity', 'body': [1]},
         '`body` must be a JSON object (matched as a subset of the request body)'),
        ('faults', {'kind': 'capacity', 'prompt': 5},
         '`prompt` must be a regular expression string'),
        ('faults', {'kind': 'capacity', 'prompt': '('},
         '`prompt` is not a valid RE2 regular expression: missing ): ('),
        ('faults', {'kind': 'capacity', 'prompt': '(a)\\1'},
         '`prompt` is not a valid RE2 regular expression: invalid escape sequence: \\1'),
        ('faults', {'kind': 'capacity', 'account': 'xyz'},
         '`account` must be a 32-hex-digit account id'),
        ('faults', {'kind': 'latency', 'latency_ms': {'distribution': ['uniform'], 'max_ms': 3}},
         'unknown latency distribution [\'uniform\']; use "uniform" or "normal"'),
        ('faults', {'kind': 3040.0},
         '`error` must be a Cloudflare error code or kind, not 3040.0'),
        ('faults', {'kind': 'capacity', 'surface': ['x']},
         "unknown surface ['x']; one of ['native', 'chat', 'embeddings', 'responses', "
         "'compat_chat', 'binding', 'realtime']"),
        ('stubs', [1],
         'a stub is a JSON object, e.g. {"model": "@cf/meta/*", "text": "Hi"}'),
        ('stubs', {'text': 'x', 'bogus': 1},
         "unknown stub field(s) ['bogus']; known: " + STUB_FIELDS),
        ('stubs', {'results': [{'text': 'a'}], 'text': 'b'},
         'give either `results` (a sequence) or one of `text`/`result`/`error`'),
        ('stubs', {'results': []},
         '`results` must be a non-empty list of answers'),
        ('stubs', {'results': [1]},
         'an answer is {"text": …}, {"result": …} or {"error": code}'),
        ('stubs', {'model': '@cf/meta/*'},
         'an answer needs exactly one of `text`, `result` or `error`'),
        ('stubs', {'text': 5},
         '`text` must be a string'),
        ('stubs', {'text': 'a', 'finish_reason': 'x'},
         '`finish_reason` must be "stop" or "length"'),
        ('stubs', {'error': 99999},
         "no Cloudflare error with code 99999 in the emulator's catalogue"),
        ('stubs', {'error': 'nope'},
         "unknown error kind 'nope'; use a code (3040, 3007, 7009, 1000, 4006, …) or one of "
         "['aborted', 'capacity', 'daily_limit', 'server_error', 'timeout', 'upstream_unavailable']"),
        ('stubs', {'error': None},
         '`error` must be a Cloudflare error code or kind, not None'),
        ('stubs', {'text': 'a', 'times': 0},
         '`times` must be an integer >= 1'),
        ('stubs', {'text': 'a', 'name': 5},
         '`name` must be a string'),
        ('stubs', {'text': 'a', 'surface': 'fax'},
         "unknown surface 'fax'; one of ['native', 'chat', 'embeddings', 'responses', "
         "'compat_chat', 'binding', 'realtime']"),
        ('stubs', {'text': 'a', 'prompt': '('},
         '`prompt` is not a valid RE2 regular expression: missing ): ('),
        ('stubs', {'error': True},
         '`error` must be a Cloudflare error code or kind, not True'),
    ],
)
async def test_refused_specs_are_answered_in_the_control_planes_own_words(
    emulator: Emulator, path: str, spec: Any, message: str
) -> None:
    """Each refusal of a fault or stub spec (pydantic models) is one sentence naming the field, the
    same wording whichever check refused it: a validator of ours or one of pydantic's own types."""
    body = await ctl(emulator, "POST", path, spec, expect=400)
    assert body["error"] == message


async def test_bad_json_and_unknown_ids_get_4xx(emulator: Emulator) -> None:
    async with emulator.session.post(f"{emulator.base}/__emulator__/faults", data=b"{nope") as r:
        assert r.status == 400
    await ctl(emulator, "DELETE", "faults/fault-99", expect=404)
    await ctl(emulator, "GET", "requests?limit=zero", expect=400)
    await ctl(emulator, "GET", "usage?day=yesterday", expect=400)


async def test_text_stub_on_a_non_text_model_is_a_clear_400(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"model": EMBED, "text": "words"}, expect=201)
    r = await emulator.run(EMBED, {"text": "hi"})
    assert r.status == 400
    assert "use `result`" in (await r.json())["errors"][0]["message"]


@pytest.mark.parametrize(
    ("kind", "status", "code", "message"),
    [
        ("capacity", 429, 3040, "Capacity temporarily exceeded, please try again."),
        ("timeout", 408, 3007, "AiError: AiError: Request timeout ("),
        ("upstream", 502, 7009, "Upstream service unavailable"),
        ("server_error", 500, 1000, "Server Error"),
        ("daily_limit", 429, 4006, "AiError: AiError: you have used up your daily free allocation"),
        (7009, 502, 7009, "Upstream service unavailable"),
    ],
)
async def test_error_faults_answer_cloudflares_codes(
    emulator: Emulator, kind: Any, status: int, code: int, message: str
) -> None:
    fault = await ctl(emulator, "POST", "faults", {"kind": kind, "model": LLAMA}, expect=201)
    assert fault["code"] == code
    r = await emulator.run(LLAMA, {"prompt": "x"})
    body = await r.json()
    assert (r.status, body["errors"][0]["code"], body["success"]) == (status, code, False)
    assert body["errors"][0]["message"].startswith(message)
    # 7009 is the edge's answer (result null first, no cf-ai-req-id); the others come from Workers AI.
    assert ("cf-ai-req-id" in r.headers) == (code != 7009)
    # Other models are out of scope; a failed call costs nothing.
    assert (await emulator.run(EMBED, {"text": "x"})).status == 200
    [entry] = (await ctl(emulator, "GET", f"requests?model={LLAMA}"))["requests"]
    assert entry["faulted"] and entry["error_code"] == code and entry["neurons"] == 0


async def test_error_fault_on_openai_surface(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "faults", {"kind": "capacity", "surface": "chat"}, expect=201)
    r = await chat(emulator, {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 429
    assert (await r.json())["errors"][0]["code"] == 3040


async def test_nth_and_every(emulator: Emulator) -> None:
    await ctl(
        emulator,
        "POST",
        "faults",
        [
            {"kind": "server_error", "model": LLAMA, "nth": 2},
            {"kind": "capacity", "model": LLAMA, "every": 3},
        ],
        expect=201,
    )
    statuses = [(await emulator.run(LLAMA, {"prompt": "x"})).status for _ in range(7)]
    assert statuses == [200, 500, 429, 200, 200, 429, 200]


async def test_times_caps_a_fault(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "faults", {"kind": "capacity", "times": 2}, expect=201)
    statuses = [(await emulator.run(LLAMA, {"prompt": "x"})).status for _ in range(4)]
    assert statuses == [429, 429, 200, 200]
    [fault] = (await ctl(emulator, "GET", "faults"))["faults"]
    assert (fault["calls"], fault["fired"]) == (4, 2)


async def test_probabilistic_faults_are_reproducible_under_a_seed(make_emulator: ServerFactory) -> None:
    async def pattern(seed: int) -> list[int]:
        emu = await make_emulator()
        await ctl(emu, "POST", "faults", {"kind": "capacity", "probability": 0.3, "seed": seed}, expect=201)
        return [(await emu.run(LLAMA, {"prompt": f"p{i}"})).status for i in range(40)]

    first, again, other = await pattern(7), await pattern(7), await pattern(8)
    assert first == again
    assert 0 < first.count(429) < 40
    assert first != other


async def test_fixed_and_distributed_latency(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "faults", {"kind": "latency", "latency_ms": 150, "model": LLAMA}, expect=201)
    start = time.perf_counter()
    assert (await emulator.run(LLAMA, {"prompt": "x"})).status == 200
    assert time.perf_counter() - start >= 0.15
    await ctl(emulator, "DELETE", "faults")
    await ctl(
        emulator,
        "POST",
        "faults",
        {
            "kind": "latency",
            "latency_ms": {
                "distribution": "normal",
                "mean_ms": 60,
                "stddev_ms": 30,
                "min_ms": 40,
                "max_ms": 80,
            },
        },
        expect=201,
    )
    start = time.perf_counter()
    await emulator.run(LLAMA, {"prompt": "x"})
    assert 0.04 <= time.perf_counter() - start < 1.0
    [entry] = (await ctl(emulator, "GET", "requests?limit=1"))["requests"]
    assert entry["latency_ms"] >= 40
    for bad in (
        {"distribution": "uniform"},
        {"distribution": "zipf"},
        -5,
        "fast",
        {"distribution": "uniform", "min_ms": 9, "max_ms": 1},
    ):
        await ctl(emulator, "POST", "faults", {"kind": "latency", "latency_ms": bad}, expect=400)


async def test_slow_stream_delays_every_event(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "stubs", {"text": "one two three four"}, expect=201)
    await ctl(emulator, "POST", "faults", {"kind": "slow_stream", "delay_ms": 40}, expect=201)
    start = time.perf_counter()
    r = await emulator.run(LLAMA, {"prompt": "x", "stream": True})
    events = parse_sse(await r.text())
    assert events[-1] == "[DONE]"
    assert time.perf_counter() - start >= 0.04 * len(events)
    # A non-streamed call is untouched by a stream fault.
    start = time.perf_counter()
    await emulator.run(LLAMA, {"prompt": "x"})
    assert time.perf_counter() - start < 0.04 * len(events)


async def test_cut_stream_drops_the_connection_without_done(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "faults", {"kind": "cut_stream", "after_events": 3}, expect=201)
    r = await emulator.run(LLAMA, {"prompt": "tell me a story", "stream": True})
    assert r.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in r.content.iter_any():
            received += chunk
    frames = [f for f in received.decode().split("\n\n") if f]
    assert len(frames) == 3 and all(f.startswith("data: {") for f in frames)
    [entry] = (await ctl(emulator, "GET", "requests"))["requests"]
    assert entry["cut"] and entry["faulted"]
    # The mock backend's cached outcome is intact: the same request streams fully once the fault is gone.
    await ctl(emulator, "DELETE", "faults")
    events = parse_sse(
        await (await emulator.run(LLAMA, {"prompt": "tell me a story", "stream": True})).text()
    )
    assert events[-1] == "[DONE]" and len(events) > 3


async def test_cut_stream_on_openai_surface(emulator: Emulator) -> None:
    await ctl(
        emulator, "POST", "faults", {"kind": "cut_stream", "after_events": 1, "surface": "chat"}, expect=201
    )
    r = await chat(
        emulator, {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()


@pytest.mark.exclusive  # times the loop/answers: alone under xdist
async def test_reject_if_busy_fails_fast_under_a_capacity_fault(emulator: Emulator) -> None:
    await ctl(emulator, "POST", "faults", {"kind": "capacity", "latency_ms": 300}, expect=201)
    start = time.perf_counter()
    r = await emulator.run(LLAMA, {"prompt": "x", "options": {"rejectIfBusy": True}})
    assert r.status == 429 and (await r.json())["errors"][0]["code"] == 3040
    assert time.perf_counter() - start < 0.25
    start = time.perf_counter()
    r = await emulator.run(LLAMA, {"prompt": "x"})
    assert r.status == 429 and (await r.json())["errors"][0]["code"] == 3040
    assert time.perf_counter() - start >= 0.3


async def test_clock_moves_the_daily_4006_rollover(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(daily_neurons=1)
    await ctl(emu, "POST", "clock", {"now": "2026-03-01T23:58:00Z"})
    statuses = []
    for _ in range(6):
        statuses.append((await emu.run(LLAMA, {"prompt": "a long enough prompt " * 20})).status)
    assert 429 in statuses
    r = await emu.run(LLAMA, {"prompt": "x"})
    assert (await r.json())["errors"][0]["code"] == 4006
    clock = await ctl(emu, "POST", "clock", {"advance_seconds": 180})
    assert clock["now"].startswith("2026-03-02T00:01") and clock["real"] is False
    assert (await emu.run(LLAMA, {"prompt": "x"})).status == 200
    march1 = await ctl(emu, "GET", "usage?day=2026-03-01")
    assert march1["refused"] >= 1 and march1["neurons"] > 0
    march2 = await ctl(emu, "GET", "usage")
    assert march2["day"] == "2026-03-02" and march2["requests"] == 1
    assert (await ctl(emu, "POST", "clock", {"real": True}))["real"] is True
    for bad in (
        {"now": "not a date"},
        {"advance_seconds": "x"},
        {},
        {"real": False},
        {"now": "2026-01-01", "real": True},
    ):
        await ctl(emu, "POST", "clock", bad, expect=400)


async def test_request_log_filters_and_binary_summary(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "x"})
    await emulator.run(EMBED, {"text": "x"})
    await emulator.run("@cf/meta/no-such-model", {"prompt": "x"})
    await emulator.run("@cf/openai/whisper", data=b"\x00\x01not really audio")
    await chat(emulator, {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]})
    log = (await ctl(emulator, "GET", "requests"))["requests"]
    assert [e["id"] for e in log] == sorted(e["id"] for e in log) and len(log) == 5
    assert [e["model"] for e in (await ctl(emulator, "GET", "requests?model=@cf/meta/*"))["requests"]] == [
        LLAMA,
        "@cf/meta/no-such-model",
        LLAMA,
    ]
    [chat_entry] = (await ctl(emulator, "GET", "requests?surface=chat"))["requests"]
    assert chat_entry["path"].endswith("/v1/chat/completions") and chat_entry["neurons"] > 0
    errors = (await ctl(emulator, "GET", "requests?status=4xx"))["requests"]
    assert errors and all(e["status"] >= 400 and e["error_code"] for e in errors)
    assert any(e["error_code"] == 5007 for e in errors)
    whisper = next(e for e in log if e["model"] == "@cf/openai/whisper")
    assert whisper["body"]["bytes"] == len(b"\x00\x01not really audio")
    assert len((await ctl(emulator, "GET", "requests?limit=2"))["requests"]) == 2
    # The control plane's own calls are not logged.
    assert all(not e["path"].startswith("/__emulator__") for e in log)


async def test_reset_clears_ledger_log_stubs_faults_and_clock(emulator: Emulator) -> None:
    await emulator.run(LLAMA, {"prompt": "x"})
    await ctl(emulator, "POST", "stubs", {"text": "x"}, expect=201)
    await ctl(emulator, "POST", "faults", {"kind": "latency", "latency_ms": 1}, expect=201)
    await ctl(emulator, "POST", "clock", {"now": "2026-05-05T00:00:00Z"})
    await ctl(emulator, "POST", "reset")
    assert (await ctl(emulator, "GET", "requests"))["requests"] == []
    assert (await ctl(emulator, "GET", "stubs"))["stubs"] == []
    assert (await ctl(emulator, "GET", "faults"))["faults"] == []
    assert (await ctl(emulator, "GET", "clock"))["real"] is True
    assert (await ctl(emulator, "GET", "usage"))["requests"] == 0


async def test_mode_switch_and_unknown_mode(emulator: Emulator) -> None:
    assert (await ctl(emulator, "POST", "mode", {"mode": "mock"}))["mode"] == "mock"
    await ctl(emulator, "POST", "mode", {"mode": "telepathy"}, expect=400)
    await ctl(emulator, "POST", "mode", {"cassette": "x"}, expect=400)
    async with emulator.session.post(
        f"{emulator.base}/__emulator__/mode", json={"mode": "replay", "cassette": "empty"}
    ) as r:
        assert r.status in (200, 409), await r.text()  # 409 while the replay backend is unavailable
        if r.status == 200:
            assert (await ctl(emulator, "GET", "health"))["mode"] == "replay"
    await ctl(emulator, "POST", "mode", {"mode": "mock"})
    assert (await emulator.run(LLAMA, {"prompt": "x"})).status == 200


async def test_token_protects_the_control_plane(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(token="s3cret")
    assert (await ctl(emu, "GET", "health"))["status"] == "ok"
    for method, path in [
        ("POST", "reset"),
        ("GET", "requests"),
        ("GET", "usage"),
        ("GET", "stubs"),
        ("POST", "faults"),
        ("POST", "mode"),
        ("POST", "clock"),
    ]:
        await ctl(emu, method, path, {}, expect=401)
        await ctl(emu, method, path, {}, token="wrong", expect=401)
    assert (await ctl(emu, "GET", "stubs", token="s3cret"))["stubs"] == []


async def test_disabled_control_plane_is_gone(make_emulator: ServerFactory) -> None:
    emu = await make_emulator(control_plane=False)
    async with emu.session.get(f"{emu.base}/__emulator__/health") as r:
        assert r.status == 400
        assert (await r.json())["errors"][0]["code"] == 7000
    async with emu.session.post(f"{emu.base}/__emulator__/faults", json={"kind": "capacity"}) as r:
        assert r.status == 400
    assert (await emu.run(LLAMA, {"prompt": "x"})).status == 200
