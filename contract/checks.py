"""Shape assertions shared by the contract checks: envelopes, errors, headers, SSE, schemas, media."""

from __future__ import annotations

import io
import json
import re
from functools import cache
from typing import Any

import httpx
import jsonschema

ENVELOPE_KEYS = ["result", "success", "errors", "messages"]
NEURONS = re.compile(r"^\d+\.\d{2}$")
UUIDISH = re.compile(r"^[0-9A-Za-z-]{8,}$")


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def describe(response: httpx.Response) -> str:
    body = response.content[:400]
    return f"HTTP {response.status_code} {media_type(response)} {body!r}"


def envelope(response: httpx.Response, status: int = 200) -> Any:
    """A native success: HTTP `status`, JSON, keys result/success/errors/messages in order; returns result."""
    assert response.status_code == status, describe(response)
    assert media_type(response) == "application/json", describe(response)
    body = response.json()
    assert list(body) == ENVELOPE_KEYS, f"envelope keys {list(body)}"
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    return body["result"]


def cf_error(
    response: httpx.Response, status: int, code: int, message: str | re.Pattern[str] | None = None
) -> dict[str, Any]:
    """A Cloudflare error body: the status, success false, one error with `code` (and the exact wording)."""
    assert response.status_code == status, describe(response)
    assert media_type(response) == "application/json", describe(response)
    body = response.json()
    assert body.get("success") is False, body
    errors = body["errors"]
    assert isinstance(errors, list) and errors, body
    assert errors[0]["code"] == code, body
    if isinstance(message, str):
        assert errors[0]["message"] == message, errors[0]["message"]
    elif message is not None:
        assert message.search(errors[0]["message"]), errors[0]["message"]
    return dict(body)


def model_error_keys(body: dict[str, Any]) -> None:
    """Model-layer errors (5006/5007) lead with `errors` and, when present, carry `result: {}`."""
    assert next(iter(body)) == "errors", list(body)
    if "result" in body:
        assert body["result"] == {}, body


def edge_error_keys(body: dict[str, Any]) -> None:
    """Edge errors (auth, routing) use the v4 order result/success/errors/messages with result null."""
    assert list(body) == ENVELOPE_KEYS, list(body)
    assert body["result"] is None


def req_id(response: httpx.Response) -> str:
    value = response.headers.get("cf-ai-req-id")
    assert value and UUIDISH.match(value), f"cf-ai-req-id {value!r}"
    return value


def neurons_header(response: httpx.Response, *, required: bool = True) -> float | None:
    """`cf-ai-neurons` is a 2-decimal string when present."""
    value = response.headers.get("cf-ai-neurons")
    if value is None:
        assert not required, "cf-ai-neurons missing"
        return None
    assert NEURONS.match(value), f"cf-ai-neurons {value!r} is not a 2-decimal number"
    return float(value)


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body; every event is `data: ...` closed by a blank line."""
    assert text.endswith("\n\n"), f"SSE body must end with a blank line: {text[-80:]!r}"
    events = [block for block in text.replace("\r\n", "\n").split("\n\n") if block]
    for block in events:
        assert block.startswith("data:"), f"not a data event: {block[:120]!r}"
    return [block[5:].lstrip(" ") for block in events]


def sse_json(payloads: list[str]) -> list[dict[str, Any]]:
    """Parse every payload but a final [DONE]; [DONE] must be last if present."""
    out: list[dict[str, Any]] = []
    for i, payload in enumerate(payloads):
        if payload == "[DONE]":
            assert i == len(payloads) - 1, "[DONE] must be the last event"
            continue
        out.append(json.loads(payload))
    return out


@cache
def catalog() -> Any:
    from emulator.catalog import load_catalog

    return load_catalog()


def output_schema(model: str) -> dict[str, Any] | None:
    entry = catalog().get(model)
    schema = entry.output_schema if entry is not None else None
    return schema or None


def _sync_json(schema: Any) -> Any:
    """The schema for a synchronous JSON answer: async-queue, binary and stream branches dropped.

    Cloudflare's published output schemas use `oneOf` loosely (an async `{request_id}` branch with no required
    keys matches every object), so alternatives are read as `anyOf`.
    """
    if isinstance(schema, list):
        return [_sync_json(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("oneOf", "anyOf"):
            branches = [b for b in value if not _skip_branch(b)]
            out["anyOf"] = _sync_json(branches or value)
        else:
            out[key] = _sync_json(value)
    return out


def _skip_branch(branch: Any) -> bool:
    if not isinstance(branch, dict):
        return False
    if branch.get("format") == "binary" or branch.get("contentType") in ("text/event-stream", "audio/mpeg"):
        return True
    props = branch.get("properties", {})
    return branch.get("title") == "Async response" or (set(props) == {"request_id"})


def valid_output(model: str, result: Any) -> None:
    """The catalog's output schema (Cloudflare's published one) accepts `result`; jsonschema is the oracle."""
    schema = output_schema(model)
    assert schema is not None, f"{model}: no output schema in the catalog"
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(_sync_json(schema)).iter_errors(result)
    )
    assert error is None, (
        f"{model}: output fails its schema at {list(error.absolute_path)}: {error.message[:300]}"
    )


def png(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == "PNG"
        return img.size


def jpeg(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data[:3] == b"\xff\xd8\xff", data[:16]
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == "JPEG"
        return img.size


def image_any(data: bytes) -> tuple[int, int]:
    return png(data) if data[:4] == b"\x89PNG" else jpeg(data)


def mp3_seconds(data: bytes) -> float:
    from mutagen.mp3 import MP3

    audio = MP3(io.BytesIO(data))
    assert audio.info.length > 0
    return float(audio.info.length)


def skeleton_agrees(recorded: Any, actual: Any, where: str = "$", depth: int = 5) -> None:
    """`actual` has every key of `recorded` (same JSON kind, same relative key order), recursively.

    Text and numbers are free (fakes differ from real text); only the shape is compared. Lists compare
    their first items.
    """

    def kind(v: Any) -> str:
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, (int, float)):
            return "number"
        return type(v).__name__

    assert kind(recorded) == kind(actual), (
        f"{where}: recorded {kind(recorded)}, got {kind(actual)} ({actual!r:.80})"
    )
    if depth == 0:
        return
    if isinstance(recorded, dict):
        missing = [k for k in recorded if k not in actual]
        assert not missing, f"{where}: keys {missing} missing (got {list(actual)})"
        shared = [k for k in actual if k in recorded]
        assert shared == list(recorded), f"{where}: key order {shared}, recorded {list(recorded)}"
        for key, value in recorded.items():
            skeleton_agrees(value, actual[key], f"{where}.{key}", depth - 1)
    elif isinstance(recorded, list) and recorded and actual:
        skeleton_agrees(recorded[0], actual[0], f"{where}[0]", depth - 1)
