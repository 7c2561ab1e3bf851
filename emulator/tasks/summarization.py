"""Summarization: bart-large-cnn's `{summary}`, taken from the input's words within `max_length` tokens."""

from __future__ import annotations

import re

from emulator.call import Call, Outcome, Usage
from emulator.fakes import text as text_fake
from emulator.fakes import tokens as tokenizer
from emulator.tasks import FakeContext, register

DEFAULT_MAX_LENGTH = 1024
_WORD = re.compile(r"\S+")


@register("Summarization")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = call.json_inputs
    source = str(inputs.get("input_text", ""))
    limit = inputs.get("max_length")
    limit = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_LENGTH
    # A summary is shorter than its text: about a third of it, never over max_length.
    budget = max(1, min(limit, text_fake.count_tokens(source) // 3 or 1))
    summary = ""
    # The words one at a time, as `source.split()` gives them (the same whitespace): the summary
    # takes the first few, where splitting 17 MB of text in one call held the GIL ~270 ms.
    for match in _WORD.finditer(source):
        word = match.group()
        candidate = f"{summary} {word}".strip()
        if text_fake.count_tokens(candidate) > budget:
            break
        summary = candidate
    if not summary:
        summary, _ = text_fake.prose(ctx.seed, budget)
    usage = Usage(input_tokens=tokenizer.encoder_tokens(call.model.name, [source]),
                  output_tokens=tokenizer.completion_tokens(call.model.name, summary))
    return Outcome(result={"summary": summary}, usage=usage)
