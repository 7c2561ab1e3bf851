"""The OpenAI-compatible surface over real HTTP: chat completions, embeddings, responses, errors, SDKs."""

from __future__ import annotations

import asyncio
import base64
import struct
import subprocess
from typing import Any

import jsonschema
import orjson
import pytest

from emulator.catalog import guide
from tests.conftest import ACCOUNT, AUTH, TOKEN, Emulator, ServerFactory, parse_sse

GUIDE_CHAT_MODELS = list(guide.CHAT_MODELS)
LLAMA3 = "@cf/meta/llama-3-8b-instruct"
GPT_OSS = "@cf/openai/gpt-oss-20b"
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city.", "parameters": WEATHER_PARAMS},
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
        },
    },
}


async def post(emulator: Emulator, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    async with emulator.session.post(f"{emulator.ai}/{path}", json=body, headers=AUTH) as resp:
        raw = await resp.read()
        text = raw.decode()
        payload = text if resp.content_type == "text/event-stream" else orjson.loads(raw)
        return resp.status, payload, dict(resp.headers)


async def chat(emulator: Emulator, **body: Any) -> tuple[int, Any, dict[str, str]]:
    return await post(emulator, "v1/chat/completions", body)


def chunks_of(sse: str) -> list[dict[str, Any]]:
    data = parse_sse(sse)
    assert data[-1] == "[DONE]"
    return [orjson.loads(d) for d in data[:-1]]


def streamed_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


# --- chat completions, non-stream -------------------------------------------------------------------------


async def test_chat_completion_shape_matches_the_real_capture(emulator: Emulator) -> None:
    status, body, headers = await chat(
        emulator, model=LLAMA3, messages=[{"role": "user", "content": "Who are you?"}]
    )
    assert status == 200
    assert list(body) == ["id", "object", "created", "model", "choices", "usage"]
    assert body["object"] == "chat.completion" and body["model"] == LLAMA3
    assert body["id"] == f"id-{body['id'][3:]}" and body["id"][3:].isdigit()
    assert int(body["id"][3:]) // 1000 == body["created"]
    choice = body["choices"][0]
    assert list(choice) == ["index", "message", "logprobs", "finish_reason"]
    assert choice["logprobs"] is None and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert headers["cf-ai-req-id"] and "cf-ai-neurons" in headers


async def test_same_text_as_run_and_deterministic(emulator: Emulator) -> None:
    knobs = {"max_tokens": 40, "temperature": 0.2, "seed": 7}
    _, first, _ = await chat(emulator, model=LLAMA3, messages=HELLO, **knobs)
    _, again, _ = await chat(emulator, model=LLAMA3, messages=HELLO, **knobs)
    # Same content; the id is the call's own (server/stamps.py).
    assert first["id"] != again["id"]
    assert {**first, "id": None, "created": None} == {**again, "id": None, "created": None}
    resp = await emulator.run(LLAMA3, {"messages": HELLO, **knobs})
    native = (await resp.json())["result"]
    assert first["choices"][0]["message"]["content"] == native["response"]
    assert first["usage"] == native["usage"]
    # max_completion_tokens is max_tokens for models whose schema only knows max_tokens.
    _, renamed, _ = await chat(
        emulator, model=LLAMA3, messages=HELLO, max_completion_tokens=40, temperature=0.2, seed=7
    )
    assert renamed["choices"][0]["message"]["content"] == native["response"]


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
async def test_finish_reason_length_when_cut(emulator: Emulator, key: str) -> None:
    _, body, _ = await chat(emulator, model=LLAMA3, messages=HELLO, **{key: 3})
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


async def test_knobs_change_the_answer_and_stop_cuts_it(emulator: Emulator) -> None:
    _, base, _ = await chat(emulator, model=LLAMA3, messages=HELLO)
    text = base["choices"][0]["message"]["content"]
    _, seeded, _ = await chat(emulator, model=LLAMA3, messages=HELLO, seed=42)
    _, warm, _ = await chat(emulator, model=LLAMA3, messages=HELLO, temperature=1.5)
    assert seeded["choices"][0]["message"]["content"] != text != warm["choices"][0]["message"]["content"]
    # `stop` is an input like any other (it changes the seed); the answer ends before its first hit.
    _, stopped, _ = await chat(emulator, model=LLAMA3, messages=HELLO, stop=["e", "."])
    content = stopped["choices"][0]["message"]["content"]
    assert "e" not in content and "." not in content
    assert stopped["choices"][0]["finish_reason"] == "stop"


async def test_n_distinct_choices_billed_for_every_choice(emulator: Emulator) -> None:
    glm = "@cf/zai-org/glm-4.7-flash"
    _, one, one_headers = await chat(emulator, model=glm, messages=HELLO)
    _, body, headers = await chat(emulator, model=glm, messages=HELLO, n=3)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in body["choices"]]
    assert len(set(texts)) == 3 and all(texts)
    usage = body["usage"]
    assert usage["prompt_tokens"] == one["usage"]["prompt_tokens"]  # the prompt is read once
    assert usage["completion_tokens"] > one["usage"]["completion_tokens"]
    assert float(headers["cf-ai-neurons"]) > float(one_headers["cf-ai-neurons"])
    _, again, _ = await chat(emulator, model=glm, messages=HELLO, n=3)
    assert again["choices"] == body["choices"]  # deterministic (ids and times are stamped per call)
    # The native run/ of a model whose schema has `n` answers the same choices.
    resp = await emulator.run(glm, {"model": glm, "messages": HELLO, "n": 3})  # its schema lists `model`
    native = (await resp.json())["result"]
    assert [c["message"]["content"] for c in native["choices"]] == texts
    # Models whose schema has no `n` never see it: one choice, billed once.
    _, older, _ = await chat(emulator, model=LLAMA3, messages=HELLO, n=2)
    assert len(older["choices"]) == 1


async def test_reasoning_model_has_reasoning_content(emulator: Emulator) -> None:
    _, body, _ = await chat(emulator, model=GPT_OSS, messages=HELLO)
    message = body["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"]


async def test_array_content_rejected_by_old_schema_accepted_by_new(emulator: Emulator) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    status, body, headers = await chat(emulator, model=LLAMA3, messages=parts)
    assert status == 400
    assert body == {
        "errors": [
            {
                "message": "AiError: Bad input: Error: oneOf at '/' not met, 0 matches: required "
                "properties at '/' are 'prompt', Type mismatch of '/messages/0/content', "
                "'array' not in 'string'",
                "code": 5006,
            }
        ],
        "success": False,
        "result": {},
        "messages": [],
    }
    assert headers["cf-ai-req-id"]
    status, ok, _ = await chat(emulator, model="@cf/meta/llama-4-scout-17b-16e-instruct", messages=parts)
    assert status == 200 and ok["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", GUIDE_CHAT_MODELS)
async def test_every_guide_chat_model(emulator: Emulator, model: str) -> None:
    assert len(GUIDE_CHAT_MODELS) == 36
    status, body, _ = await chat(
        emulator,
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    )
    assert status == 200, body
    assert body["model"] == model and body["choices"][0]["message"]["content"]


async def test_guide_curl_example_verbatim(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator()
    host = emulator.base.removeprefix("http://")
    command = (
        f"curl http://{host}/client/v4/accounts/{ACCOUNT}//ai/v1/chat/completions "
        f'-H "Authorization: Bearer {TOKEN}" '
        '-d \'{"model": "@cf/meta/llama-3-8b-instruct", "messages": '
        '[{"role": "user", "content": "Hello"}]}\''
    )
    out = await asyncio.to_thread(
        subprocess.run, ["/bin/sh", "-c", command + " -s"], capture_output=True, text=True, check=True
    )
    body = orjson.loads(out.stdout)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    strict = await make_emulator(quirks={"double-slash-path": False})
    async with strict.session.post(
        f"{strict.base}/client/v4/accounts/{ACCOUNT}//ai/v1/chat/completions",
        json={"model": LLAMA3, "messages": HELLO},
        headers=AUTH,
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"][0]["code"] == 7000


# --- tools and JSON mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool",
    [
        WEATHER_TOOL,
        {"name": "get_weather", "description": "Weather for a city.", "parameters": WEATHER_PARAMS},
    ],
    ids=["openai", "native"],
)
async def test_tool_calls_arguments_valid_against_parameters(
    emulator: Emulator, tool: dict[str, Any]
) -> None:
    status, body, _ = await chat(
        emulator, model="@cf/meta/llama-3.1-8b-instruct", messages=HELLO, tools=[tool]
    )
    assert status == 200, body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("chatcmpl-tool-")
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(orjson.loads(call["function"]["arguments"]), WEATHER_PARAMS)


async def test_tool_choice_is_honoured(emulator: Emulator) -> None:
    model, tools = "@cf/meta/llama-3.1-8b-instruct", [WEATHER_TOOL, TIME_TOOL]
    _, none, _ = await chat(emulator, model=model, messages=HELLO, tools=tools, tool_choice="none")
    assert (
        "tool_calls" not in none["choices"][0]["message"]
        and none["choices"][0]["finish_reason"] != "tool_calls"
    )
    for name in ("get_weather", "get_time"):
        _, named, _ = await chat(
            emulator,
            model=model,
            messages=HELLO,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": name}},
        )
        assert named["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == name
    after_tool = [
        *HELLO,
        {"role": "assistant", "content": "", "tool_calls": []},
        {"role": "tool", "content": "sunny", "tool_call_id": "abc123def"},
    ]
    _, auto, _ = await chat(emulator, model=model, messages=after_tool, tools=tools, tool_choice="auto")
    assert auto["choices"][0]["finish_reason"] in ("stop", "length")
    _, required, _ = await chat(
        emulator, model=model, messages=after_tool, tools=tools, tool_choice="required"
    )
    assert required["choices"][0]["finish_reason"] == "tool_calls"


async def test_json_modes(emulator: Emulator) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
    _, body, _ = await chat(
        emulator,
        model="@cf/meta/llama-3.1-8b-instruct",
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    jsonschema.validate(orjson.loads(body["choices"][0]["message"]["content"]), schema)
    _, obj, _ = await chat(
        emulator,
        model="@cf/meta/llama-3.1-8b-instruct",
        messages=HELLO,
        response_format={"type": "json_object"},
    )
    assert isinstance(orjson.loads(obj["choices"][0]["message"]["content"]), dict)


# --- streaming ----------------------------------------------------------------------------------------------


async def test_stream_framing_matches_the_recording(emulator: Emulator) -> None:
    status, sse, headers = await chat(
        emulator,
        model=LLAMA3,
        messages=HELLO,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    chunks = chunks_of(sse)
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("id-")
    content, finish, zero = chunks[:-2], chunks[-2], chunks[-1]
    assert all(list(c) == ["id", "created", "model", "object", "choices"] for c in content)
    assert "role" not in content[0]["choices"][0]["delta"]
    assert list(finish) == ["id", "object", "created", "model", "choices", "usage"]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "length"}]
    assert zero["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    _, whole, _ = await chat(emulator, model=LLAMA3, messages=HELLO, max_tokens=12)
    assert streamed_text(chunks) == whole["choices"][0]["message"]["content"]
    assert finish["usage"] == whole["usage"]


async def test_stream_without_include_usage_has_no_usage(emulator: Emulator) -> None:
    _, sse, _ = await chat(emulator, model=LLAMA3, messages=HELLO, stream=True)
    chunks = chunks_of(sse)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


async def test_stream_quirks_off(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(
        quirks={"no-role-in-first-delta": False, "stream-usage-on-finish-chunk": False}
    )
    _, sse, _ = await chat(
        emulator, model=LLAMA3, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = chunks_of(sse)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] and "usage" not in chunks[-2]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


async def test_streamed_tool_call_fragments(emulator: Emulator) -> None:
    _, sse, _ = await chat(
        emulator,
        model=GPT_OSS,
        messages=HELLO,
        tools=[WEATHER_TOOL],
        stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream_options={"include_usage": True},
    )
    chunks = chunks_of(sse)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    first, rest = calls[0], calls[1:]
    assert first["id"].startswith("chatcmpl-tool-") and first["type"] == "function" and first["index"] == 0
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert len(rest) > 1 and all(set(c) == {"index", "function"} for c in rest)
    arguments = "".join(c["function"]["arguments"] for c in rest)
    jsonschema.validate(orjson.loads(arguments), WEATHER_PARAMS)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert any("reasoning_content" in c["choices"][0]["delta"] for c in chunks if c["choices"])


# --- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "@cf/baai/bge-small-en-v1.5", "messages": HELLO}, 400, 5007),
        ({"model": "@cf/nope/not-a-model", "messages": HELLO}, 400, 5007),
        ({"messages": HELLO}, 400, 5006),
        ({"model": 3, "messages": HELLO}, 400, 5006),
        ({"model": LLAMA3}, 400, 5006),
        ({"model": LLAMA3, "messages": "hi"}, 400, 5006),
        ([1, 2], 400, 5006),
    ],
)
async def test_chat_errors_are_v4_shaped(emulator: Emulator, body: Any, status: int, code: int) -> None:
    got, payload, headers = await post(emulator, "v1/chat/completions", body)
    assert (got, payload["errors"][0]["code"]) == (status, code)
    assert payload["success"] is False and "error" not in payload
    assert headers["cf-ai-req-id"]


async def test_unknown_model_wording_and_bad_json(emulator: Emulator) -> None:
    _, payload, _ = await chat(emulator, model="@cf/nope/not-a-model", messages=HELLO)
    assert payload["errors"][0]["message"] == "No such model @cf/nope/not-a-model or task"
    async with emulator.session.post(
        f"{emulator.ai}/v1/chat/completions",
        data=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == 5006


async def test_openai_error_object_when_quirk_off(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(quirks={"v1-errors-not-openai-shaped": False})
    status, payload, _ = await chat(emulator, model="@cf/nope/not-a-model", messages=HELLO)
    assert status == 400 and payload["errors"][0]["code"] == 5007
    assert payload["error"]["message"] == "No such model @cf/nope/not-a-model or task"
    assert payload["error"]["type"] == "invalid_request_error"


# --- embeddings ---------------------------------------------------------------------------------------------


async def test_embeddings_list_shape_and_same_vectors_as_run(emulator: Emulator) -> None:
    model = "@cf/baai/bge-small-en-v1.5"
    status, body, _ = await post(
        emulator, "v1/embeddings", {"model": model, "input": ["hello world", "cats"]}
    )
    assert status == 200
    assert (
        list(body) == ["object", "data", "model", "usage"]
        and body["object"] == "list"
        and body["model"] == model
    )
    assert [(d["object"], d["index"], len(d["embedding"])) for d in body["data"]] == [
        ("embedding", 0, 384),
        ("embedding", 1, 384),
    ]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    native = (await (await emulator.run(model, {"text": ["hello world", "cats"]})).json())["result"]
    assert [d["embedding"] for d in body["data"]] == native["data"]
    _, single, _ = await post(emulator, "v1/embeddings", {"model": model, "input": "cats"})
    assert single["data"][0]["embedding"] == native["data"][1]


async def test_embeddings_base64_ignored_by_default_and_honoured_when_quirk_off(
    make_emulator: ServerFactory,
) -> None:
    body = {"model": "@cf/baai/bge-base-en-v1.5", "input": "hello", "encoding_format": "base64"}
    faithful = await make_emulator()
    _, floats, _ = await post(faithful, "v1/embeddings", body)
    vector = floats["data"][0]["embedding"]
    assert isinstance(vector, list) and len(vector) == 768
    openai_like = await make_emulator(quirks={"embeddings-ignore-base64": False})
    _, encoded, _ = await post(openai_like, "v1/embeddings", body)
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector


async def test_embeddings_errors(emulator: Emulator) -> None:
    status, payload, _ = await post(emulator, "v1/embeddings", {"model": LLAMA3, "input": "x"})
    assert (status, payload["errors"][0]["code"]) == (400, 5007)
    status, payload, _ = await post(emulator, "v1/embeddings", {"model": "@cf/baai/bge-small-en-v1.5"})
    assert (status, payload["errors"][0]["code"]) == (400, 5006)


# --- responses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["@cf/openai/gpt-oss-120b", GPT_OSS])
async def test_responses_object(emulator: Emulator, model: str) -> None:
    status, body, _ = await post(
        emulator, "v1/responses", {"model": model, "input": "What is 2+2?", "reasoning": {"effort": "low"}}
    )
    assert status == 200, body
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == model
    kinds = [item["type"] for item in body["output"]]
    assert kinds == ["reasoning", "message"]
    message = body["output"][1]
    assert message["role"] == "assistant" and message["content"][0]["type"] == "output_text"
    assert message["content"][0]["text"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert body["reasoning"]["effort"] == "low"
    items = [{"role": "user", "content": "What is 2+2?"}]
    status, again, _ = await post(emulator, "v1/responses", {"model": model, "input": items})
    assert status == 200 and again["reasoning"]["effort"] == "medium"


async def test_responses_errors(emulator: Emulator) -> None:
    status, payload, _ = await post(emulator, "v1/responses", {"model": LLAMA3, "input": "hi"})
    assert (status, payload["errors"][0]["code"]) == (400, 5007)
    status, payload, _ = await post(
        emulator, "v1/responses", {"model": GPT_OSS, "input": "hi", "stream": True}
    )
    assert (status, payload["errors"][0]["code"]) == (400, 5006)
    status, payload, _ = await post(emulator, "v1/responses", {"model": GPT_OSS})
    assert (status, payload["errors"][0]["code"]) == (400, 5006)
    assert "required properties at '/' are 'input'" in payload["errors"][0]["message"]


# --- the official openai SDK, changed only by base_url and api_key -----------------------------------------


def _sync_sdk_session(base_url: str) -> dict[str, Any]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=TOKEN, max_retries=0)
    done = client.chat.completions.create(model=LLAMA3, messages=HELLO, max_tokens=30)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model=LLAMA3,
        messages=HELLO,
        max_tokens=30,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    tools = client.chat.completions.create(
        model=GPT_OSS,
        messages=HELLO,
        tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
        tool_choice="required",
    )
    embedding = client.embeddings.create(model="@cf/baai/bge-small-en-v1.5", input=["hello", "world"])
    response = client.responses.create(model=GPT_OSS, input="Say hi")
    try:
        client.chat.completions.create(model="@cf/nope/none", messages=HELLO)  # type: ignore[arg-type]
        error = None
    except Exception as exc:  # the SDK's BadRequestError
        error = exc
    return {
        "done": done,
        "streamed": streamed,
        "tools": tools,
        "embedding": embedding,
        "response": response,
        "error": error,
    }


@pytest.mark.parametrize("quirk", [True, False], ids=["quirks-on", "quirks-off"])
async def test_openai_sdk_sync(make_emulator: ServerFactory, quirk: bool) -> None:
    import openai

    emulator = await make_emulator(
        quirks={
            "embeddings-ignore-base64": quirk,
            "v1-errors-not-openai-shaped": quirk,
            "no-role-in-first-delta": quirk,
        }
    )
    got = await asyncio.to_thread(_sync_sdk_session, f"{emulator.ai}/v1")
    text = got["done"].choices[0].message.content
    assert text and got["streamed"] == text
    call = got["tools"].choices[0].message.tool_calls[0]
    jsonschema.validate(orjson.loads(call.function.arguments), WEATHER_PARAMS)
    native = await (await emulator.run("@cf/baai/bge-small-en-v1.5", {"text": ["hello", "world"]})).json()
    assert [d.embedding for d in got["embedding"].data] == native["result"]["data"]
    assert got["response"].output_text
    assert isinstance(got["error"], openai.BadRequestError) and got["error"].status_code == 400


async def test_openai_sdk_async(emulator: Emulator) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{emulator.ai}/v1", api_key=TOKEN, max_retries=0)
    try:
        done = await client.chat.completions.create(model=LLAMA3, messages=HELLO)  # type: ignore[arg-type]
        stream = await client.chat.completions.create(model=LLAMA3, messages=HELLO, stream=True)  # type: ignore[arg-type]
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert streamed == done.choices[0].message.content
        json_mode = await client.chat.completions.create(
            model=LLAMA3,
            messages=HELLO,  # type: ignore[arg-type]
            response_format={"type": "json_object"},
        )
        assert isinstance(orjson.loads(json_mode.choices[0].message.content or ""), dict)
        embedding = await client.embeddings.create(model="@cf/baai/bge-base-en-v1.5", input="hello")
        assert len(embedding.data[0].embedding) == 768
    finally:
        await client.close()
