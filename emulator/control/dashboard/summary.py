"""A small summary of each logged response (text, error envelope, image thumbnail, audio length)."""

from __future__ import annotations

import base64
import binascii
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from emulator.server.render import SESSION_SUMMARY

TEXT_LIMIT = 600
JSON_LIMIT = 300
# Bodies larger than this are described by size only: parsing them would slow the answer.
PARSE_LIMIT = 8 * 1024 * 1024
INLINE_PARSE = 64 * 1024  # parsing this much costs well under a millisecond
THUMBNAIL_PX = 128

# MPEG audio layer III bitrates (kbit/s) by version, and sample rates (Hz).
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_TEXT_KEYS = ("response", "text", "translated_text", "summary", "description", "output_text")


def summarize_response(response: web.StreamResponse) -> dict[str, Any]:
    """What the dashboard's detail view shows about an answer; cheap, and bounded in size."""
    if isinstance(response, web.WebSocketResponse):  # a realtime session (server/realtime.py)
        return {"kind": "websocket", **response.get(SESSION_SUMMARY, {})}
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return {"kind": "stream", "content_type": response.content_type}
    return summarize_body(response.content_type, body)


def summarize_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The summary of an answer's bytes. Image thumbnails and big JSON answers are summarised only
    when the log is read (`complete`), so a model call never pays for them."""
    try:
        return _summarize(content_type, body)
    # An odd body (a replayed one, say) must never break the log.
    except Exception as exc:
        return {"kind": "unknown", "content_type": content_type, "note": type(exc).__name__}


def _summarize(content_type: str, body: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "bytes", "content_type": content_type, "bytes": len(body)}
    if content_type.startswith("image/"):
        out["kind"] = "image"
        _thumbnail_later(out, body)
    elif content_type.startswith("audio/"):
        out["kind"] = "audio"
        out["audio_seconds"] = mp3_seconds(body)
    elif "json" in content_type and len(body) <= PARSE_LIMIT:
        out["kind"] = "json"
        if len(body) <= INLINE_PARSE:
            _parse_into(out, body)
        else:  # a base64 image or a batch of vectors: parsed only if someone looks
            _later(out, _parse_into, body)
    return out


def _parse_into(out: dict[str, Any], body: bytes) -> None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        out["kind"] = "bytes"
        return
    _from_json(parsed, out)


def _from_json(body: Any, out: dict[str, Any]) -> None:
    if isinstance(body, dict):
        errors = body.get("errors") or ([body["error"]] if isinstance(body.get("error"), dict) else None)
        errors = errors if isinstance(errors, list) else None
        if body.get("success") is False or (errors and "result" not in body):
            out["kind"] = "error"
            out["errors"] = [
                {"code": e.get("code"), "message": str(e.get("message", ""))[:TEXT_LIMIT]}
                for e in (errors or [])[:5]
                if isinstance(e, dict)
            ]
            return
    result = body.get("result", body) if isinstance(body, dict) else body
    text = _text_of(body if isinstance(body, dict) and "choices" in body else result)
    if text is not None:
        out["text"] = text[:TEXT_LIMIT]
        out["truncated"] = len(text) > TEXT_LIMIT
    if isinstance(result, dict):
        image, audio = result.get("image"), result.get("audio")
        if isinstance(image, str):
            raw = _b64(image)
            if raw is not None:
                out["kind"] = "image"
                _thumbnail_later(out, raw)
        if isinstance(audio, str):
            raw = _b64(audio)
            if raw is not None:
                out["kind"] = "audio"
                out["audio_seconds"] = mp3_seconds(raw)
        vectors = result.get("data")
        if isinstance(vectors, list) and vectors and isinstance(vectors[0], (list, dict)):
            first = vectors[0].get("embedding") if isinstance(vectors[0], dict) else vectors[0]
            if isinstance(first, list):
                out["vectors"] = [len(vectors), len(first)]
    if "text" not in out and "vectors" not in out and out["kind"] == "json":
        out["json"] = orjson.dumps(result)[:JSON_LIMIT].decode("utf-8", "replace")


def _text_of(result: Any) -> str | None:
    if isinstance(result, dict):
        for key in _TEXT_KEYS:
            if isinstance(result.get(key), str):
                return str(result[key])
        choices = result.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                return content
            if isinstance(choices[0].get("text"), str):
                return str(choices[0]["text"])
        output = result.get("output")
        if isinstance(output, list):  # the Responses API: output items hold content parts
            parts = [
                str(part["text"])
                for item in output
                if isinstance(item, dict)
                for part in item.get("content") or []
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
            if parts:
                return "".join(parts)
    if isinstance(result, list) and result and all(isinstance(r, dict) and "label" in r for r in result):
        return ", ".join(f"{r['label']} ({r.get('score', 0):.2f})" for r in result[:5])
    return None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def mp3_seconds(data: bytes) -> float | None:
    """Duration of an MPEG layer III stream, by walking its frame headers; None if it is not one."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9]
        pos = 10 + size
    samples, rate, frames = 0, 0, 0
    while pos + 4 <= len(data):
        b1, b2 = data[pos + 1], data[pos + 2]
        if data[pos] != 0xFF or b1 & 0xE0 != 0xE0 or (b1 >> 1) & 3 != 1:  # sync + layer III
            if frames:
                break
            pos += 1  # before the first frame: look for it
            continue
        version = (b1 >> 3) & 3
        bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
        if version == 1 or rate_index == 3 or bitrate_index in (0, 15):
            if frames:
                break
            pos += 1
            continue
        kbps = (_BITRATES_V1 if version == 3 else _BITRATES_V2)[bitrate_index]
        rate = _RATES[version][rate_index]
        per_frame = 1152 if version == 3 else 576
        length = (per_frame // 8) * kbps * 1000 // rate + padding
        samples += per_frame
        frames += 1
        pos += length
    return round(samples / rate, 3) if frames and rate else None


def _thumbnail_later(out: dict[str, Any], data: bytes) -> None:
    _later(out, _fill_thumbnail, data)


def _fill_thumbnail(out: dict[str, Any], data: bytes) -> None:
    out["thumbnail"] = thumbnail(data)


# Summaries that cost real work (a thumbnail, parsing a big JSON answer) are made only when someone
# looks (the request log's JSON, the dashboard): doing them for every answer, even off the event
# loop, kept a core busy long after a burst of image calls. Only the latest few are kept to finish.
PENDING_KEEP = 32
PENDING_BYTES = 32 * 1024 * 1024
Fill = Callable[[dict[str, Any], bytes], None]
_pending: OrderedDict[int, tuple[dict[str, Any], Fill, bytes]] = OrderedDict()
_pending_lock = threading.Lock()


def _later(out: dict[str, Any], fill: Callable[[dict[str, Any], bytes], None], data: bytes) -> None:
    """Keep `data` so `complete(out)` can fill the summary in when it is read."""
    out["pending"] = True
    with _pending_lock:
        _pending[id(out)] = (out, fill, data)
        while len(_pending) > PENDING_KEEP or sum(len(d) for _, _, d in _pending.values()) > PENDING_BYTES:
            _, (dropped, _, _) = _pending.popitem(last=False)
            dropped.pop("pending", None)
            dropped["note"] = "detail not kept (older than the latest answers)"


def complete(out: dict[str, Any] | None) -> dict[str, Any] | None:
    """The summary with any deferred part (thumbnail, parsed JSON) filled in now."""
    if out is None or not out.get("pending"):
        return out
    with _pending_lock:
        job = _pending.pop(id(out), None)
    out.pop("pending", None)
    if job is not None and job[0] is out:
        _, fill, data = job
        try:
            fill(out, data)
        except Exception as exc:  # a summary must never break the log
            out["note"] = type(exc).__name__
    return out


def thumbnail(data: bytes) -> str | None:
    """A small JPEG data: URI of an image, or None if Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # JPEG: decode at reduced size
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            small = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
