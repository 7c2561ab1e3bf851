"""`env.AI.toMarkdown()` through the binding: plain-text formats converted, every other file refused.

The binding client (cloudflare/workerd, src/cloudflare/internal/to-markdown-api.ts) posts
`{files: [{name, mimeType, data: base64}], options}` to `/to-everything/markdown/transformer` and
reads `{result: [ConversionResponse]}`; `supported()` reads `{result: [{mimeType, extension}]}` from
`/to-everything/markdown/supported`. Cloudflare answers a file it cannot convert with a result of
`format: "error"` rather than failing the whole request; the emulator does the same for every format
it does not convert (PDF, images, Office documents …), with its own wording.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import html
import io
import re
from typing import Any

import orjson
from aiohttp import web

from emulator.errors import CFError
from emulator.fakes.text import count_tokens
from emulator.limits import read_body
from emulator.server.render import json_response

PREFIX = "/to-everything/markdown"
SUPPORTED = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/html": "html",
    "text/csv": "csv",
    "application/json": "json",
}
TAG = re.compile(r"<[^>]+>")
DROPPED = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1>", re.S | re.I)
BLANKS = re.compile(r"\n{3,}")


def _html_to_markdown(text: str) -> str:
    text = DROPPED.sub("", text)
    text = HEADING.sub(lambda m: "\n" + "#" * int(m.group(1)) + " " + m.group(2).strip() + "\n", text)
    text = re.sub(r"<(br|/p|/div|/li)\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"<li[^>]*>", "- ", text, flags=re.I)
    return BLANKS.sub("\n\n", html.unescape(TAG.sub("", text))).strip()


def _csv_to_markdown(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def convert(mime_type: str, data: bytes) -> str | None:
    """The Markdown for a format the emulator converts, None for any other."""
    kind = mime_type.split(";")[0].strip().lower()
    if kind not in SUPPORTED:
        return None
    text = data.decode("utf-8", "replace")
    if kind == "text/html":
        return _html_to_markdown(text)
    if kind == "text/csv":
        return _csv_to_markdown(text)
    if kind == "application/json":
        return "```json\n" + text.strip() + "\n```"
    return text


def conversion(file: Any) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise CFError("bad_input", detail="Error: each file is {name, mimeType, data}")
    name, mime_type = str(file.get("name", "")), str(file.get("mimeType", ""))
    try:
        data = base64.b64decode(str(file.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise CFError("invalid_base64", type="string") from None
    file_id = hashlib.sha256(name.encode() + b"\0" + data).hexdigest()[:32]
    markdown = convert(mime_type, data)
    if markdown is None:
        return {"id": file_id, "name": name, "mimeType": mime_type, "format": "error",
                "error": f"workers-ai-emulator does not convert {mime_type or 'this file type'} to Markdown "
                         f"(it converts {', '.join(sorted(SUPPORTED))})"}
    return {"id": file_id, "name": name, "mimeType": mime_type, "format": "markdown",
            "tokens": count_tokens(markdown), "data": markdown}


async def handle(request: web.Request, path: str) -> web.Response:
    if path == PREFIX + "/supported":
        return _envelope([{"mimeType": m, "extension": e} for m, e in SUPPORTED.items()])
    if path != PREFIX + "/transformer" or request.method != "POST":
        raise CFError("no_route")
    try:
        body = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError:
        raise CFError("invalid_json", detail="toMarkdown body") from None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        raise CFError("bad_input", detail="Error: required properties at '/' are 'files'")
    return _envelope([conversion(f) for f in files])


def _envelope(result: Any) -> web.Response:
    return json_response({"result": result, "success": True, "errors": [], "messages": []})
