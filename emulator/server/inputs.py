"""Reading a request body into model inputs (JSON, raw bytes or multipart) and validating them."""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any

import ijson  # type: ignore[import-untyped]
import orjson
from aiohttp import web

from emulator.call import BinaryInput
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.gil import LoopTurns
from emulator.limits import (
    INCREMENTAL_JSON_BYTES,
    INCREMENTAL_JSON_BYTES_PER_VALUE,
    JSON_CHUNK_BYTES,
    LOOP_SLICE_SECONDS,
    MAX_JSON_DEPTH,
    check_depth,
    free_in_slices,
    off_loop,
    too_deep,
)
from emulator.quirks import enabled
from emulator.server.dense_json import Unsplittable, parse_dense

JSON_TYPES = ("application/json", "text/json", "application/x-ndjson")
LOOSE_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream")


def is_json_type(content_type: str) -> bool:
    return content_type in JSON_TYPES or content_type.endswith("+json")


def parse_json(raw: bytes) -> Any:
    value = _loads(raw)
    # Nesting needs an opening bracket a level: a body with no more of them than the limit allows
    # (every ordinary request) cannot be too deep, and two byte counts cost less than the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        check_depth(value)
    return value


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CFError(ErrorKind.INVALID_JSON, detail=str(exc).split(":", 1)[0]) from None


async def parse_json_body(raw: bytes, *, utf8_at: tuple[str, ...] | None = None) -> Any:
    """`parse_json` that never holds the event loop for long: a body of INCREMENTAL_JSON_BYTES or
    more is fed to a push parser (ijson, yajl2_c) in JSON_CHUNK_BYTES pieces, yielding to the loop
    every LOOP_SLICE_SECONDS. orjson stays the parser of every smaller body, and the judge of every
    body the push parser refuses, so errors read the same whatever the size. A large body is freed
    in slices too, once its request is done with it (`limits.free_in_slices`). `utf8_at`: the keys
    of a long string that dense_json, when it reads the body, gives as its UTF-8 bytes (a str
    otherwise)."""
    if len(raw) < INCREMENTAL_JSON_BYTES:
        return parse_json(raw)
    value = await _parse_large_body(raw, utf8_at)
    free_in_slices(value)
    return value


async def _parse_large_body(raw: bytes, utf8_at: tuple[str, ...] | None) -> Any:
    if _values(raw) * INCREMENTAL_JSON_BYTES_PER_VALUE > len(raw) or _holds_long_string(raw):
        return await _parse_dense_body(raw, utf8_at)
    try:
        value = await _parse_in_slices(raw)
    except ijson.JSONError:
        await _judge_whole(raw)
        # Valid JSON the push parser cannot take (integers past 64 bits): orjson, on the loop.
        return _loads(raw)
    await off_loop(len(raw), check_depth, value)
    return value


async def _parse_dense_body(raw: bytes, utf8_at: tuple[str, ...] | None) -> Any:
    """A large body of many small values, where orjson is 10-15x faster than the push parser but
    holds the loop 60-600 ms for 20 MB: parsed by orjson a piece at a time (dense_json). A body that
    cannot be read that way is judged whole in a child process (orjson's error, or too deep); one
    that passes is parsed by orjson in one go."""
    try:
        return await parse_dense(raw, utf8_at=utf8_at)
    except Unsplittable:
        await _judge_whole(raw)
    return _loads(raw)  # valid, within the depth limit, in a shape the pieces do not follow


def _values(raw: bytes, windows: int = 16, width: int = 64 * 1024) -> int:
    """Roughly how many values a JSON text holds, from `windows` samples spread over it and scaled up
    (scanning all 20 MB would hold the loop ~20 ms on a busy machine): half its quotes (strings and
    keys) plus its commas weighted by the share of digits (arrays of numbers; commas inside prose,
    where digits are rare, are not values)."""
    step = max(len(raw) // windows, width)
    estimate = 0.0
    seen = 0
    for start in range(0, len(raw), step):
        window = raw[start:start + width]
        digits = len(window) - len(window.translate(None, b"0123456789"))
        estimate += window.count(b'"') / 2 + window.count(b",") * digits / max(len(window), 1)
        seen += len(window)
    return int(estimate * len(raw) / max(seen, 1)) + 1


def _holds_long_string(raw: bytes, windows: int = 16, width: int = 64 * 1024) -> bool:
    """Whether one of `windows` samples spread over the body holds no quote: it lies inside a string
    of `width` bytes or more (an image or audio as base64). The push parser copies the part of a
    string it has read on every chunk it is fed, so a 27 MB string took it 16 s of 14-30 ms steps;
    dense_json reads such a string a piece at a time."""
    step = max(len(raw) // windows, width)
    return any(raw.find(b'"', start, start + width) < 0 for start in range(0, len(raw) - width + 1, step))


class _Document:
    """Receives the one top-level value an ijson `items_coro` with prefix "" builds."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def send(self, value: Any) -> None:
        self.values.append(value)


async def _parse_in_slices(raw: bytes) -> Any:
    document = _Document()
    parser = ijson.items_coro(document, "", use_float=True)
    view = memoryview(raw)
    turns = LoopTurns(LOOP_SLICE_SECONDS)
    for offset in range(0, len(raw), JSON_CHUNK_BYTES):
        parser.send(bytes(view[offset:offset + JSON_CHUNK_BYTES]))
        await turns.tick()
    parser.close()
    return document.values[0]


# Runs in a child process: prints orjson's complaint about stdin, `deep` when it is valid JSON nested
# deeper than argv[1] levels (counted as limits.json_depth counts them), or nothing.
_ORJSON_VERDICT = """
import sys, orjson
try:
    value = orjson.loads(sys.stdin.buffer.read())
except orjson.JSONDecodeError as exc:
    sys.stdout.write("error " + str(exc))
    sys.exit()
limit, stack = int(sys.argv[1]), [(value, 1)]
while stack:
    node, depth = stack.pop()
    if depth > limit:
        sys.stdout.write("deep")
        break
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
"""


# At most this many verdict processes at once per event loop: many large invalid bodies queue.
MAX_VERDICT_PROCESSES = 2
_VERDICT_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


async def _judge_whole(raw: bytes) -> None:
    """Raise what `parse_json(raw)` raises, if anything, without parsing on the loop: orjson's error
    kind (5006) or too_deep, as a child process finds them."""
    slots = _VERDICT_SLOTS.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(MAX_VERDICT_PROCESSES))
    async with slots:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ORJSON_VERDICT, str(MAX_JSON_DEPTH), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await child.communicate(raw)
    message = out.decode("utf-8", "replace")
    if message == "deep":
        raise too_deep()
    if message:
        detail = message.removeprefix("error ").split(":", 1)[0]
        raise CFError(ErrorKind.INVALID_JSON, detail=detail)


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
        value = await parse_json_body(raw)
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


def _without_options(model: Model, instance: Any) -> Any:
    """`options` (e.g. `rejectIfBusy`) is a platform option every model accepts, not a model input:
    hide it from schemas that do not declare it (flux-1-schnell's `additionalProperties: false`)."""
    if isinstance(instance, dict) and "options" in instance and "options" not in model.input_properties:
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
