"""Voice Activity Detection: smart-turn-v2's `{is_complete, probability}` for a clip of audio."""

from __future__ import annotations

from emulator.call import Call, Outcome, Usage
from emulator.fakes.seed import rng
from emulator.tasks import FakeContext, register
from emulator.tasks.speech_recognition import duration_of


@register("Voice Activity Detection")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    duration = duration_of(call)
    probability = round(float(rng(ctx.seed).uniform(0.01, 0.99)), 6)
    return Outcome(result={"is_complete": probability >= 0.5, "probability": probability},
                   usage=Usage(audio_seconds=duration))
