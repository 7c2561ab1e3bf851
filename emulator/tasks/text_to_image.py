"""Text-to-Image: real PNG/JPEG pictures of the requested size whose content follows the prompt.

Families (from the catalog's output schemas): SDXL / dreamshaper / sd-v1-5 answer raw `image/png`;
phoenix answers raw `image/jpeg`; flux-1-schnell, lucid-origin and FLUX.2 answer JSON
`{"image": <base64 JPEG>}`.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from emulator.call import Call, Outcome, Usage
from emulator.errors import CFError, ErrorKind
from emulator.fakes import images
from emulator.limits import is_number_text
from emulator.tasks import FakeContext, register

DEFAULT_SIDE = 1024
TILE = 512 * 512
MEGAPIXEL = 1024 * 1024


def _schema_default(call: Call, key: str, fallback: int) -> int:
    prop = call.model.input_schema.get("properties", {}).get(key, {})
    default = prop.get("default") if isinstance(prop, dict) else None
    return int(default) if isinstance(default, (int, float)) and default > 0 else fallback


def _number(value: Any, fallback: int) -> int:
    return (
        int(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else fallback
    )


def _requirements(call: Call, inputs: dict[str, Any]) -> None:
    """img2img needs an image, inpainting an image and a mask (the schemas describe them as such)."""
    name = call.model.name
    has_image = bool(inputs.get("image") or inputs.get("image_b64"))
    if name.endswith("-img2img") and not has_image:
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'prompt,image'")
    if name.endswith("-inpainting") and not (has_image and inputs.get("mask")):
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: required properties at '/' are 'prompt,image,mask'")


def _form_inputs(call: Call) -> dict[str, Any]:
    binary = call.binary
    if binary is not None and binary.form is not None:
        return {k: v for k, v in binary.form.items() if not isinstance(v, bytes)}
    return call.json_inputs


def _input_images(call: Call) -> tuple[int, float]:
    """(512×512 tiles, megapixels) of the images a call sends in: FLUX.2 bills them (pricing page)."""
    binary = call.binary
    files = [v for v in binary.form.values() if isinstance(v, bytes)] if binary and binary.form else []
    tiles, megapixels = 0, 0.0
    for data in files:
        info = images.image_info(data)
        if info is not None:
            _, w, h = info
            tiles += math.ceil(w * h / TILE)
            megapixels += w * h / MEGAPIXEL
    return tiles, megapixels


def _output_kind(call: Call) -> str:
    types = call.model.output_content_types()
    if "image/png" in types:
        return "png"
    if "image/jpeg" in types:
        return "jpeg"
    return "json"


@register("Text-to-Image")
def fake(call: Call, ctx: FakeContext) -> Outcome:
    inputs = _form_inputs(call)
    _requirements(call, inputs)
    side = _schema_default(call, "width", DEFAULT_SIDE)
    width = _number(_as_int(inputs.get("width")), side)
    height = _number(_as_int(inputs.get("height")), _schema_default(call, "height", DEFAULT_SIDE))
    steps = _number(
        _as_int(inputs.get("num_steps") or inputs.get("steps")),
        _schema_default(call, "num_steps", _schema_default(call, "steps", 20)),
    )
    # Billing counts whole 512×512 tiles (real 1280×720 klein calls cost exactly 4 tiles).
    in_tiles, in_megapixels = _input_images(call)
    usage = Usage(
        output_tiles=math.ceil(width * height / TILE), steps=steps, megapixels=width * height / MEGAPIXEL,
        input_tiles=in_tiles, input_megapixels=in_megapixels,
    )
    kind = _output_kind(call)
    if kind == "png":
        return Outcome(body=images.png(width, height, ctx.seed), content_type="image/png", usage=usage)
    picture = images.jpeg(width, height, ctx.seed)
    if kind == "jpeg":
        return Outcome(body=picture, content_type="image/jpeg", usage=usage)
    return Outcome(result={"image": base64.b64encode(picture).decode()}, usage=usage)


def _as_int(value: Any) -> Any:
    # Multipart fields arrive as strings.
    if isinstance(value, str) and is_number_text(value.strip()):
        return int(value)
    return value
