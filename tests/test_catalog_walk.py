"""Every catalog model over real HTTP: schema-generated inputs answer schema-valid, deterministic outputs.

The oracle is the `jsonschema` library (not the emulator's own validator). Cloudflare's output schemas
use `oneOf` with branches that have no `required` keys, so one object often matches several branches;
the oracle therefore reads `oneOf` as "at least one branch" (what Cloudflare's validator does too).
Binary outputs are checked by content type and decoded (Pillow for images, mutagen for MP3).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import aiohttp
import jsonschema
import orjson
import pytest
from mutagen.mp3 import MP3
from PIL import Image

from emulator.accounting.ledger import FixedClock
from emulator.catalog import Model, load_catalog
from emulator.fakes import audio, images
from emulator.fakes.from_schema import invalid_input_examples, valid_input_examples
from emulator.fakes.seed import derive_seed, rng
from tests.conftest import AUTH, Emulator, ServerFactory

CATALOG = load_catalog()
WEBSOCKET_ONLY = {"@cf/deepgram/flux"}
SMALL_PNG = images.png(32, 24, 7)
SMALL_WAV = audio.wav(1.0, 7, sample_rate=8000)
DATA_URI_PNG = "data:image/png;base64," + base64.b64encode(SMALL_PNG).decode()
AUDIO_TASKS = {"Automatic Speech Recognition", "Voice Activity Detection"}
IMAGE_TASKS = {"Image Classification", "Object Detection", "Image-to-Text", "Text-to-Image"}


def _any_of(validator: Any, branches: Any, instance: Any, schema: Any) -> Any:
    errors = []
    for branch in branches:
        branch_errors = list(validator.descend(instance, branch))
        if not branch_errors:
            return
        errors += branch_errors
    yield jsonschema.ValidationError(f"{instance!r} matches no oneOf branch", context=errors)


Oracle = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"oneOf": _any_of})


def json_output_schema(model: Model) -> dict[str, Any]:
    return model.output_schema


def hint(model: Model, body: Any) -> Any:
    """Swap generated placeholders for realistic media and small sizes, keeping the body schema-valid."""
    if isinstance(body, bytes):
        return SMALL_PNG if model.task.name in IMAGE_TASKS else SMALL_WAV
    if not isinstance(body, dict):
        return body
    body = dict(body)
    props = _properties(model)
    if model.task.name in ("Image Classification", "Object Detection") and "image" not in body:
        body["image"] = []  # replaced by a real picture below: these models need one
    if "moondream" in model.name:
        body["image"] = ""  # every moondream task but `query` needs an image
    if model.name.endswith("-inpainting"):
        body.setdefault("image", [])
        body.setdefault("mask", [])
    if "target_lang" in body:
        body.update({"source_lang": "en", "target_lang": "fr"})  # ISO codes, not generated words
    # `lora` names a fine-tune that must exist (tests/test_finetunes.py): a generated word names none.
    body.pop("lora", None)
    for key, value in list(body.items()):
        if key == "stream":
            body[key] = False
        elif key in ("image", "mask", "input_image"):
            if isinstance(value, list):
                body[key] = list(SMALL_PNG)
            elif isinstance(value, str):
                encoded = base64.b64encode(SMALL_PNG).decode()
                body[key] = DATA_URI_PNG if "moondream" in model.name else encoded
        elif key == "image_b64":
            body[key] = base64.b64encode(SMALL_PNG).decode()
        elif key == "audio" and model.task.name in AUDIO_TASKS:
            if isinstance(value, list):
                body[key] = list(SMALL_WAV)
            elif isinstance(value, str):
                body[key] = base64.b64encode(SMALL_WAV).decode()
        elif key in ("width", "height") and isinstance(value, (int, float)):
            spec = props.get(key, {})
            body[key] = max(int(spec.get("minimum", 0)), 256)
        elif key in ("num_steps", "steps") and isinstance(value, (int, float)):
            body[key] = max(int(props.get(key, {}).get("minimum", 1)), 1)
    return body


def _properties(model: Model) -> dict[str, Any]:
    schema = model.input_schema
    props: dict[str, Any] = dict(schema.get("properties") or {})
    for branch in schema.get("oneOf") or []:
        if isinstance(branch, dict):
            props.update(branch.get("properties") or {})
    return props


def request_for(model: Model, body: Any) -> dict[str, Any]:
    """aiohttp keyword arguments for one run/ request."""
    if isinstance(body, dict) and "multipart" in body:
        form = aiohttp.FormData(default_to_multipart=True)
        fields = (("prompt", "a lighthouse at dawn"), ("width", "256"), ("height", "256"), ("steps", "2"))
        for name, value in fields:
            form.add_field(name, value)
        return {"data": form}
    if model.name == "@cf/deepgram/nova-3":
        return {"data": SMALL_WAV, "headers": {"Content-Type": "audio/wav"}}
    if isinstance(body, bytes):
        kind = "image/png" if body is SMALL_PNG else "audio/wav"
        return {"data": body, "headers": {"Content-Type": kind}}
    return {"json": body}


def examples(model: Model) -> list[Any]:
    found = valid_input_examples(model.input_schema, rng(derive_seed("walk", model.name)))
    out = []
    for body in found:
        # Batch bodies belong to the queueRequest path (tests/test_batch.py); a stream object cannot
        # travel in JSON (nova-3 and smart-turn take raw bytes or base64 over REST instead).
        if isinstance(body, dict) and ("requests" in body or "request_id" in body):
            continue
        stream_object = isinstance(body, dict) and isinstance(body.get("audio"), dict)
        if stream_object and model.name != "@cf/deepgram/nova-3":
            continue
        out.append(hint(model, body))
    return out or [hint(model, b) for b in found[:1]]


async def post(emulator: Emulator, model: Model, body: Any) -> tuple[int, str, bytes]:
    kwargs = request_for(model, body)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    async with emulator.session.post(emulator.run_url(model.name), headers=headers, **kwargs) as response:
        return response.status, response.content_type, await response.read()


def check_output(model: Model, content_type: str, raw: bytes) -> None:
    declared = model.output_content_types()
    if content_type == "application/json":
        body = orjson.loads(raw)
        assert body["success"] is True, body
        errors = sorted(Oracle(json_output_schema(model)).iter_errors(body["result"]), key=str)
        assert not errors, f"{model.name}: {errors[0].message}"
        return
    assert content_type in declared, (model.name, content_type, declared)
    if content_type.startswith("image/"):
        with Image.open(io.BytesIO(raw)) as picture:
            assert picture.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[content_type]
            picture.load()
    elif content_type == "audio/mpeg":
        assert MP3(io.BytesIO(raw)).info.length > 0
    else:
        raise AssertionError(f"{model.name}: unexpected content type {content_type}")


@pytest.mark.parametrize("model", list(CATALOG), ids=lambda m: m.name)
async def test_model_answers_schema_valid_deterministic_fakes(make_emulator: ServerFactory,
                                                             model: Model) -> None:
    # Paid plan: frontier models require Workers Paid (5035 on the free plan).
    emulator = await make_emulator(plan="paid")
    emulator.state.clock = FixedClock()  # per-call ids and times (server/stamps.py) then repeat too
    bodies = examples(model)
    assert bodies, f"{model.name}: no valid example generated"
    for body in bodies:
        status, content_type, raw = await post(emulator, model, body)
        if model.name in WEBSOCKET_ONLY:
            assert status == 400 and b"WebSocket" in raw, raw[:300]
            continue
        assert status == 200, (model.name, body if not isinstance(body, bytes) else "<bytes>", raw[:500])
        check_output(model, content_type, raw)
        again = await post(emulator, model, body)
        assert again == (status, content_type, raw), f"{model.name}: same request, different answer"


@pytest.mark.parametrize("model", list(CATALOG), ids=lambda m: m.name)
async def test_invalid_inputs_get_5006(make_emulator: ServerFactory, model: Model) -> None:
    emulator = await make_emulator(plan="paid")
    headers = {**AUTH, "Content-Type": "application/json"}
    for body in invalid_input_examples(model.input_schema, rng(derive_seed("walk-invalid", model.name))):
        raw = orjson.dumps(body)
        async with emulator.session.post(emulator.run_url(model.name), data=raw, headers=headers) as response:
            payload = await response.json()
        assert response.status == 400, (model.name, body, payload)
        assert payload["errors"][0]["code"] in (5006, 5004), (model.name, body, payload)
