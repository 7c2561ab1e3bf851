"""Resource bounds no request can exceed: JSON nesting, image pixels, audio length, batch size, output tokens.

Catalog schemas bound most inputs, but not all (FLUX.2 multipart `width`/`height`, embeddinggemma's
unbounded `text` array, a WAV header claiming days of audio), and the fakes do work proportional to
these numbers. The checks here run before a fake does (`check_call`, from the mock backend) or while
a body is parsed (`check_depth`), and answer with Cloudflare-shaped 4xx errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import orjson
from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import BadHttpMethod, ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from emulator.call import Call
from emulator.errors import CFError, ErrorKind
from emulator.gil import LoopTurns

# Deeper JSON is refused at parse time: orjson parses up to 1024 levels but serialises only 254, and
# the validator and request fingerprinting recurse once per level.
MAX_JSON_DEPTH = 128
# A JSON body this large is parsed in slices, yielding to the event loop between them: orjson holds
# the GIL (a thread would not help) and takes ~3 ms per MB on this project's machines, more under load.
INCREMENTAL_JSON_BYTES = 1 << 20
# One push-parser feed. yajl re-reads a string that spans feeds, so larger feeds are cheaper for
# long strings: 64 KiB costs ~1 ms, rarely 10 ms, under load.
JSON_CHUNK_BYTES = 64 * 1024
# yajl builds numbers and small strings ~20 times slower than orjson (10 s for 5 million numbers):
# a body averaging fewer bytes than this per value is parsed by orjson in one go.
INCREMENTAL_JSON_BYTES_PER_VALUE = 1024
LOOP_SLICE_SECONDS = 0.003  # how long one request may keep the loop before letting others run
MAX_IMAGE_PIXELS = 2048 * 2048
# Models whose schema allows larger pictures keep their own bound.
MODEL_MAX_PIXELS = {"@cf/leonardo/lucid-origin": 2500 * 2500}
MAX_AUDIO_SECONDS = 2 * 3600.0
# Cloudflare's bge models accept 100 texts per call; models whose schema sets no bound get the same.
MAX_BATCH_ITEMS = 100
# Generated text never exceeds this many tokens, whatever `max_tokens` asked for.
MAX_OUTPUT_TOKENS = 8192
# The longest delay an injected fault may add to a call or to each streamed event (`latency_ms`, its
# distribution's bounds, mean and deviation, `delay_ms`): ten minutes, five times the upstream timeout.
# A client waiting longer is a hung test, not a slow model.
MAX_FAULT_DELAY_MS = 600_000.0
# An integer written by a client (a request id, `limit`, a multipart field) longer than this is not
# read: int() refuses 4,300 digits with a ValueError, and no count the emulator keeps comes near 10**18.
MAX_NUMBER_DIGITS = 18


def is_number_text(text: str) -> bool:
    """Whether `text` is a whole number int() reads: ASCII digits only ("²" and "١" are digits to
    str.isdigit), at most MAX_NUMBER_DIGITS of them."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_NUMBER_DIGITS

log = logging.getLogger("workers_ai_emulator.http")


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def off_loop(body_bytes: int, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`work(*args)` for a call whose body is `body_bytes` long: inline for ordinary bodies, on a
    worker thread from INCREMENTAL_JSON_BYTES up. Work that grows with the body (the depth walk, schema
    validation, a fake reading five million image bytes) is Python code, which hands the GIL back every
    `sys.getswitchinterval()` (5 ms), so on a thread it leaves the loop free to answer others."""
    if body_bytes < INCREMENTAL_JSON_BYTES:
        return work(*args, **kwargs)
    return await asyncio.to_thread(work, *args, **kwargs)


# A large parsed body freed in one step holds the loop for as long: 5 million integers (each its own
# object) take 70-80 ms. `free_in_slices` keeps such a body until nothing else refers to it, then
# takes its lists and objects apart this many items at a time, yielding between slices.
FREE_SLICE_ITEMS = 16_384
# How often the kept bodies are checked for other holders; a round that frees nothing doubles the
# wait, up to HELD_POLL_SECONDS (a part another holder keeps for long costs a check a second).
FREE_POLL_SECONDS = 0.02
HELD_POLL_SECONDS = 1.0
_SCALAR_TYPES = frozenset({int, float, str, bool, type(None)})


class _Releaser:
    """The large bodies of one event loop, kept until this is the last reference to them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.kept: list[Any] = []
        self.task: asyncio.Task[None] | None = None
        self.wait = FREE_POLL_SECONDS

    def keep(self, value: Any) -> None:
        self.kept.append(value)
        self.wait = FREE_POLL_SECONDS
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        kept = self.kept
        while kept:
            await asyncio.sleep(self.wait)
            freed = False
            turns = LoopTurns(LOOP_SLICE_SECONDS)  # one pacer for the round: it may free 3,250 rows
            for i in range(len(kept) - 1, -1, -1):
                if sys.getrefcount(kept[i]) <= 2:  # the slot in `kept` and getrefcount's argument
                    await _take_apart([kept.pop(i)], kept, turns)
                    freed = True
            if not freed:
                self.wait = min(self.wait * 2, HELD_POLL_SECONDS)


_RELEASERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Releaser] = weakref.WeakKeyDictionary()
_RELEASERS_LOCK = threading.Lock()


def free_in_slices(value: Any) -> None:
    """Let the running loop free `value` (a parsed body) a slice at a time once its callers are done
    with it, instead of in one step wherever its last reference happens to go."""
    if type(value) not in (list, dict):
        return
    loop = asyncio.get_running_loop()
    with _RELEASERS_LOCK:
        releaser = _RELEASERS.get(loop)
        if releaser is None:
            releaser = _RELEASERS[loop] = _Releaser(loop)
    releaser.keep(value)


async def _take_apart(stack: list[Any], held: list[Any], turns: LoopTurns) -> None:
    """Empty each list and dict on `stack` that nothing else refers to, FREE_SLICE_ITEMS at a time,
    nested ones after their parent. A part another holder still has (the result a route picked out
    of the body, the rows a redacted copy shares) goes to `held`, the releaser's list, to be taken
    apart once that holder lets go: its last reference would otherwise free it in one step (3,250
    rows of 1,024 floats: 55-135 ms). `turns` paces the work on the loop."""
    while stack:
        node = stack.pop()
        if sys.getrefcount(node) > 2:  # `node` and getrefcount's argument: someone else holds it
            held.append(node)
            continue
        while node:
            if type(node) is list:
                items = node[-FREE_SLICE_ITEMS:]
                del node[-FREE_SLICE_ITEMS:]
                if not _SCALAR_TYPES.issuperset(map(type, items)):
                    stack.extend(item for item in items if type(item) in (list, dict))
                del items  # the slice's numbers and strings are freed here
            else:
                for _ in range(min(len(node), FREE_SLICE_ITEMS)):
                    item = node.popitem()[1]
                    if type(item) in (list, dict):
                        stack.append(item)
                del item
            await turns.tick()
        del node


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, walked iteratively; stops counting once past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def too_deep() -> CFError:
    detail = f"Error: request body is nested deeper than {MAX_JSON_DEPTH} levels"
    return CFError(ErrorKind.BAD_INPUT, detail=detail)


def check_depth(value: Any) -> None:
    if isinstance(value, (dict, list)) and json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep()


def output_tokens(requested: int) -> int:
    return max(0, min(requested, MAX_OUTPUT_TOKENS))


def _int_field(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return int(value)
    if isinstance(value, str) and is_number_text(value.strip()):  # multipart fields arrive as strings
        return int(value.strip())
    return None


def _fields(call: Call) -> dict[str, Any]:
    binary = call.binary
    if binary is not None and binary.form is not None:
        return binary.form
    return call.json_inputs


def check_image(call: Call) -> None:
    fields = _fields(call)
    width, height = _int_field(fields.get("width")), _int_field(fields.get("height"))
    if width is None and height is None:
        return
    limit = MODEL_MAX_PIXELS.get(call.model.name, MAX_IMAGE_PIXELS)
    # A missing side takes the other's value: the most a default could be.
    w, h = width if width is not None else height or 0, height if height is not None else width or 0
    if w * h > limit:
        raise CFError(
            ErrorKind.BAD_INPUT,
            detail=f"Error: image of {w}x{h} pixels exceeds the maximum of {limit} pixels"
        )


def check_audio(call: Call) -> None:
    # Imported here: the audio fakes pull in numpy, which the other checks do not need.
    from emulator.fakes import audio
    from emulator.tasks.speech_recognition import audio_bytes

    data, content_type = audio_bytes(call)
    if not data:
        return
    try:
        seconds = audio.duration_seconds(data, content_type)
    except audio.NotAudio:
        return  # the fake answers that with its own 5006
    if seconds > MAX_AUDIO_SECONDS:
        raise CFError(
            ErrorKind.BAD_INPUT,
            detail=f"Error: audio is {seconds:.0f} seconds long; the maximum is "
            f"{MAX_AUDIO_SECONDS:.0f} seconds",
        )


def check_batch(call: Call) -> None:
    for key, value in call.json_inputs.items():
        if isinstance(value, list) and len(value) > MAX_BATCH_ITEMS:
            raise CFError(
                ErrorKind.BAD_INPUT,
                detail=f"Error: maxItems at '/{key}' not met, {len(value)} > {MAX_BATCH_ITEMS}"
            )
    check_input_tokens(call)


# Where embedding models take their texts (the first of these a body has is embedded).
EMBEDDING_INPUT_KEYS = ("text", "documents", "queries", "input")


def max_input_tokens(call: Call) -> int | None:
    """The most tokens one text may have: the catalog's `max_input_tokens` (bge-*-en: 512), else its
    `context_window` (bge-m3: 60,000); None when the catalog states neither."""
    for key in ("max_input_tokens", "context_window"):
        value = str(call.model.prop(key) or "")
        if value.isdigit():
            return int(value)
    return None


def check_input_tokens(call: Call) -> None:
    """Refuse a text longer than the model takes (tokens by the emulator's rule, fakes/text.py), as
    the catalog's limits say; `truncate_inputs: true` (bge-m3) asks for cutting instead, which the
    embeddings fake does. Checked before any vector is computed, so the work stays bounded."""
    from emulator.fakes.text import count_tokens

    limit = max_input_tokens(call)
    inputs = call.json_inputs
    if limit is None or inputs.get("truncate_inputs") is True:
        return
    for key in EMBEDDING_INPUT_KEYS:
        value = inputs.get(key)
        texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for i, text in enumerate(texts):
            if isinstance(text, str) and count_tokens(text) > limit:
                where = f"/{key}" if isinstance(value, str) else f"/{key}/{i}"
                raise CFError(
                    ErrorKind.BAD_INPUT,
                    detail=f"Error: the text at '{where}' is {count_tokens(text)} "
                           f"tokens; {call.model.name} takes at most {limit} tokens per input")


CHECKS = {
    "Text-to-Image": check_image,
    "Automatic Speech Recognition": check_audio,
    "Text Embeddings": check_batch,
}


def check_call(call: Call) -> None:
    """Refuse a call whose fake would need unbounded memory or CPU."""
    check = CHECKS.get(call.model.task.name)
    if check is not None:
        check(call)


# The most neurons one call may be charged. The dearest real calls measured are a few thousand
# (lucid-origin 3,904.69, flux-2-klein-9b 1,363.64); a figure above this bound, like a negative or
# non-finite one, is not a cost but a broken upstream or a hand-edited cassette.
MAX_CALL_NEURONS = 1_000_000.0


# A number as JSON writes it. float() reads more: "1_0" (10), "+5", ".5", "١٢" (Arabic-Indic 12), "infinity".
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def parse_neurons(value: object) -> float | None:
    """A neuron figure from outside (the `cf-ai-neurons` header, a cassette's `neurons`): a finite
    number from 0 to MAX_CALL_NEURONS, written as a JSON number when it is text, or None when absent
    or anything else (NaN, -1e308, "1e999", "1_0")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip(" \t")  # the optional whitespace around an HTTP header value
        if len(text) > 32 or not JSON_NUMBER.fullmatch(text):
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= MAX_CALL_NEURONS else None


# Server-side connection bounds. aiohttp's default keep-alive is an hour and it has no body timeout,
# so a client that opens connections and sends nothing, or trickles a body, would hold them forever.
KEEPALIVE_TIMEOUT = 75.0  # idle connections (before the first request too) are closed after this
BODY_READ_TIMEOUT = 60.0  # a request body must arrive within this many seconds (else 408 / 3007)
SHUTDOWN_TIMEOUT = 5.0
BODY_TIMED_OUT: web.RequestKey[bool] = web.RequestKey("workers_ai_emulator.body_timed_out", bool)
# The bytes `read_body` returned, kept on the request.
BODY: web.RequestKey[bytes] = web.RequestKey("workers_ai_emulator.body", bytes)
# Why the body was refused (it failed its Content-Encoding or framing), so a second read answers the
# same without logging it again.
BODY_REFUSED: web.RequestKey[str] = web.RequestKey("workers_ai_emulator.body_refused", str)


def runner_for(app: web.Application, **overrides: Any) -> web.AppRunner:
    """The AppRunner the serve path uses: handlers are cancelled when their client goes away (an
    aborted stream stops generating), idle connections time out, no access log is written (it
    would carry account ids in paths), and requests aiohttp's own HTTP parser refuses get a
    Cloudflare-shaped error."""
    options: dict[str, Any] = {"access_log": None, "handle_signals": False, "handler_cancellation": True,
                               "keepalive_timeout": KEEPALIVE_TIMEOUT, "shutdown_timeout": SHUTDOWN_TIMEOUT}
    options.update(overrides)
    return _Runner(app, **options)


def edge_error_response(error: CFError) -> web.Response:
    """`error` as a JSON response, for the places that answer before any route's error handling runs
    (connection-level errors, `Expect: 100-continue`)."""
    return web.Response(body=orjson.dumps(error.envelope()), status=error.status,
                        content_type="application/json")


async def expect_within_limit(request: web.Request) -> web.StreamResponse | None:
    """The `Expect: 100-continue` handler of routes without their own body limit: a body announced
    larger than the app's `client_max_size` gets its 413 (3006) instead of an invitation to send it;
    anything else gets `100 Continue`. Other Expect values are ignored."""
    length = request.content_length
    if length is not None and request.client_max_size and length > request.client_max_size:
        return edge_error_response(CFError(ErrorKind.TOO_LARGE))
    await send_continue(request)
    return None


async def send_continue(request: web.Request) -> None:
    """`100 Continue`, when an HTTP/1.1 request asked for it."""
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after the interim line


def parser_error(status: int, message: str | None, exc: BaseException | None = None) -> CFError:
    """The Cloudflare-shaped error for a request aiohttp could not parse or handle (bad header lines,
    bad chunked framing, an unknown Content-Encoding …): 413 stays a 413, any other 4xx is
    `malformed_http` naming the fault (first line, printable ASCII, 120 characters at most), and
    anything else is a server error."""
    if status == 413:
        return CFError(ErrorKind.TOO_LARGE)
    if not 400 <= status < 500:
        return CFError(ErrorKind.SERVER_ERROR)
    if isinstance(exc, ContentEncodingError):  # aiohttp's own wording tells the operator to install Brotli
        return CFError(ErrorKind.MALFORMED_HTTP, detail="the body's Content-Encoding is not supported")
    first = message.strip().splitlines()[0] if message and message.strip() else "malformed request"
    first = first.split(": b'", 1)[0].split(': b"', 1)[0].rstrip(" :")  # not the client's bytes back
    detail = "".join(c if " " <= c <= "~" else "?" for c in first)[:120]
    return CFError(ErrorKind.MALFORMED_HTTP, detail=detail)


# Sets the headers every answer of the app carries (the server's edge headers, `server/edge.py`) on
# a response made outside the app's handlers: aiohttp's own error answers run no app signal.
ANSWER_HEADERS: web.AppKey[Callable[[web.StreamResponse], None]] = web.AppKey(
    "workers_ai_emulator.answer_headers")


class _CloudflareErrors(RequestHandler):
    """aiohttp's connection handler, answering its own errors (parser errors, handler crashes,
    handler timeouts) with a Cloudflare-shaped JSON envelope instead of plain text, with the headers
    the app's other answers carry (`ANSWER_HEADERS`). A request its parser refuses is the client's
    fault: one log line, no traceback."""

    _answered: BaseException | None = None  # the parser error `handle_error` logged itself

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        error = parser_error(status, message, exc)
        if 400 <= status < 500 and isinstance(exc, HttpProcessingError):
            # The request line is unknown here: the parser refused the request before handing it over.
            # Non-HTTP traffic (a bad method) is noise, as aiohttp itself rates it.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
            log.log(level, "request from %s refused by the HTTP parser: %d %s", request.remote, status,
                    error.message)
            self._answered = exc
        try:
            # aiohttp's own: logs the error (`log_exception`), raises ConnectionError when an answer
            # already started.
            super().handle_error(request, status, exc, message)
        finally:
            self._answered = None
        response = edge_error_response(error)
        response.force_close()
        assert isinstance(self._manager, _Server)
        stamp = self._manager.app.get(ANSWER_HEADERS)
        if stamp is not None:
            stamp(response)
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if exc is not None and exc is self._answered:
            return
        if isinstance(exc, RequestPayloadError) and args[:1] == ("Unhandled exception",):
            # aiohttp drains what is left of a body after the answer; one that failed its
            # Content-Encoding or framing fails again there. `read_body` logged it as one line.
            return
        super().log_exception(*args, **kw)


class _Server(Server):
    def __init__(self, app: web.Application, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def __call__(self) -> RequestHandler:
        return _CloudflareErrors(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> Server:
        made = await super()._make_server()
        server = _Server(self.app, made.request_handler, request_factory=made.request_factory,
                         handler_cancellation=made.handler_cancellation, loop=made._loop, **made._kwargs)
        return server


async def read_body(request: web.Request) -> bytes:
    """The whole body, or 408 when it trickles in slower than BODY_READ_TIMEOUT (slowloris clients)."""
    raw = request.get(BODY)
    if raw is not None:
        return raw
    if request.get(BODY_TIMED_OUT):
        raise CFError(ErrorKind.BODY_TIMEOUT)  # already waited once (the request log reads the body again)
    if request.get(BODY_REFUSED) is not None:
        raise body_refused(request)
    try:
        if request.content.is_eof():
            # Already all here (the usual case for small bodies, and any second read): no timer needed.
            raw = await _read_in_slices(request)
        else:
            try:
                async with asyncio.timeout(BODY_READ_TIMEOUT):
                    raw = await _read_in_slices(request)
            except TimeoutError:
                request[BODY_TIMED_OUT] = True
                raise CFError(ErrorKind.BODY_TIMEOUT) from None
    except RequestPayloadError:
        raise body_refused(request) from None
    request[BODY] = raw
    return raw


def body_refused(request: web.Request) -> CFError:
    """The 400 (5006) for a body aiohttp could not read (RequestPayloadError), logged once as one line.
    aiohttp decodes Content-Encoding itself; a body that is not what the header says fails while it is
    read, as does chunked framing that does not parse."""
    if (refused := request.get(BODY_REFUSED)) is not None:
        return CFError(ErrorKind.BAD_INPUT, detail=refused)
    encoding = request.headers.get("Content-Encoding", "")
    if not encoding:
        detail = "Error: the body's chunked framing is malformed"
    else:
        detail = f"Error: the body could not be decoded as Content-Encoding {encoding!r:.40}"
    log.warning("%s %.200s: body refused: %s", request.method, request.path, detail)
    request[BODY_REFUSED] = detail
    return CFError(ErrorKind.BAD_INPUT, detail=detail)


async def _read_in_slices(request: web.Request) -> bytes:
    """`request.read()`, yielding to the loop every LOOP_SLICE_SECONDS: a body that arrived while its
    handler waited is all buffered, and aiohttp's read gathers it in one go (~100 ms for 20 MB)."""
    limit = request.client_max_size
    chunks: list[bytes] = []
    size = 0
    turns = LoopTurns(LOOP_SLICE_SECONDS)
    while chunk := await request.content.readany():
        size += len(chunk)
        if limit and size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
        await turns.tick()
    if size < 1 << 20:
        return b"".join(chunks)
    # bytes.join copies without the GIL past 1 MiB: on a thread the loop goes on meanwhile.
    return await asyncio.to_thread(b"".join, chunks)


def body_if_read(request: web.Request) -> bytes | None:
    """The body if `read_body` already has it (no await needed), else None."""
    return request.get(BODY)
