"""`env.AI.toMarkdown()` through the binding: the same conversions as `POST …/ai/tomarkdown`.

The binding client (cloudflare/workerd, src/cloudflare/internal/to-markdown-api.ts) posts
`{files: [{name, mimeType, data: base64}], options}` to `/to-everything/markdown/transformer` and
reads `{result: [ConversionResponse]}`; `supported()` reads `{result: [{mimeType, extension}]}` from
`/to-everything/markdown/supported`. Both are answered by emulator/server/tomarkdown.py's
`to_markdown` and emulator/markdown/formats.py, so a Worker gets the REST endpoint's answers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from emulator.call import Surface
from emulator.errors import CFError
from emulator.limits import read_body
from emulator.markdown import formats
from emulator.markdown.options import ConversionOptions
from emulator.server.render import CALL_REPORT, json_response
from emulator.server.state import ServerState
from emulator.server.tomarkdown import Document, to_markdown

PREFIX = "/to-everything/markdown"


def document(file: Any) -> Document:
    if not isinstance(file, dict):
        raise CFError("bad_input", detail="Error: each file is {name, mimeType, data}")
    try:
        data = base64.b64decode(str(file.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise CFError("invalid_base64", type="string") from None
    return Document(str(file.get("name", "")), data, str(file.get("mimeType", "")))


def options_of(body: dict[str, Any]) -> ConversionOptions:
    raw = body.get("options", body.get("conversionOptions")) or {}
    try:
        return ConversionOptions.model_validate(raw)
    except ValidationError as exc:
        raise CFError("bad_input", detail=f"Error: conversionOptions: {exc.errors()[0].get('msg')}") from None


async def handle(request: web.Request, path: str, state: ServerState, account: str,
                 request_id: str) -> web.Response:
    if path == PREFIX + "/supported":
        return _envelope(formats.supported())
    if path != PREFIX + "/transformer" or request.method != "POST":
        raise CFError("no_route")
    try:
        body = orjson.loads(await read_body(request))
    except orjson.JSONDecodeError:
        raise CFError("invalid_json", detail="toMarkdown body") from None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        raise CFError("bad_input", detail="Error: required properties at '/' are 'files'")
    converted = await to_markdown(state, account_id=account, request_id=request_id, path=request.path,
                                  documents=[document(f) for f in files], options=options_of(body))
    response = _envelope(converted.results)
    response[CALL_REPORT] = converted.report(Surface.BINDING.value, request_id)
    return response


def _envelope(result: Any) -> web.Response:
    return json_response({"result": result, "success": True, "errors": [], "messages": []})
