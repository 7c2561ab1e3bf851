"""Object Detection: detr's `[{score, label, box{xmin, ymin, xmax, ymax}}]`, boxes inside the input image."""

from __future__ import annotations

from typing import Any

from emulator.call import Call, Outcome, Usage
from emulator.fakes.seed import rng
from emulator.tasks import FakeContext, register
from emulator.tasks._media import require_image

# COCO class names (detr-resnet-50 is trained on COCO; labels are lower-case there).
LABELS = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "boat", "traffic light", "bench", "bird",
    "cat", "dog", "horse", "backpack", "umbrella", "handbag", "bottle", "cup", "chair", "couch",
    "potted plant", "bed", "dining table", "tv", "laptop", "cell phone", "book", "clock", "vase",
)  # fmt: skip


@register("Object Detection")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    _, width, height = require_image(call)
    gen = rng(ctx.seed)
    found: list[dict[str, Any]] = []
    for _ in range(int(gen.integers(1, 6))):
        x0, x1 = sorted(float(v) for v in gen.uniform(0, width, size=2))
        y0, y1 = sorted(float(v) for v in gen.uniform(0, height, size=2))
        label = LABELS[int(gen.integers(len(LABELS)))]
        found.append({"score": float(gen.uniform(0.5, 0.999)), "label": label,
                      "box": {"xmin": round(x0), "ymin": round(y0), "xmax": round(x1), "ymax": round(y1)}})
    found.sort(key=lambda d: -d["score"])
    return Outcome(result=found, usage=Usage(images=1))
