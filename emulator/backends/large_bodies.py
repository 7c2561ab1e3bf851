"""Cassette work on JSON and text bodies of INCREMENTAL_JSON_BYTES (1 MiB) or more, without holding the loop.

orjson's one `loads` or `dumps` of such a body, and pydantic's parse or copy of it, hold the GIL for
their whole call (60-430 ms for 20 MB), on a worker thread too. Each of those steps is done another
way here: the body is parsed by the server's sliced parser (`inputs.parse_json_body`, handed to the
backend by `backends/factory.backend_for`, as `backends` may not import `server`), walked (redaction,
volatile fields, validation) on a worker thread, where Python code hands the GIL back every 5 ms, and
serialised a slice at a time on the loop (`fakes/seed.dumps_in_slices`); joins, hashes and file
writes run on threads, which let go of the GIL for them. Each function gives what the ordinary path
gives, byte for byte (tests/test_large_body_normalisation.py, tests/test_large_body_records.py):

- replay: `normalise_large_json`, an incoming request's match key;
- record: `read_large_body`, the request body as the cassette stores it, `read_large_answer`, the
  answer's, redacted (as JSON, or as text redacted a piece at a time when it is not byte-exact or
  is a `text/*` answer), and `line_in_slices`, its cassette line (long strings spliced in,
  `cassettes/splice.py`);
- replay: `answer_bytes`, a recorded JSON or long text answer's bytes;
- loading: `load_index`, a cassette whose long lines are parsed and their requests normalised so
  (`normalise_recorded_large`, also used when replay-or-record adds what it recorded).

A body these do not take (not JSON, a non-JSON Content-Type, one orjson cannot serialise) goes the
ordinary way, whole, on a worker thread.
"""

from __future__ import annotations

import asyncio
import operator
import os
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import orjson

from emulator.backends.upstream import Exchange
from emulator.cassettes import (
    Body,
    Cassette,
    CassetteIndex,
    Interaction,
    NormalisedRequest,
    RecordedRequest,
    RecordedResponse,
)
from emulator.cassettes.format import (
    LONG_EVENT_BYTES,
    REQUEST_HEADER_ALLOW,
    RESPONSE_HEADER_ALLOW,
    UNPARSED,
    LongLine,
    SSEEvent,
    document_cassette,
    filter_headers,
    is_json_type,
    is_lines_format,
    is_text_type,
    line_document,
    load_cassette,
    long_line_interaction,
    read_lines,
    sse_data,
)
from emulator.cassettes.match import normalised_json, strip_volatile
from emulator.cassettes.redact import NOTHING_HIDDEN, Redactor, is_utf8, opens_json_text, opens_json_utf8
from emulator.cassettes.splice import spliced
from emulator.cassettes.store import CassetteStore, Identity, read_range
from emulator.errors import CFError
from emulator.fakes.seed import dumps_in_slices, dumps_joined, long_to_dump
from emulator.gil import LoopTurns
from emulator.limits import INCREMENTAL_JSON_BYTES, LOOP_SLICE_SECONDS, off_loop


class JsonParser(Protocol):
    """Parses a large JSON body in slices on the event loop (the server's `parse_json_body`); raises
    CFError when the body is not JSON it takes. `utf8_at`: the keys, from the top, of a long string
    it may give as its UTF-8 bytes (a str otherwise)."""

    def __call__(self, raw: bytes, *, utf8_at: tuple[str, ...] | None = None) -> Awaitable[Any]: ...


# Where a cassette line holds its answer's text: read as UTF-8 bytes when long (`Body.of_utf8_text`).
ANSWER_TEXT = ("response", "body", "text")


async def _parsed(exchange: Exchange, parse_json: JsonParser) -> Any:
    """The exchange's body parsed: the route's own parse when it made one (`Exchange.parsed`; a
    second sliced parse of 20 MB is ~0.7 s of 3 ms steps on the loop), else `parse_json`'s. The
    value is shared, never changed: redaction and the cassette's body build copies."""
    if exchange.parsed is not None:
        return exchange.parsed
    return await parse_json(exchange.body)


async def normalise_large_json(index: CassetteIndex, exchange: Exchange, redactor: Redactor,
                               parse_json: JsonParser | None) -> NormalisedRequest | None:
    """The request `index.normalise` gives for a JSON body of INCREMENTAL_JSON_BYTES or more: parsed
    in slices on the loop (`parse_json`) unless the route parsed it already, redacted and stripped
    on a thread, dumped with sorted keys in slices on the loop, joined and hashed on a thread. None
    when the body is not such a body (or holds integers past 64 bits): the caller normalises it
    whole."""
    body = exchange.body
    if parse_json is None or len(body) < INCREMENTAL_JSON_BYTES or not is_json_type(exchange.content_type):
        return None
    try:
        parsed = await _parsed(exchange, parse_json)
    except CFError:
        return None  # not JSON: compared as bytes, by the ordinary path
    value = await asyncio.to_thread(index.prepare_json, parsed, redactor=redactor)
    try:
        canonical = await dumps_joined(value, orjson.OPT_SORT_KEYS, slice_seconds=LOOP_SLICE_SECONDS)
    except TypeError:
        return None  # orjson refuses integers past 64 bits; the ordinary path uses the stdlib's
    return await asyncio.to_thread(index.normalised_json, exchange.method, exchange.path, exchange.query,
                                   value, canonical, redactor=redactor)


async def normalise_recorded_large(request: RecordedRequest, *, volatile: frozenset[str],
                                   volatile_query: frozenset[str]) -> NormalisedRequest | None:
    """What `normalise_recorded` gives a stored request with a large JSON body (stored redacted, so
    only its volatile fields are taken out, on a thread), its sorted-key dump built in slices. None
    for another body, or one orjson cannot dump: the caller normalises it whole."""
    if request.body.encoding != "json":
        return None
    value = request.body.json_
    if volatile:
        value = await asyncio.to_thread(strip_volatile, value, volatile)
    try:
        canonical = await dumps_joined(value, orjson.OPT_SORT_KEYS, slice_seconds=LOOP_SLICE_SECONDS)
    except TypeError:
        return None
    return await asyncio.to_thread(normalised_json, request.method, request.path, request.query, value,
                                   canonical, volatile_query=volatile_query)


async def read_large_body(exchange: Exchange, parse_json: JsonParser | None) -> Body | None:
    """The request body as `Body.from_request_bytes` reads it, for a body of INCREMENTAL_JSON_BYTES or
    more with a JSON Content-Type: parsed in slices. None for another body (the caller reads it whole)."""
    content_type = filter_headers(exchange.headers.items(), REQUEST_HEADER_ALLOW).get("content-type")
    if parse_json is None or len(exchange.body) < INCREMENTAL_JSON_BYTES or not is_json_type(content_type):
        return None
    try:
        return Body.from_json(await _parsed(exchange, parse_json))
    except CFError:
        return None  # not JSON: the ordinary path stores it as text or base64


async def read_large_answer(headers: Mapping[str, str], body: bytes, events: list[SSEEvent] | None,
                            parse_json: JsonParser | None, redactor: Redactor) -> Body | None:
    """The answer's body as the cassette stores it, `redactor.redact_body(Body.from_bytes(body,
    content_type, exact=True))`, for an answer of INCREMENTAL_JSON_BYTES or more that is JSON or
    text. A JSON answer is parsed in slices on the loop, serialised again in slices and compared on
    a thread: one that compact serialisation gives back byte for byte is kept as JSON, redacted on a
    thread; another (spaced, or with escapes compact output would not write) is kept as text
    (`_large_text_answer`), as is a `text/*` answer. None for another answer (not UTF-8, not text,
    one the sliced parser does not take, a stream): the caller reads it whole."""
    content_type = filter_headers(headers.items(), RESPONSE_HEADER_ALLOW).get("content-type")
    if parse_json is None or events is not None or len(body) < INCREMENTAL_JSON_BYTES:
        return None
    if is_text_type(content_type):
        return await _large_text_answer(body, _NOT_READ, parse_json, redactor)
    if not is_json_type(content_type):
        return None
    try:
        parsed = await parse_json(body)
        again = await dumps_joined(parsed, 0, slice_seconds=LOOP_SLICE_SECONDS)
    except (CFError, TypeError):
        return None  # not JSON (or not UTF-8), or integers orjson cannot write: read whole
    if await asyncio.to_thread(operator.eq, again, body):
        return await off_loop(len(body), redactor.redact_body, Body.from_json(parsed))
    del again
    return await _large_text_answer(body, parsed, parse_json, redactor)


_NOT_READ = object()  # an answer's JSON value not worked out yet (a text/* answer's)


async def read_large_events(events: list[SSEEvent] | None, parse_json: JsonParser | None,
                            redactor: Redactor) -> list[SSEEvent] | None:
    """The events as `redactor.redact_response` stores them, for a stream holding an event of
    LONG_EVENT_BYTES or more: each long one redacted on worker threads (the text a piece at a time,
    handing the GIL over) with its JSON data parsed in slices for the check for secrets hidden by
    escapes (orjson's one parse of a 20 MB event's data holds the GIL ~40 ms), the short ones as
    they are. None for a stream of short events (redacted with the rest of the interaction)."""
    if parse_json is None or events is None or all(len(event.raw) < LONG_EVENT_BYTES for event in events):
        return None
    return [await _long_event(event, parse_json, redactor) if len(event.raw) >= LONG_EVENT_BYTES
            else redactor.redact_event(event) for event in events]


async def _long_event(event: SSEEvent, parse_json: JsonParser, redactor: Redactor) -> SSEEvent:
    """`redactor.redact_event(event)` for a long event, its parts worked out off the loop."""
    redacted = await asyncio.to_thread(redactor.redact_text, event.raw)
    hidden: Any = NOTHING_HIDDEN
    if opens_json_text(event.data):
        document = await _value_of(await asyncio.to_thread(str.encode, event.data), parse_json)
        if document is not UNPARSED:
            data = event.data if redacted is event.raw else await asyncio.to_thread(sse_data, redacted)
            same = data is event.data or await asyncio.to_thread(operator.eq, data, event.data)
            after = document if same else await _value_of(await asyncio.to_thread(str.encode, data),
                                                          parse_json)
            hidden = await asyncio.to_thread(redactor.hidden_secret, document, after)
    return await asyncio.to_thread(redactor.event_of, event, redacted, hidden)


async def _large_text_answer(body: bytes, parsed: Any, parse_json: JsonParser, redactor: Redactor
                             ) -> Body | None:
    """`redactor.redact_body(Body(encoding="text", text=body.decode()))`, as a body holding the
    redacted text's UTF-8 bytes (`Body.of_utf8_text`: the text is never one Python string): checked
    and redacted on a thread, a piece at a time (`Redactor.redact_utf8`); the check for secrets
    hidden by JSON escapes, for a text that opens a JSON value, given `parsed` for the text's value
    (`_NOT_READ`: not worked out yet, then parsed in slices) and, when redaction changed the text,
    the redacted text parsed in slices; the redaction walk and the comparison on a thread
    (`Redactor.text_body`). None when the text is not UTF-8: the caller reads it whole."""
    read = await off_loop(len(body), _redacted_utf8, body, redactor)
    if read is None:
        return None
    redacted, opens_json = read
    if not opens_json:
        return redactor.text_body(redacted, UNPARSED, UNPARSED)
    if parsed is _NOT_READ:
        parsed = await _value_of(body, parse_json)
    if parsed is UNPARSED:
        return redactor.text_body(redacted, UNPARSED, UNPARSED)
    after = parsed if redacted is body else await _value_of(redacted, parse_json)  # same text, same value
    return await off_loop(len(body), redactor.text_body, redacted, parsed, after)


def _redacted_utf8(body: bytes, redactor: Redactor) -> tuple[bytes, bool] | None:
    """The body's text redacted (its UTF-8 bytes, `body` itself when unchanged), and whether it is
    looked at as JSON for secrets hidden by escapes (`opens_json_utf8`); None when it is not UTF-8."""
    if not is_utf8(body):
        return None
    return redactor.redact_utf8(body), opens_json_utf8(body)


async def _value_of(data: bytes, parse_json: JsonParser) -> Any:
    """`orjson.loads(data)`, UNPARSED when it is not JSON: parsed in slices, or whole on a thread
    when the sliced parser refuses it (whatever its reason: the verdict must be orjson's)."""
    try:
        return await parse_json(data)
    except CFError:
        return await off_loop(len(data), _loads_or_unparsed, data)


def _loads_or_unparsed(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return UNPARSED


async def line_in_slices(interaction: Interaction) -> bytes | None:
    """`interaction_line(interaction)`, byte for byte, for an interaction whose JSON bodies were
    parsed (`format.line_document`): serialised a slice at a time on the loop, a long text or base64
    body apart, then spliced in and joined on a thread (`splice.spliced`). None when orjson refuses
    the document: the ordinary path then serialises it (or says why not)."""
    document, strings = await asyncio.to_thread(line_document, interaction)
    try:
        pieces = [piece async for piece in dumps_in_slices(document, 0, slice_seconds=LOOP_SLICE_SECONDS)]
        pieces.append(b"\n")
        return await asyncio.to_thread(spliced, pieces, strings)
    except TypeError:
        return None


# A long text answer is encoded for replay this many characters at a time: its one `encode` of a
# 20 MB text took 30-60 ms on a loaded machine.
TEXT_SLICE_CHARS = 1 << 18


async def answer_bytes(response: RecordedResponse) -> bytes | None:
    """`response.body_bytes()` for a recorded JSON body, serialised in slices on the loop when it
    holds long lists (`dumps_in_slices`: a 20 MB embeddings answer is ~50-170 ms of orjson in one
    call); for a text body INCREMENTAL_JSON_BYTES long or more, encoded TEXT_SLICE_CHARS characters
    at a time and joined on a thread; for a base64 body (an image, audio), decoded on a worker
    thread when it is large (`base64_codec.decode` hands the GIL over between pieces); None for
    another answer (the caller takes `body_bytes`)."""
    body = response.body
    if response.events is not None or body is None:
        return None
    if body.utf8 is not None:
        return body.utf8
    if body.encoding == "text" and body.text is not None and len(body.text) >= INCREMENTAL_JSON_BYTES:
        turns = LoopTurns(LOOP_SLICE_SECONDS)
        pieces: list[bytes] = []
        for start in range(0, len(body.text), TEXT_SLICE_CHARS):
            pieces.append(body.text[start:start + TEXT_SLICE_CHARS].encode("utf-8"))
            await turns.tick()
        return await asyncio.to_thread(b"".join, pieces)
    if body.encoding == "base64":
        return await off_loop(len(body.base64 or ""), body.to_bytes)
    if body.encoding != "json":
        return None
    return await dumps_joined(body.json_, 0, slice_seconds=LOOP_SLICE_SECONDS)


def _index_whole(raw: bytes, origin: str, volatile: frozenset[str], redactor: Redactor) -> CassetteIndex:
    return CassetteIndex(load_cassette(raw, origin=origin), volatile=volatile, redactor=redactor)


async def load_index(store: CassetteStore, name: str, *, volatile: frozenset[str], redactor: Redactor,
                     parse_json: JsonParser | None) -> tuple[Identity, CassetteIndex]:
    """A cassette's file read and indexed for replay, and the identity it was read at. A file under
    INCREMENTAL_JSON_BYTES is parsed and indexed on a worker thread, in one go. In a larger version-2
    file, each line of INCREMENTAL_JSON_BYTES or more (pydantic's one parse of a 20 MB line holds the
    GIL for ~400 ms) is read from the file by itself, parsed by `parse_json` in slices and validated
    on a thread; a larger version-1 file (one document) is parsed by `parse_json` in slices and
    validated on a thread. Requests holding long lists (`long_to_dump`) are normalised in slices
    (`normalise_recorded_large`). Raises what `CassetteStore.read` and `load_cassette` raise."""
    origin = str(store.path(name))
    identity, raw, fd = await asyncio.to_thread(store.read_open, name)
    try:
        if parse_json is None or len(raw) < INCREMENTAL_JSON_BYTES:
            return identity, await asyncio.to_thread(_index_whole, raw, origin, volatile, redactor)
        if not is_lines_format(raw[:4096]):
            cassette = await _document_in_slices(raw, origin, parse_json)
            long_requests = [position for position, interaction in enumerate(cassette.interactions)
                             if interaction.request.body.encoding == "json"
                             and long_to_dump(interaction.request.body.json_)]
        else:
            cassette, long_lines = await asyncio.to_thread(read_lines, raw, origin,
                                                           long_line=INCREMENTAL_JSON_BYTES)
            del raw
            long_requests = await _long_lines_in_slices(cassette, long_lines, fd, origin, parse_json)
    finally:
        os.close(fd)
    normalised: dict[int, NormalisedRequest] = {}
    for position in long_requests:
        found = await normalise_recorded_large(cassette.interactions[position].request, volatile=volatile,
                                               volatile_query=frozenset())
        if found is not None:
            normalised[position] = found
    index = await asyncio.to_thread(lambda: CassetteIndex(cassette, volatile=volatile, redactor=redactor,
                                                          normalised=normalised))
    return identity, index


async def _long_lines_in_slices(cassette: Cassette, long_lines: list[LongLine], fd: int, origin: str,
                                parse_json: JsonParser) -> list[int]:
    """Put the interactions of a version-2 file's long lines into `cassette` (each read from `fd`,
    parsed in slices, validated on a thread); the positions of those whose request is JSON."""
    positions: list[int] = []
    for line in long_lines:
        data = await asyncio.to_thread(read_range, fd, line.start, line.end)
        try:
            document = await parse_json(data, utf8_at=ANSWER_TEXT)
        except CFError:
            document = UNPARSED  # validated from the line, for the error every invalid line gets
        interaction = await asyncio.to_thread(long_line_interaction, line, data, document, origin)
        del data
        if interaction is None:
            continue  # a torn last line
        cassette.interactions.insert(line.position, interaction)
        positions.append(line.position)
    return positions


async def _document_in_slices(raw: bytes, origin: str, parse_json: JsonParser) -> Cassette:
    """A version-1 file's cassette: the document parsed in slices and validated on a thread (what
    `load_cassette` gives, or its error, which a document that does not validate is read whole for)."""
    try:
        document = await parse_json(raw)
    except CFError:
        document = UNPARSED
    return await asyncio.to_thread(document_cassette, raw, document, origin)
