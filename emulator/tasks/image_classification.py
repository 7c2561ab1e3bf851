"""Image Classification: resnet-50's top-5 `[{label, score}]` with upper-case ImageNet-style labels."""

from __future__ import annotations

import numpy as np

from emulator.call import Call, Outcome, Usage
from emulator.fakes.seed import rng
from emulator.tasks import FakeContext, register
from emulator.tasks._media import require_image

# A slice of ImageNet class names, upper-cased as the real answers are
# (fixtures/observations/run-resnet50-rest-envelope-2024-01.json).
LABELS = (
    "TABBY", "TIGER CAT", "EGYPTIAN CAT", "GOLDEN RETRIEVER", "LABRADOR RETRIEVER", "BEAGLE", "PUG",
    "SIAMESE CAT", "RED FOX", "TEDDY", "LAPTOP", "NOTEBOOK", "DESKTOP COMPUTER", "MONITOR", "SCREEN",
    "COFFEE MUG", "ESPRESSO", "CUP", "WATER BOTTLE", "SPORTS CAR", "CONVERTIBLE", "MINIVAN", "CAB",
    "MOUNTAIN BIKE", "SEASHORE", "LAKESIDE", "VALLEY", "ALP", "VOLCANO", "CLIFF", "LIGHTHOUSE",
    "CASTLE", "PALACE", "CHURCH", "BANANA", "GRANNY SMITH", "ORANGE", "LEMON", "PIZZA", "CHEESEBURGER",
    "DAISY", "SUNFLOWER", "SPACE SHUTTLE", "AIRLINER", "CONTAINER SHIP", "JIGSAW PUZZLE", "ENVELOPE",
)  # fmt: skip
TOP = 5


@register("Image Classification")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    require_image(call)
    gen = rng(ctx.seed)
    picks = gen.choice(len(LABELS), size=TOP, replace=False)
    raw = sorted(gen.dirichlet([2.0] + [0.5] * (TOP - 1)) * 0.95, reverse=True)
    # Scores are float32 widened to double, as in the real answers
    # (fixtures/real/run-resnet50-rest-envelope.json).
    result = [{"label": LABELS[int(i)], "score": float(np.float32(s))}
              for i, s in zip(picks, raw, strict=True)]
    return Outcome(result=result, usage=Usage(images=1))
