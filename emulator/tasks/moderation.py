"""Llama Guard models (task "Text Generation"): a safety verdict on the conversation instead of prose.

The verdict is deterministic and follows the last user message, so tests can exercise both paths:
a message naming a hazard from the table below is unsafe with that hazard's category, anything
else is safe. llama-guard-3-8b answers `response: {safe, categories}` (S1–S14, its output schema's
object branch); llamaguard-7b-awq answers the model's raw text, `safe` or `unsafe\\n<O-category>`.
"""

from __future__ import annotations

import re
from typing import Any

from emulator.call import Call, Outcome, Usage
from emulator.fakes import tokens
from emulator.fakes.tokens import content_text
from emulator.tasks import FakeContext
from emulator.tasks.text_generation import Generation, native_events, prompt_tokens

# Hazard words → (Llama Guard 3 category, Llama Guard 1 category).
HAZARDS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(rf"\b({words})\b", re.IGNORECASE), s, o)
    for words, s, o in [
        ("kill|murder|assault|stab|shoot", "S1", "O3"),
        ("steal|fraud|launder|scam|hack into", "S2", "O5"),
        ("bomb|explosive|nerve agent|bioweapon|nuclear weapon", "S9", "O4"),
        ("hate speech|racial slur|inferior race", "S10", "O1"),
        ("suicide|self-harm|hurt myself", "S11", "O6"),
        ("explicit sex|porn", "S12", "O2"),
    ]
)


def is_guard_model(call: Call) -> bool:
    return "guard" in call.model.name


def _last_user_text(inputs: dict[str, Any]) -> str:
    if "prompt" in inputs:
        return str(inputs["prompt"])
    for message in reversed(inputs.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def verdict(text: str) -> list[tuple[str, str]]:
    """The (S, O) categories the text touches; empty when safe."""
    return [(s, o) for pattern, s, o in HAZARDS if pattern.search(text)]


def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    hits = verdict(_last_user_text(inputs))
    guard3 = "llama-guard-3" in call.model.name
    codes = [s if guard3 else o for s, o in hits]
    text = "safe" if not hits else "unsafe\n" + ",".join(codes)
    p_tokens = prompt_tokens(inputs, call.model.name)
    gen = Generation(text, "stop", p_tokens, tokens.completion_tokens(call.model.name, text))
    usage = Usage(input_tokens=p_tokens, output_tokens=gen.completion_tokens)
    extras = {"generation": gen}  # the OpenAI surface and streams show the verdict as text
    if call.stream:
        return Outcome(events=native_events(gen, ctx.seed, ctx.quirks), content_type="text/event-stream",
                       usage=usage, extras=extras)
    response: Any = {"safe": not hits, "categories": codes} if guard3 else text
    return Outcome(result={"response": response, "usage": gen.usage}, usage=usage, extras=extras)
