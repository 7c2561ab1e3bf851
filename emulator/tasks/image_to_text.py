"""Image-to-Text: llava/uform `{description}` and moondream's task variants (query, caption, point, detect).

llava's real descriptions start with a space (the decoded continuation of the prompt), so ours do too.
Moondream coordinates are normalised to 0…1 like the real model's; keys of other tasks are left out
(the schema says "null for other tasks" but types them non-null).
"""

from __future__ import annotations

from typing import Any

from emulator.call import Call, Outcome, Usage
from emulator.errors import CFError, ErrorKind
from emulator.fakes import text as text_fake
from emulator.fakes.seed import derive_seed, rng
from emulator.tasks import FakeContext, register
from emulator.tasks._media import image_bytes, image_size

DEFAULT_MAX_TOKENS = 512
MOONDREAM_MAX_TOKENS = 768
IMAGE_TOKENS = 576  # CLIP ViT-L/14 at 336 px: the prompt cost of one image
CAPTION_TOKENS = {"short": 16, "normal": 48, "long": 120}


def _limit(inputs: dict[str, Any], default: int) -> int:
    value = inputs.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else default


def describe(call: Call, ctx: FakeContext) -> Outcome:
    data = image_bytes(call)
    if not data:
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'image'")
    image_size(data)
    inputs = call.json_inputs
    text, _ = text_fake.prose(ctx.seed, min(_limit(inputs, DEFAULT_MAX_TOKENS), 96))
    prompt_tokens = IMAGE_TOKENS + text_fake.count_tokens(str(inputs.get("prompt", "")))
    usage = Usage(input_tokens=prompt_tokens, output_tokens=text_fake.count_tokens(text), images=1)
    return Outcome(result={"description": " " + text}, usage=usage)


def moondream(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    task = inputs.get("task", "query")
    data = image_bytes(call)
    if data:
        image_size(data)
    elif task != "query" and not str(inputs.get("image", "")).startswith(("http://", "https://")):
        raise CFError(ErrorKind.BAD_INPUT, detail=f"Error: the '{task}' task requires 'image'")
    gen = rng(ctx.seed)
    limit = _limit(inputs, MOONDREAM_MAX_TOKENS)
    result: dict[str, Any] = {"finish_reason": "stop"}
    output_tokens = 0
    if task == "caption":
        text, truncated = text_fake.prose(ctx.seed, min(limit, CAPTION_TOKENS.get(inputs.get("caption_length",
                                                                                           "normal"), 48)))
        result["caption"] = text
        output_tokens = text_fake.count_tokens(text)
        result["finish_reason"] = "length" if truncated and limit < 48 else "stop"
    elif task == "point":
        count = int(gen.integers(1, min(5, inputs.get("max_objects", 150)) + 1))
        result["points"] = [{"x": round(float(gen.uniform(0, 1)), 4), "y": round(float(gen.uniform(0, 1)), 4)}
                            for _ in range(count)]
        output_tokens = 2 * count
    elif task == "detect":
        count = int(gen.integers(1, min(5, inputs.get("max_objects", 150)) + 1))
        objects = []
        for _ in range(count):
            x0, x1 = sorted(round(float(v), 4) for v in gen.uniform(0, 1, size=2))
            y0, y1 = sorted(round(float(v), 4) for v in gen.uniform(0, 1, size=2))
            objects.append({"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1})
        result["objects"] = objects
        output_tokens = 4 * count
    else:
        answer, truncated = text_fake.prose(ctx.seed, min(limit, 64))
        result["answer"] = answer
        output_tokens = text_fake.count_tokens(answer)
        if truncated and limit < 64:
            result["finish_reason"] = "length"
        if inputs.get("reasoning", True):
            reasoning, _ = text_fake.prose(derive_seed(ctx.seed, "reasoning"), 32)
            result["reasoning"] = {"text": reasoning, "grounding": []}
            output_tokens += text_fake.count_tokens(reasoning)
    input_tokens = (IMAGE_TOKENS if data else 0) + text_fake.count_tokens(
        str(inputs.get("question", "") or inputs.get("target", "")))
    result["metrics"] = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                         "prefill_time_ms": round(float(gen.uniform(20, 80)), 2),
                         "decode_time_ms": round(output_tokens * float(gen.uniform(8, 14)), 2),
                         "ttft_ms": round(float(gen.uniform(30, 120)), 2)}
    return Outcome(result=result, usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                                              images=1 if data else 0))


@register("Image-to-Text")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    if "moondream" in call.model.name:
        return moondream(call, ctx)
    return describe(call, ctx)
