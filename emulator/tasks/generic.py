"""Fallback for tasks without a dedicated fake: a value generated from the model's own output schema."""

from __future__ import annotations

from emulator.call import Call, Outcome, Usage
from emulator.fakes import audio, images
from emulator.fakes.from_schema import fake_from_schema
from emulator.fakes.seed import rng


def fake(call: Call, ctx) -> Outcome:  # type: ignore[no-untyped-def]
    types = call.model.output_content_types()
    if "image/png" in types:
        return Outcome(body=images.png(512, 512, ctx.seed), content_type="image/png", usage=Usage(images=1))
    if "image/jpeg" in types:
        return Outcome(body=images.jpeg(512, 512, ctx.seed), content_type="image/jpeg", usage=Usage(images=1))
    if "audio/mpeg" in types and "application/json" not in types:
        return Outcome(body=audio.mp3(1.0, ctx.seed), content_type="audio/mpeg", usage=Usage())
    schema = call.model.output_schema
    branches = schema.get("oneOf")
    if branches:
        json_branches = [b for b in branches if isinstance(b, dict) and b.get("format") != "binary"]
        schema = json_branches[0] if json_branches else schema
    return Outcome(result=fake_from_schema(schema, rng(ctx.seed)), usage=Usage())
