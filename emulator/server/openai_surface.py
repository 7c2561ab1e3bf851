"""The OpenAI-compatible surface: `/ai/v1/{chat/completions,embeddings,responses}` and gateway `/compat`.

Each handler translates the OpenAI body into the model's *native* inputs, validates them against the
native schema (Cloudflare does the same: /v1 errors carry native-schema wording such as
`required properties at '/' are 'prompt'`), runs the one pipeline, and renders the OpenAI shape from
the backend's `Generation`. The same messages and knobs therefore give the same text on `run/`.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from emulator.backends.mock import seed_of
from emulator.call import Call, Outcome, StreamEvent, Surface
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.limits import off_loop, read_body
from emulator.quirks import enabled
from emulator.server.finetunes import resolve_lora
from emulator.server.inputs import parse_json_body, validate
from emulator.server.native import answer_headers, lookup_model, render_native
from emulator.server.paths import Kind, Route
from emulator.server.pipeline import answered, execute
from emulator.server.render import json_response, stream_events
from emulator.server.stamps import Stamper
from emulator.server.state import ServerState
from emulator.tasks import openai_shapes
from emulator.tasks.text_generation import Generation

TEXT_GENERATION = "Text Generation"
TEXT_EMBEDDINGS = "Text Embeddings"
RESPONSES_MODELS = frozenset({"@cf/openai/gpt-oss-120b", "@cf/openai/gpt-oss-20b"})
GATEWAY_PROVIDER = "workers-ai"
# OpenAI request keys that are not model inputs: dropped unless the model's own schema lists them
# (frontier models embed the whole OpenAI schema), so `run/` with the same knobs gets the same seed.
OPENAI_ONLY_KEYS = frozenset({
    "model", "n", "user", "store", "metadata", "parallel_tool_calls", "logprobs", "top_logprobs",
    "service_tier", "logit_bias", "modalities", "audio", "prediction", "web_search_options", "stream_options",
    "reasoning_effort", "max_completion_tokens",
})


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(pointer: str, value: Any, expected: str) -> str:
    return f"Error: Type mismatch of '{pointer}', '{_json_type(value)}' not in '{expected}'"


async def read_openai_body(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    raw = await read_body(request)
    body = await parse_json_body(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise CFError(ErrorKind.BAD_INPUT, detail=_mismatch("/", body, "object"))
    return raw, body


def model_name(body: dict[str, Any], route: Route) -> str:
    """The Workers AI model id; gateway `/compat` names carry a `workers-ai/` provider prefix."""
    name = body.get("model")
    if name is None:
        raise CFError(ErrorKind.MISSING_MODEL)
    if not isinstance(name, str):
        raise CFError(ErrorKind.BAD_INPUT, detail=_mismatch("/model", name, "string"))
    if route.kind in (Kind.COMPAT_CHAT, Kind.COMPAT_EMBEDDINGS):
        provider, _, rest = name.partition("/")
        if provider != GATEWAY_PROVIDER or not rest:
            raise CFError(ErrorKind.INVALID_PROVIDER)
        return rest
    return name


def model_for(state: ServerState, name: str, task: str) -> Model:
    model = lookup_model(state, name)
    if model.task.name != task:
        # The wrong task is answered like an unknown one: "No such model X or task".
        raise CFError(ErrorKind.NO_SUCH_MODEL, model=name)
    return model


def chat_inputs(body: dict[str, Any], model: Model) -> dict[str, Any]:
    """OpenAI chat body → native inputs: OpenAI-only keys dropped, `max_completion_tokens` → `max_tokens`."""
    known = model.input_properties
    inputs = {k: v for k, v in body.items() if k in known or k not in OPENAI_ONLY_KEYS}
    if "max_completion_tokens" in body and "max_completion_tokens" not in known and "max_tokens" not in body:
        inputs["max_tokens"] = body["max_completion_tokens"]
    return inputs


def _relaxed_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    fn = tool.get("function")
    if isinstance(fn, dict):
        return {**tool, "function": _relaxed_function(fn)}
    return _relaxed_function(tool)


def _relaxed_function(fn: dict[str, Any]) -> dict[str, Any]:
    params = fn.get("parameters")
    params = dict(params) if isinstance(params, dict) else {"type": "object", "properties": {}}
    props = params.get("properties")
    if isinstance(props, dict):
        params["properties"] = {k: ({"description": "", **v} if isinstance(v, dict) else v)
                                for k, v in props.items()}
    return {"description": "", **fn, "parameters": params}


def validation_view(inputs: dict[str, Any]) -> dict[str, Any]:
    """What the native schema checks on /v1: tools may omit descriptions and parameters.

    Native schemas require `description` on every function and parameter, but the real /v1 endpoint
    accepted a gpt-oss-20b tool whose parameter had none
    (fixtures/observations/v1-chat-stream-gpt-oss-20b-toolcall.cassette.json), and OpenAI SDK users
    rarely write them. Only the checked copy is filled in; the call keeps the inputs as sent, so the
    seed matches `run/`.
    """
    tools = inputs.get("tools")
    if not isinstance(tools, list):
        return inputs
    return {**inputs, "tools": [_relaxed_tool(t) for t in tools]}


def make_call(request: web.Request, route: Route, model: Model, inputs: dict[str, Any], surface: Surface,
              request_id: str, raw: bytes, body: dict[str, Any], stream: bool = False) -> Call:
    """The call of an OpenAI-shaped request: `raw` is its body, `body` that body parsed."""
    return Call(model=model, inputs=inputs, surface=surface, account_id=route.account_id,
                request_id=request_id, path=request.path, query=dict(request.query), stream=stream,
                gateway_id=route.gateway_id, raw_body=raw, raw_content_type=request.content_type or "",
                raw_json=body if raw.strip() else None, headers=dict(request.headers))


def generation_of(outcome: Outcome) -> Generation:
    """The backend's Generation; a bare native result (e.g. replayed) is turned into one."""
    gen = outcome.extras.get("generation")
    if isinstance(gen, Generation):
        return gen
    result = outcome.result if isinstance(outcome.result, dict) else {}
    usage = result.get("usage") or {}
    return Generation(str(result.get("response") or ""), "stop", int(usage.get("prompt_tokens", 0)),
                      int(usage.get("completion_tokens", 0)), list(result.get("tool_calls") or []))


async def handle_chat(request: web.Request, route: Route, state: ServerState, request_id: str
                      ) -> web.StreamResponse:
    raw, body = await read_openai_body(request)
    name = model_name(body, route)
    model = model_for(state, name, TEXT_GENERATION)
    inputs = chat_inputs(body, model)
    await off_loop(len(raw), validate, model, validation_view(inputs), state.quirks)
    resolve_lora(state, route, model, inputs, request_id)
    stream = body.get("stream") is True
    surface = Surface.COMPAT_CHAT if route.kind is Kind.COMPAT_CHAT else Surface.CHAT
    call = make_call(request, route, model, inputs, surface, request_id, raw, body, stream)
    executed = await execute(state, call)
    if executed.outcome.rendered:
        return await render_native(request, call, executed)
    gen = generation_of(executed.outcome)
    seed = await seed_of(call, state.settings.seed)
    headers = answer_headers(call, executed, state.quirks)
    if stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = openai_shapes.chat_stream_chunks(
            gen, model.name, seed, include_usage=include_usage,
            role_in_first_delta=not enabled(state.quirks, "no-role-in-first-delta"),
            cloudflare_usage_chunks=enabled(state.quirks, "stream-usage-on-finish-chunk"))
        stamper = Stamper(state.clock)
        events = [StreamEvent(stamper.stamp_text(orjson.dumps(chunk).decode())) for chunk in chunks]
        events.append(StreamEvent("[DONE]"))
        return answered(await stream_events(request, executed.events(events), headers=headers,
                                            report=executed.report), executed)
    completion = openai_shapes.chat_completion(gen, model.name, seed, executed.outcome.extras.get("choices"))
    return answered(json_response(completion, headers=headers, stamper=Stamper(state.clock)), executed)


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 embedding: the little-endian float32 bytes of the vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


async def handle_embeddings(request: web.Request, route: Route, state: ServerState, request_id: str
                            ) -> web.StreamResponse:
    raw, body = await read_openai_body(request)
    name = model_name(body, route)
    model = model_for(state, name, TEXT_EMBEDDINGS)
    # `dimensions`, `user` and `encoding_format` are not model inputs; `input` is the native `text`.
    inputs: dict[str, Any] = {"text": body["input"]} if "input" in body else {}
    await off_loop(len(raw), validate, model, inputs, state.quirks)
    call = make_call(request, route, model, inputs, Surface.EMBEDDINGS, request_id, raw, body)
    executed = await execute(state, call)
    if executed.outcome.rendered:
        return await render_native(request, call, executed)
    result = executed.outcome.result if isinstance(executed.outcome.result, dict) else {}
    data = result.get("data")
    vectors: list[Any] = list(data) if data is not None else []
    if body.get("encoding_format") == "base64" and not enabled(state.quirks, "embeddings-ignore-base64"):
        vectors = [encode_base64(v) for v in vectors]
    answer = openai_shapes.embedding_list(vectors, model.name, executed.outcome.usage.input_tokens)
    return answered(json_response(answer, headers=answer_headers(call, executed, state.quirks)), executed)


# Responses request fields the model sees or the answer echoes; the catalog's Responses branch
# declares only `input` and `reasoning` and lets the others through, as the serving engine takes them.
RESPONSES_KEYS = ("input", "reasoning", "instructions", "tools", "tool_choice", "max_output_tokens",
                  "temperature", "top_p", "parallel_tool_calls", "previous_response_id", "metadata", "text",
                  "truncation", "user", "max_tool_calls", "top_logprobs", "service_tier")


def check_responses_inputs(inputs: dict[str, Any]) -> None:
    """What the serving engine refuses in a Responses body before the model runs: mistyped
    `instructions`/`tools`/`max_output_tokens`, a function tool without a name, and a
    `function_call_output` whose `call_id` no earlier `function_call` item carries."""
    for key, expected in (("instructions", "string"), ("tools", "array"), ("max_output_tokens", "integer")):
        value = inputs.get(key)
        kind = _json_type(value)
        if value is not None and not (kind == expected or (expected == "integer" and kind == "number"
                                                             and isinstance(value, int))):
            raise CFError(ErrorKind.BAD_INPUT, detail=_mismatch(f"/{key}", value, expected))
    for index, tool in enumerate(inputs.get("tools") or []):
        if not isinstance(tool, dict):
            raise CFError(ErrorKind.BAD_INPUT, detail=_mismatch(f"/tools/{index}", tool, "object"))
        if tool.get("type", "function") == "function" and not isinstance(tool.get("name"), str):
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Error: required properties at '/tools/{index}' are 'name'")
    items = inputs.get("input")
    calls: set[Any] = set()
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls.add(item.get("call_id"))
        elif item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Error: No call message found for {item.get('call_id')}")


async def handle_responses(request: web.Request, route: Route, state: ServerState, request_id: str
                           ) -> web.StreamResponse:
    raw, body = await read_openai_body(request)
    name = model_name(body, route)
    model = model_for(state, name, TEXT_GENERATION)
    if model.name not in RESPONSES_MODELS:
        raise CFError(ErrorKind.RESPONSES_MODEL, model=name)
    if body.get("stream") is True:
        raise CFError(ErrorKind.RESPONSES_STREAM)
    inputs = {k: body[k] for k in RESPONSES_KEYS if k in body}
    check_responses_inputs(inputs)
    await off_loop(len(raw), validate, model, inputs, state.quirks)
    call = make_call(request, route, model, inputs, Surface.RESPONSES, request_id, raw, body)
    executed = await execute(state, call)
    if executed.outcome.rendered:
        return await render_native(request, call, executed)
    gen = generation_of(executed.outcome)
    seed = await seed_of(call, state.settings.seed)
    answer = openai_shapes.response_for(model, inputs, gen, seed)
    headers = answer_headers(call, executed, state.quirks)
    return answered(json_response(answer, headers=headers, stamper=Stamper(state.clock)), executed)

