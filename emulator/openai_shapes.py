"""OpenAI object shapes Workers AI answers with (chat.completion and its chunks), built from a Generation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from emulator.fakes.seed import derive_seed

if TYPE_CHECKING:
    from emulator.tasks.text_generation import Generation

# Real ids are `id-<epoch ms>` and `created` is the epoch second. Bodies must be byte-identical for
# the same request, so both come from the request seed: a plausible 2025–2028 timestamp.
EPOCH_BASE = 1_735_689_600  # 2025-01-01T00:00:00Z
EPOCH_SPAN = 3 * 365 * 86_400


def stable_created(seed: int) -> int:
    return EPOCH_BASE + seed % EPOCH_SPAN


def stable_id(seed: int) -> str:
    return f"id-{stable_created(seed) * 1000 + seed % 1000}"


def tool_call_id(seed: int, index: int) -> str:
    return f"chatcmpl-tool-{derive_seed(seed, 'tool', index):016x}"


def openai_tool_calls(gen: Generation, seed: int) -> list[dict[str, Any]]:
    return [{"id": tool_call_id(seed, i), "type": "function",
             "function": {"name": t["name"], "arguments": orjson.dumps(t["arguments"]).decode()}}
            for i, t in enumerate(gen.tool_calls)]


def chat_message(gen: Generation, seed: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": gen.text if not gen.tool_calls else None}
    if gen.reasoning is not None:
        message["reasoning_content"] = gen.reasoning
    if gen.tool_calls:
        message["tool_calls"] = openai_tool_calls(gen, seed)
    return message


def chat_completion(gen: Generation, model: str, seed: int) -> dict[str, Any]:
    return {
        "id": stable_id(seed),
        "object": "chat.completion",
        "created": stable_created(seed),
        "model": model,
        "choices": [{"index": 0, "message": chat_message(gen, seed), "logprobs": None,
                     "finish_reason": gen.finish_reason}],
        "usage": gen.usage,
    }
