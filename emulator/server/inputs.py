"""Reading a request body into model inputs (JSON, raw bytes or multipart) and validating them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from emulator.call import BinaryInput
from emulator.catalog import Model
from emulator.errors import CFError
from emulator.quirks import enabled

JSON_TYPES = ("application/json", "text/json", "application/x-ndjson")
LOOSE_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream")


def is_json_type(content_type: str) -> bool:
    return content_type in JSON_TYPES or content_type.endswith("+json")


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CFError("invalid_json", detail=str(exc).split(":", 1)[0]) from None


async def read_body(request: web.Request) -> bytes:
    return await request.read()


async def read_inputs(request: web.Request, raw: bytes) -> dict[str, Any] | BinaryInput:
    """JSON bodies become dicts; multipart a form; anything else (audio, images) raw bytes."""
    content_type = request.content_type or ""
    if content_type.startswith("multipart/"):
        return BinaryInput(
            raw, request.headers.get("Content-Type", content_type), form=await _read_form(request)
        )
    stripped = raw.lstrip()
    # curl -d sends JSON as application/x-www-form-urlencoded and Cloudflare's own examples rely
    # on it working, so any body that starts like a JSON object is read as JSON.
    looks_json = stripped[:1] in (b"{", b"[") or not stripped
    if is_json_type(content_type) or (looks_json and content_type in LOOSE_TYPES):
        if not stripped:
            return {}
        value = parse_json(raw)
        if isinstance(value, list):
            _non_object(value)
        if not isinstance(value, dict):
            return BinaryInput(raw, content_type or "application/json")
        return value
    return BinaryInput(raw, content_type or "application/octet-stream")


def _non_object(value: list[Any]) -> dict[str, Any]:
    raise CFError("bad_input", detail="Error: Type mismatch of '/', 'object' not in 'array'")


async def _read_form(request: web.Request) -> dict[str, Any]:
    form: dict[str, Any] = {}
    try:
        reader = await request.multipart()
        async for part in reader:
            if part is None or not hasattr(part, "name") or part.name is None:
                continue
            data = await part.read(decode=False)
            if getattr(part, "filename", None):
                form[part.name] = bytes(data)
            else:
                form[part.name] = bytes(data).decode("utf-8", "replace")
    except (ValueError, AssertionError, KeyError, RuntimeError) as exc:
        raise CFError("bad_input", detail=f"Error: malformed multipart body ({exc})") from None
    return form


def validation_instance(inputs: dict[str, Any] | BinaryInput) -> Any:
    """What the schema sees: the JSON object, the raw bytes, or `{multipart: {body, contentType}}`."""
    if isinstance(inputs, BinaryInput):
        if inputs.form is not None:
            return {"multipart": {"body": inputs.data, "contentType": inputs.content_type}}
        return inputs.data
    return inputs


def validate(model: Model, inputs: dict[str, Any] | BinaryInput, quirks: dict[str, bool]) -> None:
    message = model.input_validator.message(validation_instance(inputs))
    if message is None:
        return
    if not message.startswith("Error: ") and not enabled(quirks, "validation-error-prefix"):
        message = "Error: " + message
    raise CFError("bad_input", detail=message)
