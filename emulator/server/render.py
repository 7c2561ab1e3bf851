"""Wire rendering: the v4 envelope, raw binary bodies, native SSE streams and error bodies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from emulator.call import CallReport, EventSource, StreamEvent
from emulator.errors import CFError, Layer
from emulator.server.stamps import Stamper

JSON = "application/json"
SSE = "text/event-stream"
REQ_ID = "cf-ai-req-id"
# On a response whose body was stamped (server/stamps.py): the body with the fake's placeholders.
UNSTAMPED = "unstamped_body"
NEURONS = "cf-ai-neurons"
# Where a realtime session's WebSocket response keeps its summary for the request log (aiohttp
# responses are mappings); the control plane's log summary reads it.
SESSION_SUMMARY = "session_summary"
# On the response of a request that made a model call: the call's report (emulator/call.py), which
# the request log fills the request's entry from.
CALL_REPORT: web.ResponseKey[CallReport] = web.ResponseKey("call_report", CallReport)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


# Request ids only need to be unique, not secret: a PRNG seeded from the OS (and reseeded in each
# forked worker) gives version-4 UUID text at a fraction of uuid.uuid4()'s cost on the hot path.
_ids = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62))
_V4_SET = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    h = f"{(_ids.getrandbits(128) & _V4_CLEAR) | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None,
                  stamper: Stamper | None = None) -> web.Response:
    """`body` as JSON; with a stamper, its placeholder ids and timestamps become this call's."""
    data = dumps(body)
    if stamper is None:
        return web.Response(body=data, status=status, content_type=JSON, headers=headers)
    response = web.Response(body=stamper.stamp(data), status=status, content_type=JSON, headers=headers)
    response[UNSTAMPED] = data  # what the answer cache keeps: each later call is stamped afresh
    return response


def envelope(result: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def error_body(error: CFError, *, openai_error: bool = False, short_bodies: bool = True) -> dict[str, Any]:
    body = error.envelope(short_bodies=short_bodies)
    if openai_error and error.layer is not Layer.GATEWAY:  # the gateway shape already has its own `error`
        # Only when the `v1-errors-not-openai-shaped` quirk is off: what OpenAI SDKs look for.
        body["error"] = {
            "message": error.message,
            "type": "invalid_request_error" if error.status < 500 else "server_error",
            "code": error.code,
            "param": None,
        }
    return body


def error_response(
    error: CFError,
    *,
    request_id: str | None = None,
    openai_error: bool = False,
    extra_headers: dict[str, str] | None = None,
    short_bodies: bool = True,
) -> web.Response:
    headers: dict[str, str] = dict(extra_headers or {})
    if error.layer is Layer.MODEL and request_id:
        headers[REQ_ID] = request_id
    body = error_body(error, openai_error=openai_error, short_bodies=short_bodies)
    return reporting(json_response(body, status=error.status, headers=headers), error)


def reporting(response: web.Response, error: CFError) -> web.Response:
    """`response`, the answer to `error`, carrying the report of the model call it ended, if any."""
    if error.call is not None:
        response[CALL_REPORT] = error.call
    return response


# The streamed answer, once its headers are out: a client that leaves after that has cut an answer,
# not missed one. The request log reads its status and call report, the response never having
# come back from the handler.
STREAMED: web.RequestKey[web.StreamResponse] = web.RequestKey("streamed", web.StreamResponse)


def sse_frame(data: str) -> bytes:
    return b"data: " + data.encode() + b"\n\n"


async def stream_events(
    request: web.Request,
    events: EventSource,
    *,
    headers: dict[str, str],
    status: int = 200,
    report: CallReport | None = None,
) -> web.StreamResponse:
    """Write each event and flush it on its own, yielding to the loop between events (`report`:
    the model call's, for the request log)."""
    response = web.StreamResponse(
        status=status, headers={"Content-Type": SSE, "Cache-Control": "no-cache", **headers}
    )
    return await send_stream(request, response, events, report=report)


async def send_stream(request: web.Request, response: web.StreamResponse, events: EventSource, *,
                      report: CallReport | None = None) -> web.StreamResponse:
    """Send `response`'s headers, then its events."""
    if report is not None:
        response[CALL_REPORT] = report
    await response.prepare(request)
    request[STREAMED] = response
    await write_events(response, events)
    await response.write_eof()
    return response


async def write_events(response: web.StreamResponse, events: EventSource) -> None:
    """Write each event and flush it on its own; an async source (a relayed upstream stream, a
    fault filter closing the one it wraps) is closed even when the client hangs up mid-stream."""
    try:
        if isinstance(events, AsyncIterator):
            async for event in events:
                await _write_event(response, event)
        else:
            for event in events:
                await _write_event(response, event)
    finally:
        await close_events(events)


async def close_events(events: EventSource) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _write_event(response: web.StreamResponse, event: StreamEvent) -> None:
    # A zero-delay sleep still yields, so 64 concurrent streams interleave instead of queueing.
    await asyncio.sleep(event.delay)
    await response.write(event.raw if event.raw is not None else sse_frame(event.data))
