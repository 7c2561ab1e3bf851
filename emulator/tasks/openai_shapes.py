"""OpenAI object shapes Workers AI answers with (chat.completion, its chunks, embeddings, responses)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from emulator.catalog import Model
from emulator.fakes import tokens
from emulator.fakes.seed import derive_seed
from emulator.fakes.text import split_tokens
from emulator.tasks.text_generation import Generation

# Real ids are `id-<epoch ms>` and `created` is the epoch second of the call. The fakes are pure, so they
# write seed-derived placeholders of that shape, and server/stamps.py replaces them per call.
EPOCH_BASE = 1_735_689_600  # 2025-01-01T00:00:00Z
EPOCH_SPAN = 3 * 365 * 86_400


def stable_created(seed: int) -> int:
    return EPOCH_BASE + seed % EPOCH_SPAN


def stable_id(seed: int) -> str:
    return f"id-{stable_created(seed) * 1000 + seed % 1000}"


def tool_call_id(seed: int, index: int, model: str) -> str:
    """`chatcmpl-tool-` and hex: 32 digits from vLLM (gpt-oss,
    fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json), 16 elsewhere (gemma-4,
    fixtures/observations/v1-chat-nonstream-gemma4-toolcall-gateway-2026-05.json). A placeholder:
    server/stamps.py gives each call random ones."""
    digits = derive_seed(seed, "tool", index)
    if model in VLLM_MODELS:
        return f"chatcmpl-tool-{digits:016x}{derive_seed(seed, 'tool2', index):016x}"
    return f"chatcmpl-tool-{digits:016x}"


def openai_tool_calls(gen: Generation, seed: int, model: str) -> list[dict[str, Any]]:
    return [{"id": tool_call_id(seed, i, model), "type": "function",
             "function": {"name": t["name"], "arguments": orjson.dumps(t["arguments"]).decode()}}
            for i, t in enumerate(gen.tool_calls)]


def chat_message(gen: Generation, seed: int, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": gen.text if not gen.tool_calls else None}
    if gen.reasoning is not None:
        message["reasoning_content"] = gen.reasoning
    if gen.tool_calls:
        message["tool_calls"] = openai_tool_calls(gen, seed, model)
    return message


# The serving engine behind a model leaves fingerprints in its answers (fixtures/real/): SGLang
# (kimi) sorts choice and message keys, adds `matched_stop` (the end-of-turn token id) and
# `tool_calls: null`; vLLM (gpt-oss) orders its first streamed usage total before completion.
SGLANG_MATCHED_STOP = {
    "@cf/moonshotai/kimi-k2.5": 163586,
    "@cf/moonshotai/kimi-k2.6": 163586,
    "@cf/moonshotai/kimi-k2.7-code": 163586,
}
VLLM_MODELS = frozenset({"@cf/openai/gpt-oss-20b", "@cf/openai/gpt-oss-120b"})


def chat_completion(gen: Generation, model: str, seed: int, choices: list[Generation] | None = None
                    ) -> dict[str, Any]:
    """One chat.completion; with `choices` (n > 1), one choice per generation, each with its own
    tool-call ids, and usage counting the prompt once and every choice's tokens."""
    gens = choices or [gen]
    rendered = [_choice(g, model, derive_seed(seed, "choice", i) if i else seed, i)
                for i, g in enumerate(gens)]
    usage: dict[str, Any] = gen.usage
    if len(gens) > 1:
        completion_tokens = sum(g.completion_tokens for g in gens)
        usage = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": gen.prompt_tokens + completion_tokens}
    if model in SGLANG_MATCHED_STOP:
        usage = {**usage, "prompt_tokens_details": {"cached_tokens": 0}}
    return {
        "id": stable_id(seed),
        "object": "chat.completion",
        "created": stable_created(seed),
        "model": model,
        "choices": rendered,
        "usage": usage,
    }


def _choice(gen: Generation, model: str, seed: int, index: int) -> dict[str, Any]:
    message = chat_message(gen, seed, model)
    choice: dict[str, Any] = {"index": index, "message": message, "logprobs": None,
                              "finish_reason": gen.finish_reason}
    if model in SGLANG_MATCHED_STOP:
        message.setdefault("tool_calls", None)
        choice["message"] = dict(sorted(message.items()))
        choice["matched_stop"] = SGLANG_MATCHED_STOP[model]
        choice = dict(sorted(choice.items()))
    return choice


# The recorded zero-usage chunk Cloudflare sends after the real one
# (fixtures/real/gateway-compat-stream-llama31-8b.json).
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
              "prompt_tokens_details": {"cached_tokens": 0}}
_FRAGMENT_RE = re.compile(r"\w+|\s+|[^\w\s]+")


def argument_fragments(arguments: str) -> list[str]:
    """Tool-call argument pieces as vLLM streams them (`{"`, `city`, `":"`, `Paris`, `"}`)."""
    return _FRAGMENT_RE.findall(arguments) or [arguments]


def _delta_chunk(ident: str, created: int, model: str, delta: dict[str, Any]) -> dict[str, Any]:
    # Key order of the recorded content chunks: id, created, model, object, choices.
    return {"id": ident, "created": created, "model": model, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta}]}


def _final_chunk(ident: str, created: int, model: str, finish: str, usage: dict[str, Any] | None
                 ) -> dict[str, Any]:
    # Key order of the recorded finish/usage chunks: id, object, created, model, choices, usage.
    chunk: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                             "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


# vLLM's end-of-turn token ids in the o200k harmony vocabulary: <|return|> ends an answer, <|call|> a tool
# call (the captured `stop_reason: 200012`); a cut answer has none.
VLLM_STOP_REASON = {"stop": 200002, "tool_calls": 200012}


def _vllm_choice(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **extra, "token_ids": None}


def _tool_call_deltas(gen: Generation, model: str, seed: int) -> list[dict[str, Any]]:
    """Each tool call streamed as OpenAI does: its id and name first, then its arguments in fragments."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(openai_tool_calls(gen, seed, model)):
        function = call["function"]
        deltas.append({"tool_calls": [{"id": call["id"], "type": "function", "index": index,
                                       "function": {"name": function["name"], "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                   for piece in argument_fragments(function["arguments"])]
    return deltas


def vllm_stream_chunks(gen: Generation, model: str, seed: int, *, include_usage: bool,
                       cloudflare_usage_chunks: bool) -> list[dict[str, Any]]:
    """gpt-oss's stream as captured (fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json): a first
    chunk with the role and empty content; every choice with `logprobs`, `finish_reason` and `token_ids`
    null; reasoning opened by an empty piece; a `stop_reason` chunk; then two usage chunks that both
    carry the real figures (the first ordered prompt, total, completion)."""
    ident, created = stable_id(seed), stable_created(seed)
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
             "finish_reason": None}
    chunks = [{"id": ident, "created": created, "model": model, "object": "chat.completion.chunk",
               "choices": [first]}]
    deltas: list[dict[str, Any]] = []
    if gen.reasoning:
        deltas.append({"reasoning_content": ""})
        deltas += [{"reasoning_content": piece} for piece in split_tokens(gen.reasoning)]
    deltas += [{"content": piece} for piece in split_tokens(gen.text)]
    deltas += _tool_call_deltas(gen, model, seed)
    chunks += [{"id": ident, "created": created, "model": model, "object": "chat.completion.chunk",
                "choices": [_vllm_choice(delta)]} for delta in deltas]
    chunks.append({"id": ident, "created": created, "model": model, "object": "chat.completion.chunk",
                   "choices": [_vllm_choice({}, stop_reason=VLLM_STOP_REASON.get(gen.finish_reason))]})
    usage = gen.usage
    if not include_usage:
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, None))
    elif cloudflare_usage_chunks:
        ordered = {k: usage[k] for k in ("prompt_tokens", "total_tokens", "completion_tokens")}
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, ordered))
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason,
                                   {**usage, "prompt_tokens_details": {"cached_tokens": 0}}))
    else:
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, None))
        chunks.append({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage})
    return chunks


def chat_stream_chunks(gen: Generation, model: str, seed: int, *, include_usage: bool,
                       role_in_first_delta: bool, cloudflare_usage_chunks: bool) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of one streamed answer, in order (without `[DONE]`).

    `cloudflare_usage_chunks`: usage rides on the finish chunk and a zero-usage chunk follows (as
    recorded); otherwise OpenAI's form, a trailing chunk with `choices: []` and the usage.
    """
    if model in VLLM_MODELS:
        return vllm_stream_chunks(gen, model, seed, include_usage=include_usage,
                                  cloudflare_usage_chunks=cloudflare_usage_chunks)
    ident, created = stable_id(seed), stable_created(seed)
    deltas: list[dict[str, Any]] = []
    if gen.reasoning:
        deltas += [{"reasoning_content": piece} for piece in split_tokens(gen.reasoning)]
    deltas += [{"content": piece} for piece in split_tokens(gen.text)]
    deltas += _tool_call_deltas(gen, model, seed)
    if role_in_first_delta:
        if deltas:
            deltas[0] = {"role": "assistant", **deltas[0]}
        else:
            deltas.append({"role": "assistant", "content": ""})
    chunks = [_delta_chunk(ident, created, model, delta) for delta in deltas]
    if not include_usage:
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, None))
    elif cloudflare_usage_chunks:
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, gen.usage))
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, dict(ZERO_USAGE)))
    else:
        chunks.append(_final_chunk(ident, created, model, gen.finish_reason, None))
        chunks.append({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": gen.usage})
    return chunks


def embedding_list(vectors: list[Any], model: str, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings answer; each vector is a float list or (base64 encoding) a string."""
    return {"object": "list",
            "data": [{"object": "embedding", "embedding": vector, "index": i}
                     for i, vector in enumerate(vectors)],
            "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def response_for(model: Model, inputs: dict[str, Any], gen: Generation, seed: int) -> dict[str, Any]:
    """The Responses object for a call's Responses inputs (`input`, `instructions`, `tools`, …)."""
    given = inputs.get("reasoning")
    reasoning: dict[str, Any] = given if isinstance(given, dict) else {}
    declared = model.prop("reasoning_effort")
    default_effort = declared.get("default_effort", "medium") if isinstance(declared, dict) else "medium"
    return response_object(gen, model.name, seed, inputs, effort=reasoning.get("effort") or default_effort,
                           summary=reasoning.get("summary"))


def _hex_id(seed: int, *labels: Any) -> str:
    """32 hex digits, like the serving engine's `random_uuid()` (uuid4().hex), from the request seed."""
    return f"{derive_seed(seed, *labels, 'hi'):016x}{derive_seed(seed, *labels, 'lo'):016x}"


def function_call_items(gen: Generation, seed: int) -> list[dict[str, Any]]:
    """vLLM's Responses `function_call` items for the generation's tool calls: `call_<id>` and
    `fc_<id>` share one id, `arguments` is a JSON string, `status` is left unset (null)."""
    items = []
    for index, call in enumerate(gen.tool_calls):
        ident = _hex_id(seed, "fc", index)
        items.append({"arguments": orjson.dumps(call["arguments"]).decode(), "call_id": f"call_{ident}",
                      "name": call["name"], "type": "function_call", "id": f"fc_{ident}", "status": None})
    return items


def echoed_tools(tools: Any) -> list[Any]:
    """Function tools as the engine echoes them (OpenAI's FunctionTool with every field); others as sent."""
    echoed: list[Any] = []
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict) and tool.get("type", "function") == "function" and "name" in tool:
            echoed.append({"name": tool["name"], "parameters": tool.get("parameters"),
                           "strict": tool.get("strict"), "type": "function",
                           "description": tool.get("description")})
        else:
            echoed.append(tool)
    return echoed


# What the Responses object reports when the request leaves a knob out. temperature and top_p are
# gpt-oss's generation defaults; the rest are vLLM's `ResponsesRequest` defaults (inferred, see
# docs/openai-compatible.md).
RESPONSE_DEFAULTS: dict[str, Any] = {
    "metadata": None, "parallel_tool_calls": True, "temperature": 1.0, "tool_choice": "auto", "top_p": 1.0,
    "background": False, "max_tool_calls": None, "previous_response_id": None, "prompt": None,
    "service_tier": "auto", "text": None, "top_logprobs": None, "truncation": "disabled", "user": None,
}


def response_object(gen: Generation, model: str, seed: int, inputs: dict[str, Any], *, effort: str | None,
                    summary: str | None) -> dict[str, Any]:
    """The Responses object vLLM serves gpt-oss with (its field order): a reasoning item, then the
    message or one `function_call` item per tool call."""
    reasoning_tokens = 0
    output: list[dict[str, Any]] = []
    if gen.reasoning:
        reasoning_tokens = tokens.completion_tokens(model, gen.reasoning)
        output.append({"id": f"rs_{derive_seed(seed, 'rs'):016x}", "type": "reasoning", "summary": [],
                       "content": [{"type": "reasoning_text", "text": gen.reasoning}]})
    if gen.tool_calls:
        output += function_call_items(gen, seed)
    else:
        output.append({"id": f"msg_{derive_seed(seed, 'msg'):016x}", "type": "message", "status": "completed",
                       "role": "assistant",
                       "content": [{"type": "output_text", "text": gen.text, "annotations": []}]})
    output_tokens = gen.completion_tokens + reasoning_tokens
    given = {key: inputs[key] for key in RESPONSE_DEFAULTS if inputs.get(key) is not None}
    knobs = {**RESPONSE_DEFAULTS, **given}
    truncated = gen.finish_reason == "length"
    limit = inputs.get("max_output_tokens")
    return {
        "id": f"resp_{derive_seed(seed, 'resp'):016x}",
        "created_at": stable_created(seed),
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "instructions": inputs.get("instructions"),
        "metadata": knobs["metadata"],
        "model": model,
        "object": "response",
        "output": output,
        "parallel_tool_calls": knobs["parallel_tool_calls"],
        "temperature": knobs["temperature"],
        "tool_choice": knobs["tool_choice"],
        "tools": echoed_tools(inputs.get("tools")),
        "top_p": knobs["top_p"],
        "background": knobs["background"],
        "max_output_tokens": limit if isinstance(limit, int) else gen.limit,
        "max_tool_calls": knobs["max_tool_calls"],
        "previous_response_id": knobs["previous_response_id"],
        "prompt": knobs["prompt"],
        "reasoning": {"effort": effort, "summary": summary},
        "service_tier": knobs["service_tier"],
        "status": "incomplete" if truncated else "completed",
        "text": knobs["text"],
        "top_logprobs": knobs["top_logprobs"],
        "truncation": knobs["truncation"],
        "usage": {"input_tokens": gen.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": output_tokens,
                  "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                  "total_tokens": gen.prompt_tokens + output_tokens},
        "user": knobs["user"],
    }
