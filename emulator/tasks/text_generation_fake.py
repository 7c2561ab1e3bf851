"""The fake of the Text Generation task: which family answers (evaluation, Llama Guard, or plain
generation) and in which shape (native, Chat Completions or Responses object, native SSE)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from emulator.call import Call, Outcome, Surface, Usage
from emulator.fakes.seed import derive_seed
from emulator.tasks import FakeContext, evaluation, moderation, register
from emulator.tasks.openai_shapes import chat_completion, response_for
from emulator.tasks.text_generation import (
    choices_wanted,
    generate,
    native_events,
    native_result,
    traits_of,
)


@register("Text Generation")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    if "answers" in (call.model.output_schema.get("properties") or {}):
        return evaluation.fake(call, ctx)
    if moderation.is_guard_model(call):
        return moderation.fake(call, ctx)
    gen = generate(call, ctx)
    usage = Usage(input_tokens=gen.prompt_tokens, output_tokens=gen.completion_tokens)
    extras: dict[str, Any] = {"generation": gen}
    wanted = choices_wanted(call)
    if wanted > 1:
        # n samples of one prompt: the prompt is read once, every choice's tokens are generated.
        others = [generate(call, replace(ctx, seed=derive_seed(ctx.seed, "choice", i)))
                  for i in range(1, wanted)]
        extras["choices"] = [gen, *others]
        usage = Usage(input_tokens=gen.prompt_tokens,
                      output_tokens=gen.completion_tokens + sum(o.completion_tokens for o in others))
    if "input" in call.json_inputs and call.surface in (Surface.NATIVE, Surface.BINDING):
        # gpt-oss's Responses input form on run/ answers a Responses object (its catalog
        # `Responses_Output` branch); null members are left out, as that schema types them as objects.
        result = {k: v for k, v in response_for(call.model, call.json_inputs, gen, ctx.seed).items()
                  if v is not None}
        return Outcome(result=result, usage=usage, extras=extras)
    if call.stream:
        return Outcome(events=native_events(gen, ctx.seed, ctx.quirks), content_type="text/event-stream",
                       usage=usage, extras=extras)
    if traits_of(call.model).chat_completion:
        completion = chat_completion(gen, call.model.name, ctx.seed, extras.get("choices"))
        for choice in completion["choices"]:
            # The frontier output schemas require `refusal` on the message (null when not refusing)
            # and type `tool_calls` as an array: the OpenAI surface's SGLang `tool_calls: null` goes.
            choice["message"].setdefault("refusal", None)
            if choice["message"].get("tool_calls", ()) is None:
                del choice["message"]["tool_calls"]
        return Outcome(result=completion, usage=usage, extras=extras)
    return Outcome(result=native_result(gen), usage=usage, extras=extras)
