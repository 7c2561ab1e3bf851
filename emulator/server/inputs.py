"""Reading a request body into model inputs (JSON, raw bytes or multipart) and validating them."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from emulator.call import BinaryInput
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.limits import check_depth
from emulator.quirks import enabled

JSON_TYPES = ("application/json", "text/json", "application/x-ndjson")
LOOSE_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream")


def is_json_type(content_type: str) -> bool:
    return content_type in JSON_TYPES or content_type.endswith("+json")


def parse_json(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CFError(ErrorKind.INVALID_JSON, detail=str(exc).split(":", 1)[0]) from None
    check_depth(value)
    return value


async def read_inputs(request: web.Request, raw: bytes) -> dict[str, Any] | BinaryInput:
    """JSON bodies become dicts; multipart a form; anything else (audio, images) raw bytes."""
    content_type = request.content_type or ""
    if content_type.startswith("multipart/"):
        return BinaryInput(
            raw, request.headers.get("Content-Type", content_type), form=await _read_form(request, raw)
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
    raise CFError(ErrorKind.BAD_INPUT, detail="Error: Type mismatch of '/', 'object' not in 'array'")


async def _read_form(request: web.Request, raw: bytes) -> dict[str, Any]:
    """Parse the multipart body from the bytes already read (the request stream is consumed by then)."""
    return parse_form(request.headers.get("Content-Type", ""), raw)


def parse_form(header: str, raw: bytes) -> dict[str, Any]:
    """The fields of a multipart body whose Content-Type header is `header`."""
    import email.parser
    import email.policy

    if "boundary=" not in header:
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: multipart body without a boundary")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + header.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: malformed multipart body")
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        form[str(name)] = bytes(data) if part.get_filename() else bytes(data).decode("utf-8", "replace")
    return form


def validation_instance(inputs: dict[str, Any] | BinaryInput) -> Any:
    """What the schema sees: the JSON object, the raw bytes, or `{multipart: {body, contentType}}`.

    A multipart body is a ReadableStream inside Workers AI, an *object* to the schema, so the
    schema sees `{}` in its place.
    """
    if isinstance(inputs, BinaryInput):
        if inputs.form is not None:
            return {"multipart": {"body": {}, "contentType": inputs.content_type}}
        return inputs.data
    return inputs


def _declares(schema: dict[str, Any], key: str) -> bool:
    branches = [schema, *[b for b in schema.get("oneOf") or [] if isinstance(b, dict)]]
    return any(key in (b.get("properties") or {}) for b in branches)


def _without_options(model: Model, instance: Any) -> Any:
    """`options` (e.g. `rejectIfBusy`) is a platform option every model accepts, not a model input:
    hide it from schemas that do not declare it (flux-1-schnell's `additionalProperties: false`)."""
    if isinstance(instance, dict) and "options" in instance and not _declares(model.input_schema, "options"):
        return {k: v for k, v in instance.items() if k != "options"}
    return instance


def _raw_audio_stream(model: Model, inputs: dict[str, Any] | BinaryInput) -> Any:
    """nova-3 style schemas take `audio: {body: <stream>, contentType}`; over REST that is the raw body."""
    if not isinstance(inputs, BinaryInput) or inputs.form is not None:
        return None
    audio = None
    for branch in [model.input_schema, *(model.input_schema.get("oneOf") or [])]:
        if isinstance(branch, dict):
            audio = (branch.get("properties") or {}).get("audio") or audio
    if isinstance(audio, dict) and "body" in (audio.get("properties") or {}):
        return {"audio": {"body": {}, "contentType": inputs.content_type}}
    return None


def validate(model: Model, inputs: dict[str, Any] | BinaryInput, quirks: dict[str, bool]) -> None:
    message = model.input_validator.message(_without_options(model, validation_instance(inputs)))
    if message is None:
        return
    stream_form = _raw_audio_stream(model, inputs)
    if stream_form is not None and model.input_validator.message(stream_form) is None:
        return
    if not message.startswith("Error: ") and not enabled(quirks, "validation-error-prefix"):
        message = "Error: " + message
    raise CFError(ErrorKind.BAD_INPUT, detail=message).from_model(model.name)
