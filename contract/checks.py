"""Shape assertions shared by the contract checks: envelopes, errors, headers, SSE, schemas, media."""

from __future__ import annotations

import io
import itertools
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


# --- Stricter agreement with a capture (issue 20): every depth, number kinds, stamps, headers, framing ---

CF_RAY = re.compile(r"^[0-9a-f]{16}-[A-Z]{3}$")
CHAT_ID = re.compile(r"^id-\d{13}$")
TOOL_ID = re.compile(r"^(chatcmpl-tool-)([0-9a-f]+)$")
# Seconds a `created` may sit from the answer's own Date header (a stream's chunks share the call's).
CLOCK_SKEW = 300


def number_kind(value: Any) -> str:
    """`integer`, `float32` (a float32 widened to double, as whisper's timings are) or `number`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        import numpy as np

        if float(np.float32(value)) == value and len(repr(value)) > 12:
            return "float32"
        return "number"
    return type(value).__name__


def _kinds_agree(recorded: Any, actual: Any, where: str) -> None:
    want, got = number_kind(recorded), number_kind(actual)
    if want == "float32":
        # A float32 value may print short when it happens to be exact (0.5); never a plain double.
        import numpy as np

        assert isinstance(actual, (int, float)) and float(np.float32(actual)) == actual, (
            f"{where}: recorded a float32 value, got {actual!r} (not float32-representable)")
        return
    if want == "integer":
        assert got == "integer", f"{where}: recorded an integer, got {actual!r}"
        return
    if want in ("number",):
        assert got in ("number", "float32", "integer"), f"{where}: recorded a number, got {actual!r}"
        return
    assert want == got or {want, got} <= {"NoneType"}, f"{where}: recorded {want}, got {got} ({actual!r:.80})"


# Keys whose captured value is a string in one run and null in another (the gateway gpt-oss stream puts
# `finish_reason: "tool_calls"` on its stop_reason chunk, the direct one null).
NULLABLE = frozenset({"finish_reason"})


def strict_skeleton(recorded: Any, actual: Any, where: str = "$", *, extra_ok: frozenset[str] = frozenset(),
                    every_item: bool = True) -> None:
    """`actual` has exactly `recorded`'s keys in the same order at every depth, and the same number kinds.

    Text and values are free. `extra_ok` lists paths (`$.result.vtt`) where the answer may carry a key the
    capture lacks (the capture predates it). Lists compare every item against the capture's first.
    """
    if isinstance(recorded, dict):
        assert isinstance(actual, dict), f"{where}: recorded an object, got {actual!r:.80}"
        extra = [k for k in actual if k not in recorded and f"{where}.{k}" not in extra_ok]
        missing = [k for k in recorded if k not in actual]
        assert not missing and not extra, f"{where}: keys {list(actual)}, recorded {list(recorded)}"
        shared = [k for k in actual if k in recorded]
        assert shared == list(recorded), f"{where}: key order {shared}, recorded {list(recorded)}"
        for key, value in recorded.items():
            if key in NULLABLE and (value is None or actual[key] is None):
                continue
            strict_skeleton(value, actual[key], f"{where}.{key}", extra_ok=extra_ok, every_item=every_item)
    elif isinstance(recorded, list):
        assert isinstance(actual, list), f"{where}: recorded a list, got {actual!r:.80}"
        if recorded and actual:
            for i, item in enumerate(actual if every_item else actual[:1]):
                strict_skeleton(recorded[0], item, f"{where}[{i}]", extra_ok=extra_ok, every_item=every_item)
    else:
        _kinds_agree(recorded, actual, where)


def js_numbers(raw: bytes) -> None:
    """Numbers written as JavaScript writes them: an integral double has no `.0` (Cloudflare answers come
    from JavaScript workers; `1.0` is Python's spelling)."""
    text = raw.decode("utf-8", "replace")
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    bad = re.search(r"[:\[,]-?\d+\.0(?![0-9])", outside)
    assert bad is None, f"a JavaScript answer never writes {bad.group(0)[1:]!r}"


def _date(response: httpx.Response) -> float:
    from email.utils import parsedate_to_datetime

    value = response.headers.get("date")
    assert value, "no Date header"
    return parsedate_to_datetime(value).timestamp()


def stamps_agree(recorded: Any, actual: Any, response: httpx.Response, *, plausible: bool) -> None:
    """`id`, `created` and tool-call ids have the capture's formats; with `plausible`, the call's time."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        if isinstance(recorded.get("id"), str) and CHAT_ID.match(recorded["id"]):
            assert CHAT_ID.match(str(actual.get("id"))), f"id {actual.get('id')!r}"
            if plausible:
                assert abs(int(actual["id"][3:]) / 1000 - _date(response)) <= CLOCK_SKEW, (
                    f"id {actual['id']} is not the time of the call ({response.headers.get('date')})")
        if isinstance(recorded.get("created"), int):
            assert isinstance(actual.get("created"), int), f"created {actual.get('created')!r}"
            if plausible:
                assert abs(actual["created"] - _date(response)) <= CLOCK_SKEW, (
                    f"created {actual['created']} is not the call's time ({response.headers.get('date')})")
        want_tool = TOOL_ID.match(str(recorded.get("id", ""))) if "function" in recorded else None
        if want_tool:
            got_tool = TOOL_ID.match(str(actual.get("id", "")))
            assert got_tool and len(got_tool.group(2)) == len(want_tool.group(2)), (
                f"tool call id {actual.get('id')!r}, recorded {recorded['id']!r}")
        for key, value in recorded.items():
            if key in actual:
                stamps_agree(value, actual[key], response, plausible=plausible)
    elif isinstance(recorded, list) and isinstance(actual, list) and recorded:
        for item in actual:
            stamps_agree(recorded[0], item, response, plausible=plausible)


def edge_headers(response: httpx.Response) -> None:
    """Every answer from Cloudflare's edge, errors included: `Server: cloudflare` and a `cf-ray`."""
    assert response.headers.get("server") == "cloudflare", f"Server {response.headers.get('server')!r}"
    assert CF_RAY.match(response.headers.get("cf-ray", "")), f"cf-ray {response.headers.get('cf-ray')!r}"
    limits = [h for h in response.headers if h.lower().startswith("x-ratelimit")]
    assert not limits, f"Cloudflare sends no x-ratelimit-* headers: {limits}"


def answer_headers(recorded_headers: dict[str, str], response: httpx.Response, *, reached_model: bool,
                   neurons: bool = True) -> None:
    """The header set a client sees: the edge's, `cf-ai-req-id` when the model was reached, a 2-decimal
    `cf-ai-neurons` on a success, and every header the capture kept."""
    edge_headers(response)
    if reached_model:
        req_id(response)
    else:
        assert "cf-ai-req-id" not in response.headers, "an edge error carries no cf-ai-req-id"
    if response.status_code < 400 and neurons:
        neurons_header(response)
    for name in recorded_headers:
        assert name.lower() in response.headers, f"header {name} missing"


def sse_framing(text: str) -> None:
    """Byte-level SSE framing as Cloudflare writes it: `data: ` + compact JSON (or [DONE]) + a blank line,
    nothing else (no `event:`/`id:` lines, no CRLF, no comments)."""
    assert "\r" not in text, "CRLF in an SSE body"
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: ") and "\n" not in block, f"not one `data: ` line: {block[:120]!r}"
        payload = block[6:]
        if payload != "[DONE]":
            compact_json = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)
            assert payload == compact_json, f"not compact JSON as Cloudflare writes it: {payload[:120]!r}"


def signature(value: Any, ignore: frozenset[str] = frozenset()) -> Any:
    """The key structure of a JSON value (keys in order, nested; values dropped)."""
    if isinstance(value, dict):
        return tuple((k, signature(v, ignore)) for k, v in value.items() if k not in ignore)
    if isinstance(value, list):
        return ("[]", signature(value[0], ignore)) if value else ("[]",)
    return None


def collapsed(signatures: list[Any]) -> list[Any]:
    """Runs of equal signatures as one (a fake's text has its own number of token events)."""
    out: list[Any] = []
    for sig in signatures:
        if not out or out[-1] != sig:
            out.append(sig)
    return out


VTT_TIME = r"(?:\d\d:){0,2}\d\d\.\d{3}"


def vtt_agrees(result: dict[str, Any], per_cue: int = 5) -> None:
    """whisper's `vtt` as Cloudflare writes it: `WEBVTT`, cues of `per_cue` words with short times taken
    from the words (bare seconds under a minute), blank-line separated, no trailing newline."""
    vtt, words = result["vtt"], result["words"]
    assert not vtt.endswith("\n"), "Cloudflare's vtt has no trailing newline"
    blocks = vtt.split("\n\n")
    assert blocks[0] == "WEBVTT", blocks[0]
    assert len(blocks) - 1 == -(-len(words) // per_cue), f"{len(blocks) - 1} cues for {len(words)} words"
    for i, block in enumerate(blocks[1:]):
        times, text = block.split("\n")
        start, end = re.fullmatch(f"({VTT_TIME}) --> ({VTT_TIME})", times).groups()  # type: ignore[union-attr]
        cue = words[i * per_cue:(i + 1) * per_cue]
        assert text == " ".join(w["word"] for w in cue), text
        for stamp, seconds in ((start, cue[0]["start"]), (end, cue[-1]["end"])):
            *hm, s = stamp.split(":")
            value = sum(int(p) * 60 ** (len(hm) - j) for j, p in enumerate(hm)) + float(s)
            assert abs(value - seconds) < 0.0015, (stamp, seconds)
            assert (len(hm) == 0) == (seconds < 60) and (len(hm) == 2) == (seconds >= 3600), stamp


def contiguous(recorded: list[dict[str, Any]], actual: list[dict[str, Any]]) -> None:
    """When the capture's timed items are contiguous (each `end` the next `start`), the answer's are too."""
    def joined(items: list[dict[str, Any]]) -> bool:
        return all(a["end"] == b["start"] for a, b in itertools.pairwise(items))

    if len(recorded) > 1 and joined(recorded):
        assert joined(actual), "recorded words are contiguous; the answer's have gaps"
