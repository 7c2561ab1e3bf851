"""Field-by-field fidelity with Cloudflare's real answers (issue 20), each over real HTTP.

Every expectation cites the capture it comes from (fixtures/real/, fixtures/observations/).
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from emulator.errors import CATALOGUE, CFError, Layer
from emulator.server.render import error_body
from tests.conftest import AUTH, Emulator, ServerFactory, parse_sse, wav_bytes

LLAMA31 = "@cf/meta/llama-3.1-8b-instruct"
LLAMA3 = "@cf/meta/llama-3-8b-instruct"
GPT_OSS = "@cf/openai/gpt-oss-20b"
KIMI = "@cf/moonshotai/kimi-k2.6"
FLUX = "@cf/black-forest-labs/flux-1-schnell"
PHOENIX = "@cf/leonardo/phoenix-1.0"
WHISPER = "@cf/openai/whisper"
CF_RAY = re.compile(r"^[0-9a-f]{16}-[A-Z]{3}$")

# The requests of the captured calls (fixtures/real/*.json).
HELLO = [{"role": "system", "content": "You are concise."},
         {"role": "user", "content": "Reply exactly with: Hello!"}]
WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}]
WEATHER = {
    "model": GPT_OSS,
    "messages": [{"role": "system", "content": "Call tools exactly as requested."},
                 {"role": "user", "content": "Call get_weather with city exactly Paris."}],
    "tools": WEATHER_TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 120, "temperature": 0,
}


async def chat(emulator: Emulator, body: dict[str, Any]) -> tuple[int, Any, Any]:
    async with emulator.session.post(f"{emulator.ai}/v1/chat/completions", json=body, headers=AUTH) as resp:
        raw = await resp.read()
        return resp.status, raw, resp.headers


def sse_chunks(raw: bytes) -> list[dict[str, Any]]:
    data = parse_sse(raw.decode())
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


# 1. Identifiers and timestamps ---------------------------------------------------------------------


async def test_every_call_gets_its_own_id_and_the_time_of_the_call(emulator: Emulator) -> None:
    body = {"model": LLAMA3, "messages": [{"role": "user", "content": "hi"}]}
    before = time.time()
    answers = [orjson.loads((await chat(emulator, body))[1]) for _ in range(3)]
    after = time.time()
    ids = [a["id"] for a in answers]
    assert len(set(ids)) == 3, ids  # the 2nd and 3rd come from the answer cache: still their own ids
    assert ids == sorted(ids)
    for answer in answers:
        assert re.fullmatch(r"id-\d{13}", answer["id"])
        assert int(before) <= answer["created"] <= after
        # calls inside one millisecond take the next ones, so an id may lead the clock by a call or two
        assert int(before * 1000) <= int(answer["id"][3:]) <= after * 1000 + len(answers)
    assert len({a["choices"][0]["message"]["content"] for a in answers}) == 1  # content stays put


async def test_a_frozen_clock_pins_id_and_created(emulator: Emulator) -> None:
    async with emulator.session.post(f"{emulator.base}/__emulator__/clock",
                                     json={"now": "2026-03-01T12:00:00Z"}) as resp:
        assert resp.status == 200
    epoch = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
    body = {"model": LLAMA3, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    for payload in (body, {**body, "stream": False}):
        _, raw, _ = await chat(emulator, payload)
        objects = sse_chunks(raw) if payload["stream"] else [orjson.loads(raw)]
        assert {(o["id"], o["created"]) for o in objects} == {(f"id-{epoch * 1000}", epoch)}


async def test_gpt_oss_tool_call_ids_have_32_hex_digits_and_differ_per_call(emulator: Emulator) -> None:
    body = {**WEATHER, "stream": False}
    seen = set()
    for _ in range(2):
        _, raw, _ = await chat(emulator, body)
        [call] = orjson.loads(raw)["choices"][0]["message"]["tool_calls"]
        assert re.fullmatch(r"chatcmpl-tool-[0-9a-f]{32}", call["id"]), call["id"]
        seen.add(call["id"])
    assert len(seen) == 2


# 2. Token counts ---------------------------------------------------------------------------------


def within_3_percent(got: int, real: int) -> bool:
    return abs(got - real) <= 0.03 * real


async def test_llama31_prompt_tokens_count_the_chat_template(emulator: Emulator) -> None:
    # fixtures/real/gateway-compat-stream-llama31-8b.json: 45 prompt tokens for these two messages.
    _, raw, _ = await chat(emulator, {"model": LLAMA31, "messages": HELLO, "max_tokens": 40})
    usage = orjson.loads(raw)["usage"]
    assert within_3_percent(usage["prompt_tokens"], 45), usage


async def test_gpt_oss_prompt_tokens_count_harmony_and_the_tool(emulator: Emulator) -> None:
    # fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json: 136 prompt tokens.
    _, raw, _ = await chat(emulator, WEATHER)
    usage = sse_chunks(raw)[-1]["usage"]
    assert within_3_percent(usage["prompt_tokens"], 136), usage


async def test_kimi_prompt_tokens(make_emulator: ServerFactory) -> None:
    # fixtures/real/gateway-compat-chat-kimi-k26-nonstream.json: 13 prompt tokens.
    emulator = await make_emulator(plan="paid")
    question = [{"role": "user", "content": "Why sky is blue?"}]
    _, raw, _ = await chat(emulator, {"model": KIMI, "messages": question})
    assert within_3_percent(orjson.loads(raw)["usage"]["prompt_tokens"], 13)


async def test_bge_m3_input_tokens(emulator: Emulator) -> None:
    # fixtures/observations/binding-results-observed-2026-10.json: cost_metric_value_1 20 for these texts.
    resp = await emulator.run("@cf/baai/bge-m3", {"text": ["decision: use hairlines not boxes",
                                                            "decision: one accent colour"]})
    meta = (await resp.json())["result"]["meta"]
    assert within_3_percent(meta["cost_metric_value_1"], 20), meta


# 3. Answer lengths under max_tokens ---------------------------------------------------------------


async def test_answers_mostly_stop_under_a_roomy_cap(emulator: Emulator) -> None:
    finishes = []
    for seed in range(1, 21):
        body = {"model": LLAMA31, "messages": HELLO, "max_tokens": 40, "seed": seed}
        answer = orjson.loads((await chat(emulator, body))[1])
        finishes.append(answer["choices"][0]["finish_reason"])
        assert answer["usage"]["completion_tokens"] <= 40
    assert finishes.count("stop") >= 18, finishes


async def test_a_really_short_cap_cuts_the_answer_at_the_cap(emulator: Emulator) -> None:
    body = {"model": LLAMA31, "messages": HELLO, "max_tokens": 5}
    answer = orjson.loads((await chat(emulator, body))[1])
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 5


# 4. Whisper --------------------------------------------------------------------------------------


async def _whisper(emulator: Emulator, seconds: float) -> dict[str, Any]:
    resp = await emulator.run(WHISPER, data=wav_bytes(seconds), headers={"Content-Type": "audio/wav"})
    assert resp.status == 200, await resp.text()
    return dict((await resp.json())["result"])


async def test_whisper_answer_as_cloudflare_writes_it(emulator: Emulator) -> None:
    result = await _whisper(emulator, 6.0)
    assert list(result) == ["text", "word_count", "vtt", "words"]
    words = result["words"]
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(words))  # contiguous
    vtt = result["vtt"]
    assert not vtt.endswith("\n")
    blocks = vtt.split("\n\n")
    assert blocks[0] == "WEBVTT"
    for i, block in enumerate(blocks[1:]):
        times, text = block.split("\n")
        assert re.fullmatch(r"\d\d\.\d{3} --> \d\d\.\d{3}", times), times  # bare seconds under a minute
        cue = words[i * 5:(i + 1) * 5]
        assert text == " ".join(w["word"] for w in cue)
        assert times == f"{cue[0]['start']:06.3f} --> {cue[-1]['end']:06.3f}"


async def test_whisper_cue_times_past_a_minute(emulator: Emulator) -> None:
    vtt = (await _whisper(emulator, 65.0))["vtt"]
    stamps = re.findall(r"^(\S+) --> (\S+)$", vtt, re.M)
    assert stamps[0][0] == "00.280"
    assert re.fullmatch(r"01:0\d\.\d{3}", stamps[-1][1]), stamps[-1]


async def test_whisper_full_cue_times_without_the_quirk(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(quirks={"whisper-vtt-short-timestamps": False})
    vtt = (await _whisper(emulator, 3.0))["vtt"]
    assert vtt.split("\n")[2].startswith("00:00:00.280 --> 00:00:")


# 5. gpt-oss streams ------------------------------------------------------------------------------


async def test_gpt_oss_stream_framing_as_captured(emulator: Emulator) -> None:
    _, raw, _ = await chat(emulator, WEATHER)
    chunks = sse_chunks(raw)
    first = chunks[0]["choices"][0]
    assert first == {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                     "finish_reason": None}
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": ""}
    middle = [c["choices"][0] for c in chunks[1:-2]]
    assert all(list(c)[-1] == "token_ids" and c["token_ids"] is None and c["logprobs"] is None
               for c in middle)
    assert middle[-1]["delta"] == {} and middle[-1]["stop_reason"] == 200012
    usage, again = chunks[-2]["usage"], chunks[-1]["usage"]
    assert list(usage) == ["prompt_tokens", "total_tokens", "completion_tokens"]
    assert again == {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                     "total_tokens": usage["total_tokens"], "prompt_tokens_details": {"cached_tokens": 0}}


async def test_llama_second_usage_chunk_stays_zero(emulator: Emulator) -> None:
    body = {"model": LLAMA31, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    chunks = sse_chunks((await chat(emulator, body))[1])
    assert chunks[-1]["usage"]["total_tokens"] == 0 and "role" not in chunks[0]["choices"][0]["delta"]


# 6. Error bodies ---------------------------------------------------------------------------------


async def test_flux_validation_error_is_errors_and_success_only(emulator: Emulator) -> None:
    # fixtures/real/err-5006-flux-width-height.json
    resp = await emulator.run(FLUX, {"prompt": "a lighthouse", "width": 512, "height": 512})
    assert resp.status == 400
    body = orjson.loads(await resp.read())
    assert list(body) == ["errors", "success"]
    assert list(body["errors"][0]) == ["message", "code"]


async def test_upstream_unavailable_is_an_edge_error(emulator: Emulator) -> None:
    # fixtures/observations/err-rest-envelopes-notebook-2024.json: 7009 with result null first.
    async with emulator.session.post(f"{emulator.base}/__emulator__/faults",
                                     json={"kind": 7009, "model": LLAMA3}) as resp:
        assert resp.status == 201
    resp = await emulator.run(LLAMA3, {"prompt": "hi"})
    body = orjson.loads(await resp.read())
    assert body == {"result": None, "success": False,
                    "errors": [{"code": 7009, "message": "Upstream service unavailable"}], "messages": []}
    assert list(body["errors"][0]) == ["code", "message"]


@pytest.mark.parametrize("kind", sorted(CATALOGUE))
def test_every_error_kind_has_its_layers_shape(kind: str) -> None:
    spec = CATALOGUE[kind]
    error = CFError(kind, **dict.fromkeys(re.findall(r"{(\w+)}", spec.template), "x"))
    body = error_body(error)
    if spec.layer is Layer.EDGE:
        assert list(body) == ["result", "success", "errors", "messages"] and body["result"] is None
        assert list(body["errors"][0]) == ["code", "message"]
    elif spec.layer is Layer.MODEL:
        assert list(body) == ["errors", "success", "result", "messages"] and body["result"] == {}
        assert list(body["errors"][0]) == ["message", "code"]
    else:
        assert list(body)[:4] == ["success", "result", "messages", "error"]


# 7. Embeddings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "keys"), [
    ("@cf/baai/bge-m3", ["data", "shape", "pooling", "response", "meta"]),
    ("@cf/baai/bge-base-en-v1.5", ["shape", "data", "pooling", "usage"]),
    ("@cf/google/embeddinggemma-300m", ["data", "shape"]),
])
async def test_embedding_answer_shapes(emulator: Emulator, model: str, keys: list[str]) -> None:
    # fixtures/observations/binding-results-observed-2026-10.json
    result = (await (await emulator.run(model, {"text": ["a", "b"]})).json())["result"]
    assert list(result) == keys
    if model.endswith("bge-m3"):
        assert result["pooling"] == "cls" and result["response"] is None
    if "pooling" in keys and not model.endswith("bge-m3"):
        assert result["pooling"] == "mean"


# 8. Billing as measured --------------------------------------------------------------------------


async def test_flux_schnell_is_billed_as_measured(make_emulator: ServerFactory) -> None:
    # fixtures/observations/headers-and-billing-observed.json: 172.80 for 1024x1024, 4 steps.
    body = {"prompt": "a lighthouse", "steps": 4}
    measured = await make_emulator()
    resp = await measured.run(FLUX, body)
    assert resp.status == 200 and resp.headers["cf-ai-neurons"] == "172.80"
    page = await make_emulator(quirks={"billing-as-measured": False})
    assert (await page.run(FLUX, body)).headers["cf-ai-neurons"] == "57.60"


async def test_phoenix_answers_carry_no_neurons_header(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator()
    resp = await emulator.run(PHOENIX, {"prompt": "a lighthouse", "width": 512, "height": 512})
    assert resp.status == 200 and "cf-ai-neurons" not in resp.headers
    assert emulator.state.ledger.usage().neurons > 0  # still charged
    plain = await make_emulator(quirks={"no-neurons-header": False})
    resp = await plain.run(PHOENIX, {"prompt": "a lighthouse", "width": 512, "height": 512})
    assert "cf-ai-neurons" in resp.headers


# 9. Headers --------------------------------------------------------------------------------------


async def test_every_answer_names_cloudflares_edge(emulator: Emulator) -> None:
    answers = [
        await emulator.run(LLAMA3, {"prompt": "hi"}),
        await emulator.run(LLAMA3, {"prompt": "hi", "stream": True}),
        await emulator.run(LLAMA3, {"nope": 1}),
        await emulator.session.post(emulator.run_url(LLAMA3), json={"prompt": "hi"},
                                    headers={"Authorization": "Bearer wrong"}),
        await emulator.session.get(f"{emulator.base}/client/v4/nowhere", headers=AUTH),
    ]
    rays = set()
    for resp in answers:
        await resp.read()
        assert resp.headers["Server"] == "cloudflare"
        assert CF_RAY.fullmatch(resp.headers["cf-ray"]), resp.headers.get("cf-ray")
        rays.add(resp.headers["cf-ray"])
    assert len(rays) == len(answers)


def test_stamps_leave_generated_text_alone() -> None:
    from emulator.accounting.ledger import FixedClock
    from emulator.server.stamps import Stamper

    text = '{"created":1234567890,"id":"id-1234567890123","tool":"chatcmpl-tool-0123456789abcdef"}'
    body = orjson.dumps({"id": "id-1111111111111", "created": 1111111111, "choices": [
        {"message": {"content": text, "tool_calls": [{"id": "chatcmpl-tool-" + "a" * 32}]}}]})
    stamped = orjson.loads(Stamper(FixedClock(datetime(2026, 3, 1, tzinfo=UTC))).stamp(body))
    epoch = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert (stamped["id"], stamped["created"]) == (f"id-{epoch * 1000}", epoch)
    assert stamped["choices"][0]["message"]["content"] == text
    new_tool = stamped["choices"][0]["message"]["tool_calls"][0]["id"]
    assert re.fullmatch(r"chatcmpl-tool-[0-9a-f]{32}", new_tool) and new_tool != "chatcmpl-tool-" + "a" * 32
