"""Cassette file format: the pydantic models and their two on-disk encodings.

A cassette is one file holding recorded request/response pairs ("interactions") that the emulator
can replay. Two encodings are read; keys are written in a stable order (model fields in declaration
order, header and query keys sorted) and fields whose value is null are omitted.

- **Version 2, JSON Lines** (what recording writes, `dump_cassette_lines`): the first line is the
  header ``{"format_version":2,"name":…,"created_at":…,"source":…}``, then one compact JSON
  interaction per line. Recording appends one line per call, so its cost does not grow with the
  cassette. A last line without its newline (a writer killed mid-append) is ignored on load.
- **Version 1, one pretty JSON document** (`dump_cassette`; the shipped fixtures and hand-written
  cassettes): UTF-8, two-space indent, interactions in an ``interactions`` list. Recording into a
  version-1 cassette rewrites it once as version 2.

Both keep the ``.json`` file name, so existing paths keep working. Every field is validated on load
(statuses 200-599, header names and values that HTTP can carry, finite non-negative neurons and
offsets): a hand-edited cassette with anything else is refused with a message naming the field.

Version-1 example::

    {
      "format_version": 1,
      "name": "chat/hello",
      "created_at": "2026-05-08T15:55:48.952000Z",
      "source": "recorded",
      "interactions": [
        {
          "request": {
            "method": "POST",
            "path": "/client/v4/accounts/{account_id}/ai/run/@cf/meta/llama-3.1-8b-instruct",
            "query": {},
            "headers": {"content-type": "application/json"},
            "body": {"encoding": "json", "json": {"prompt": "Say hello"}}
          },
          "response": {
            "status": 200,
            "headers": {"cf-ai-req-id": "7c7e…", "content-type": "application/json"},
            "body": {"encoding": "json", "json": {"result": {"response": "Hello!"}, "success": true}}
          },
          "recorded_at": "2026-05-08T15:55:49.101000Z",
          "neurons": 0.31
        }
      ]
    }

Fields:

- ``format_version``: ``1`` (one document) or ``2`` (JSON Lines); any other value is rejected.
- ``source``: ``"recorded"`` for live recordings, or
  ``"converted from …"``, naming the real capture a shipped fixture was built from.
- ``request.path``: normalised — the account id is replaced by ``{account_id}``, percent-encoding is
  undone (``%40cf%2Fmeta`` becomes ``@cf/meta``) and ``//`` is collapsed. The query string lives in
  ``request.query``.
- ``request.headers``: only ``content-type``, ``accept``, ``cf-aig-*`` and ``x-session-affinity`` are
  kept. Credentials are never stored.
- ``response.headers``: only ``content-type``, ``cf-ai-req-id``, ``cf-ai-neurons`` and ``cf-aig-*`` by
  default (see `RESPONSE_HEADER_ALLOW`). A file holding a framing or hop-by-hop header
  (`SERVER_SET_RESPONSE_HEADERS`: ``transfer-encoding``, ``content-length``, ``content-encoding`` …) is
  refused on load.
- ``body`` (`Body`): ``encoding`` is one of

  - ``"json"``: the parsed document is in ``json``. Request bodies use this whenever they parse. Response
    bodies use it only when compact re-serialisation reproduces the original bytes exactly.
  - ``"text"``: the exact text is in ``text``. Used for ``text/*`` and for JSON responses whose original
    spacing or escaping has to be kept byte for byte.
  - ``"base64"``: the raw bytes, base64-encoded, are in ``base64``. Used for images, audio and anything
    that is not UTF-8.
  - ``"empty"``: no body.

- ``response.events``: for ``text/event-stream`` responses, used instead of ``body``. There is one
  `SSEEvent` per server-sent event. ``raw`` is the exact text of the event, including ``data: ``
  prefixes and the blank line that ends it. ``data`` is the event's joined ``data:`` lines.
  ``offset_ms`` is the time since the response started. Joining every ``raw`` gives back the original
  stream byte for byte, and replay can send each event as its own chunk at its original time.
- ``neurons``: the billed neurons (from the ``cf-ai-neurons`` header) when known.
- ``session`` (`RecordedSession`): a WebSocket session of a realtime model. Its request is the
  upgrade (``GET``, path, query), its response has status ``101`` and no body, and ``session.frames``
  holds every message both ways in the order they passed the emulator: ``dir`` is ``"in"`` (client to
  model) or ``"out"``, ``offset_ms`` the time since the upgrade, and the message is ``text`` or
  ``base64`` (binary). ``session.end`` says how it ended: ``"server"`` (the model closed, with
  ``code``), ``"client"`` or ``"cut"`` (the upstream connection broke).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl, unquote

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from emulator.cassettes import base64_codec, splice, utf8
from emulator.gil import GilTurns
from emulator.limits import MAX_CALL_NEURONS, parse_neurons

FORMAT_VERSION: Final = 2  # what recording writes; version 1 is read too
LEGACY_FORMAT_VERSION: Final = 1

REQUEST_HEADER_ALLOW: tuple[str, ...] = ("content-type", "accept", "cf-aig-*", "x-session-affinity")
RESPONSE_HEADER_ALLOW: tuple[str, ...] = ("content-type", "cf-ai-req-id", "cf-ai-neurons", "cf-aig-*")
# Framing, coding and hop-by-hop headers: the replaying server sets them for the body it sends, so a
# hand-edited copy beside them makes a message clients cannot read (chunked next to Content-Length,
# gzip on a plain body). A recorded response never holds them (RESPONSE_HEADER_ALLOW).
SERVER_SET_RESPONSE_HEADERS: frozenset[str] = frozenset({
    "transfer-encoding", "content-length", "content-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade",
})

BodyEncoding = Literal["json", "text", "base64", "empty"]

ACCOUNT_PLACEHOLDER = "{account_id}"

_ACCOUNT_AFTER = re.compile(r"(/accounts/)[^/]+")
_HEX32_SEGMENT = re.compile(r"(?<=/)[0-9a-f]{32}(?=/|$)")
_SLASHES = re.compile(r"/{2,}")


# A pure function of a path, and a client repeats its paths (one per model): replay normalises every
# incoming request's path, so the last few thousand are remembered.
@functools.lru_cache(maxsize=4096)
def normalise_path(path: str) -> str:
    """Canonical request path: percent-decoded, ``//`` collapsed, account id replaced, query dropped.

    The account id is the segment after ``/accounts/``, or any 32-hex segment (AI Gateway URLs put it
    straight after ``/v1/``).
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    path = _SLASHES.sub("/", unquote(path))
    path = _ACCOUNT_AFTER.sub(lambda m: m.group(1) + ACCOUNT_PLACEHOLDER, path)
    return _HEX32_SEGMENT.sub(ACCOUNT_PLACEHOLDER, path)


def utcnow() -> datetime:
    """The current time in UTC, the timezone every cassette timestamp uses."""
    return datetime.now(UTC)


def filter_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], allow: Iterable[str]
) -> dict[str, str]:
    """Lower-cased, sorted copy of `headers` keeping only names in `allow` (``prefix-*`` wildcards)."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for pattern in allow:
        pattern = pattern.lower()
        if pattern.endswith("*"):
            prefixes.append(pattern[:-1])
        else:
            exact.add(pattern)
    items = headers.items() if isinstance(headers, Mapping) else headers
    kept: dict[str, str] = {}
    for name, value in items:
        lname = name.lower()
        if lname in exact or any(lname.startswith(p) for p in prefixes):
            # Repeated headers are rare in this API; join them the way HTTP allows rather than lose one.
            kept[lname] = f"{kept[lname]}, {value}" if lname in kept else value
    return dict(sorted(kept.items()))


def media_type(content_type: str | None) -> str:
    """The bare, lower-cased media type of a Content-Type value (parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(content_type: str | None) -> bool:
    """Whether a Content-Type denotes JSON (``application/json`` or any ``+json`` suffix)."""
    mt = media_type(content_type)
    return mt == "application/json" or mt.endswith("+json")


def is_text_type(content_type: str | None) -> bool:
    """Whether a Content-Type denotes text that is safe to store as a string."""
    return media_type(content_type).startswith("text/")


def is_event_stream(content_type: str | None) -> bool:
    """Whether a Content-Type is server-sent events."""
    return media_type(content_type) == "text/event-stream"


class _Model(BaseModel):
    # populate_by_name (not 2.11's validate_by_name/serialize_by_alias): pydantic 2.10 is supported.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0a-\x1f\x7f]*$")  # no control characters but tab
MAX_OFFSET_MS = 3_600_000.0  # one hour between a stream's start and one of its events


def _http_headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r:.60} is not an HTTP token")
        if not _HEADER_VALUE.match(text):
            raise ValueError(f"header {name!r:.60} has a control character (CR, LF, NUL …) in its value")
    return value


def _checked_base64(value: str | None) -> str | None:
    if value is not None:
        try:
            base64_codec.decode(value)  # on a worker thread, a large body hands the GIL over
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 body: {exc}") from exc
    return value


def _checked_offset(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_OFFSET_MS):
        raise ValueError(f"offset_ms must be a number from 0 to {MAX_OFFSET_MS:.0f}, not {value!r}")
    return value


# Field types that carry their checks: a base64 payload that decodes, a time offset within bounds.
Base64Payload = Annotated[str | None, AfterValidator(_checked_base64)]
OffsetMs = Annotated[float, AfterValidator(_checked_offset)]


class Body(_Model):
    """A request or response body in one of four encodings (see the module docstring)."""

    encoding: BodyEncoding
    # `json` would shadow BaseModel.json(); the alias keeps the on-disk name readable.
    json_: Any = Field(default=None, alias="json")
    text: str | None = None
    base64: Base64Payload = None
    # A large text body's text as its UTF-8 bytes (`of_utf8_text`), `text` then None.
    _utf8: bytes | None = PrivateAttr(default=None)

    @classmethod
    def of_utf8_text(cls, data: bytes) -> Body:
        """A ``text`` body whose text is `data`, valid UTF-8, held as those bytes and never as one
        Python string: 20 MB of text outside Latin-1 is a 39 MB buffer (77 MB with one emoji) that
        decoding or joining fills in one call holding the GIL, 40-130 ms of the kernel's first touch
        of each fresh page. Its wire bytes are `data` (`to_bytes`, `utf8`); serialised, it holds
        `text` as any text body does (`model_dump` decodes it; a cassette line splices it in a slice
        at a time, `format.long_strings_apart`); it equals the body holding the same text as `text`."""
        body = cls.model_construct(encoding="text")
        body._utf8 = data
        return body

    @property
    def utf8(self) -> bytes | None:
        """The text's UTF-8 bytes when the body holds them (`of_utf8_text`), else None."""
        return self._utf8

    @model_serializer(mode="wrap")
    def _serialised(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self._utf8 is not None:
            data["text"] = self._utf8.decode("utf-8")
        return data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Body) and (self._utf8 is not None or other._utf8 is not None):
            return (self.encoding == other.encoding == "text"
                    and self._text_bytes() == other._text_bytes())
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # as BaseModel's: a mutable model is not hashable

    def _text_bytes(self) -> bytes:
        if self._utf8 is not None:
            return self._utf8
        return (self.text or "").encode("utf-8", "surrogatepass")

    @classmethod
    def empty(cls) -> Body:
        """The absent body."""
        return cls(encoding="empty")

    @classmethod
    def from_bytes(cls, data: bytes, content_type: str | None, *, exact: bool = False) -> Body:
        """Choose the most readable encoding for `data`.

        JSON content types become ``json`` when they parse, ``text/*`` becomes ``text`` and anything else
        becomes ``base64``. With ``exact=True`` (use it for responses) ``json`` is chosen only when
        `to_bytes` would give back `data` unchanged. Otherwise the body is kept as ``text``, so replay is
        byte-exact.
        """
        if not data:
            return cls.empty()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls._base64_of(data)
        if is_json_type(content_type):
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = UNPARSED
            if parsed is not UNPARSED and (not exact or orjson.dumps(parsed) == data):
                return cls(encoding="json", json=parsed)
            return cls(encoding="text", text=text)
        if is_text_type(content_type):
            return cls(encoding="text", text=text)
        return cls._base64_of(data)

    @classmethod
    def _base64_of(cls, data: bytes) -> Body:
        """`data` as a ``base64`` body, encoded a piece at a time (`base64_codec`), and not decoded
        again by the field's check: what `encode` writes is base64."""
        return cls.model_construct(encoding="base64", base64=base64_codec.encode(data))

    @classmethod
    def from_request_bytes(cls, data: bytes, content_type: str | None) -> Body:
        """Like `from_bytes`, but any non-media body that parses as JSON is stored as JSON.

        Clients often send JSON without a JSON Content-Type: ``curl -d`` sends form encoding, and some
        SDKs send none at all. Cloudflare parses such bodies as JSON anyway, so the recording should
        too. Storing them as JSON keeps them readable and lets them be redacted field by field.
        """
        body = cls.from_bytes(data, content_type)
        if body.encoding in ("text", "base64") and not media_type(content_type).startswith(_MEDIA_PREFIXES):
            try:
                return cls(encoding="json", json=orjson.loads(data))
            except orjson.JSONDecodeError:
                pass
        return body

    @classmethod
    def from_json(cls, value: Any) -> Body:
        """A body holding an already-parsed JSON document."""
        return cls(encoding="json", json=value)

    def to_bytes(self) -> bytes:
        """The wire bytes of this body (compact JSON for ``json``, UTF-8 for ``text``)."""
        if self.encoding == "json":
            return orjson.dumps(self.json_)
        if self.encoding == "text":
            return self._utf8 if self._utf8 is not None else (self.text or "").encode("utf-8")
        if self.encoding == "base64":
            return base64_codec.decode(self.base64 or "")
        return b""


UNPARSED = object()  # what stands for bytes that are not JSON (a body, a cassette line)
_MEDIA_PREFIXES = ("image/", "audio/", "video/", "multipart/", "application/octet-stream")


class SSEEvent(_Model):
    """One server-sent event of a streamed response, with its exact wire text and timing."""

    data: str
    offset_ms: OffsetMs = 0.0
    raw: str

    @classmethod
    def from_raw(cls, raw: str, offset_ms: float = 0.0) -> SSEEvent:
        """Build an event from its exact wire text, deriving `data` from its ``data:`` lines."""
        if len(raw) < LONG_EVENT_BYTES:
            return cls(data=sse_data(raw), offset_ms=offset_ms, raw=raw)
        # The checks are the offset's: a long text's own check would only copy it in one call.
        checked = cls(data="", offset_ms=offset_ms, raw="")
        return checked.model_copy(update={"data": sse_data(raw), "raw": raw})

    @classmethod
    def from_wire(cls, raw: bytes, offset_ms: float = 0.0) -> SSEEvent:
        """`from_raw(raw.decode("utf-8"), offset_ms)`, a long event decoded a slice at a time (on a
        worker thread, each slice hands the GIL over: `gil.GilTurns`)."""
        if len(raw) < LONG_EVENT_BYTES:
            return cls.from_raw(raw.decode("utf-8"), offset_ms)
        return cls.from_raw("".join(utf8.decoded_chunks(raw, LONG_EVENT_BYTES)), offset_ms)


# An event this long (1 MiB) is decoded and read a slice or a line at a time: one regex split or
# decode of a 20 MB event holds the GIL for tens of milliseconds, on a worker thread too.
LONG_EVENT_BYTES = 1 << 20


def sse_data(raw: str) -> str:
    """The joined ``data:`` field values of one SSE event (per the SSE spec, one leading space is
    dropped). Lines end at CRLF, CR or LF; the text is walked a line at a time, each line's end found
    by `str.find` (each search resumed past the last line only when it went by), with the GIL handed
    over between lines on a worker thread."""
    lines: list[str] = []
    turns = GilTurns()
    pos, newline, carriage = 0, -2, -2  # -2: not searched yet; -1: none left
    while True:
        if -1 < newline < pos or newline == -2:
            newline = raw.find("\n", pos)
        if -1 < carriage < pos or carriage == -2:
            carriage = raw.find("\r", pos)
        ends = [end for end in (newline, carriage) if end != -1]
        end = min(ends) if ends else len(raw)
        if raw.startswith("data", pos) and (end == pos + 4 or raw[pos + 4] == ":"):
            start = pos + 5
            if raw.startswith(" ", start) and start < end:
                start += 1
            lines.append(raw[start:end])
        if not ends:
            return "\n".join(lines)
        pos = end + (2 if raw.startswith("\r\n", end) else 1)
        turns.tick()


# What ends an SSE event: a blank line after CRLF, LF or CR.
_EVENT_ENDS = (b"\r\n\r\n", b"\n\n", b"\r\r")


class SSESplitter:
    """Split a byte stream into SSE events, whatever the network chunking was.

    Feed upstream chunks with the time they arrived; each complete event is kept with the time its
    last byte arrived. Splitting happens on bytes, so a UTF-8 character cut across chunks is safe.
    A byte is searched for an event's end once (a 20 MB event arriving in 64 KiB chunks is neither
    copied nor searched again per chunk).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._searched = 0  # bytes of the buffer that hold no event's end (but its last 3 may start one)
        self._offset_ms = 0.0
        self.events: list[SSEEvent] = []

    def feed_wire(self, chunk: bytes, offset_ms: float) -> list[bytes]:
        """Add a chunk; return the wire bytes of the events it completed (not kept in `events`)."""
        self._buffer += chunk
        self._offset_ms = offset_ms
        done: list[bytes] = []
        buffer = self._buffer
        # Where each of _EVENT_ENDS next occurs from `start` on (-1: nowhere); searched again only
        # once an event's end went past it, so that a chunk of many events is searched once.
        next_at = [-2] * len(_EVENT_ENDS)
        event_start = 0
        start = max(0, self._searched - 3)
        while True:
            for i, mark in enumerate(_EVENT_ENDS):
                if next_at[i] == -2 or -1 < next_at[i] < start:
                    next_at[i] = buffer.find(mark, start)
            # No two of the ends start at one byte: the first found is the one the SSE spec ends at.
            found = [(at, len(_EVENT_ENDS[i])) for i, at in enumerate(next_at) if at >= 0]
            if not found:
                break
            at, length = min(found)
            done.append(bytes(memoryview(buffer)[event_start:at + length]))
            event_start = start = at + length
        del buffer[:event_start]
        self._searched = len(buffer)
        return done

    def finish_wire(self) -> bytes | None:
        """The wire bytes of a trailing event the server did not end with a blank line, if any."""
        if not self._buffer:
            return None
        raw = bytes(self._buffer)
        self._buffer.clear()
        self._searched = 0
        return raw

    @property
    def offset_ms(self) -> float:
        return self._offset_ms

    def feed(self, chunk: bytes, offset_ms: float) -> list[SSEEvent]:
        """Add a chunk; return the events it completed."""
        done = [SSEEvent.from_wire(raw, offset_ms) for raw in self.feed_wire(chunk, offset_ms)]
        self.events.extend(done)
        return done

    def finish(self) -> list[SSEEvent]:
        """All events, including a trailing one the server did not terminate with a blank line."""
        raw = self.finish_wire()
        if raw is not None:
            self.events.append(SSEEvent.from_wire(raw, self._offset_ms))
        return self.events


def split_sse(data: bytes, offset_ms: float = 0.0) -> list[SSEEvent]:
    """Split a complete SSE body into events that all share one timestamp."""
    splitter = SSESplitter()
    splitter.feed(data, offset_ms)
    return splitter.finish()


FrameDirection = Literal["in", "out"]
SessionEnd = Literal["server", "client", "cut"]
SWITCHING_PROTOCOLS: Final = 101


class Frame(_Model):
    """One WebSocket message of a recorded session: its direction, time and text or binary payload."""

    dir: FrameDirection
    offset_ms: OffsetMs = 0.0
    text: str | None = None
    base64: Base64Payload = None

    @model_validator(mode="after")
    def _one_payload(self) -> Frame:
        if (self.text is None) == (self.base64 is None):
            raise ValueError("a frame holds either `text` or `base64`")
        return self

    @classmethod
    def of(cls, direction: FrameDirection, message: str | bytes, offset_ms: float) -> Frame:
        """A frame holding `message`: a str is a text message, bytes a binary one."""
        if isinstance(message, str):
            return cls(dir=direction, offset_ms=offset_ms, text=message)
        return cls(dir=direction, offset_ms=offset_ms, base64=base64.b64encode(message).decode("ascii"))

    def message(self) -> str | bytes:
        """The message as sent: text, or the decoded binary payload."""
        if self.text is not None:
            return self.text
        return base64.b64decode(self.base64 or "", validate=True)


class RecordedSession(_Model):
    """A realtime model's WebSocket session: every frame both ways, and how it ended."""

    frames: list[Frame] = Field(default_factory=list)
    end: SessionEnd = "server"
    code: int | None = None  # the close code the model sent (end "server")
    end_ms: OffsetMs = 0.0

    @field_validator("code")
    @classmethod
    def _code(cls, value: int | None) -> int | None:
        if value is not None and not 1000 <= value <= 4999:
            raise ValueError(f"code must be a WebSocket close code from 1000 to 4999, not {value}")
        return value


class RecordedRequest(_Model):
    """The parts of a request that replay matches on, normalised and free of credentials."""

    method: str
    path: str
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Body = Field(default_factory=Body.empty)

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes | Body,
        *,
        allow: Iterable[str] = REQUEST_HEADER_ALLOW,
    ) -> RecordedRequest:
        """Record an incoming request: path normalised, headers allow-listed, body parsed when JSON.

        A query string left on `path` is moved into `query`. `body` is the wire bytes, or the `Body`
        `Body.from_request_bytes` gives them, read already (a large JSON body, parsed in slices).
        Redact the result (`Redactor.redact_request`) before hashing or storing it.
        """
        merged = dict(parse_qsl(path.split("?", 1)[1], keep_blank_values=True)) if "?" in path else {}
        merged.update(query or {})
        kept = filter_headers(headers, allow)
        return cls(
            method=method,
            path=normalise_path(path),
            query=merged,
            headers=kept,
            body=body if isinstance(body, Body) else Body.from_request_bytes(body, kept.get("content-type")),
        )

    @field_validator("query", "headers")
    @classmethod
    def _sorted(cls, value: dict[str, str]) -> dict[str, str]:
        return dict(sorted(value.items()))

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _http_headers(value)


class StreamBreak(_Model):
    """How a recorded stream ended early: the upstream connection broke after the recorded events,
    `offset_ms` after the response started, without the stream's own end (no `[DONE]`)."""

    offset_ms: float
    reason: str  # "connection closed" or "timeout"


class RecordedResponse(_Model):
    """A recorded response: status, allow-listed headers, and either a body or SSE events; a stream
    that broke off mid-way also has `cut` (replay sends its events, then drops the connection)."""

    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: Body | None = None
    events: list[SSEEvent] | None = None
    cut: StreamBreak | None = None

    @field_validator("headers")
    @classmethod
    def _sorted(cls, value: dict[str, str]) -> dict[str, str]:
        headers = _http_headers(dict(sorted((k.lower(), v) for k, v in value.items())))
        for name in headers:
            if name in SERVER_SET_RESPONSE_HEADERS:
                raise ValueError(f"header {name!r} frames the message or the connection; the server sets it "
                                 "when it replays, and record mode never stores it")
        return headers

    @field_validator("status")
    @classmethod
    def _status(cls, value: int) -> int:
        if not (200 <= value <= 599 or value == SWITCHING_PROTOCOLS):
            raise ValueError(f"status must be 101 (a WebSocket session) or a final HTTP status from 200 "
                             f"to 599, not {value}")
        return value

    @classmethod
    def build(
        cls,
        status: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes | Body,
        *,
        allow: Iterable[str] = RESPONSE_HEADER_ALLOW,
        events: list[SSEEvent] | None = None,
        cut: StreamBreak | None = None,
    ) -> RecordedResponse:
        """Record a finished response, keeping its body byte-exact.

        Event-stream bodies are split into events (pass `events` from an `SSESplitter` to keep real timings).
        If the stream is not UTF-8, the body is stored as base64 instead. `body` is the wire bytes, or
        the `Body` `Body.from_bytes(..., exact=True)` gives them, read already (a large JSON answer,
        parsed in slices).
        """
        kept = filter_headers(headers, allow)
        content_type = kept.get("content-type")
        if isinstance(body, Body):
            return cls(status=status, headers=kept, body=body)
        if events is None and is_event_stream(content_type) and body:
            try:
                events = split_sse(body)
            except UnicodeDecodeError:
                events = None
        if events is not None:
            return cls(status=status, headers=kept, events=events, cut=cut)
        return cls(status=status, headers=kept, body=Body.from_bytes(body, content_type, exact=True))

    @property
    def content_type(self) -> str | None:
        """The recorded Content-Type, if any."""
        return self.headers.get("content-type")

    def body_bytes(self) -> bytes:
        """The full response body bytes (events concatenated for streams)."""
        if self.events is not None:
            return "".join(e.raw for e in self.events).encode("utf-8")
        return self.body.to_bytes() if self.body is not None else b""


class Interaction(_Model):
    """One recorded request/response pair."""

    request: RecordedRequest
    response: RecordedResponse
    recorded_at: datetime = Field(default_factory=utcnow)
    neurons: float | None = None
    session: RecordedSession | None = None

    @field_validator("neurons")
    @classmethod
    def _neurons(cls, value: float | None) -> float | None:
        if value is not None and parse_neurons(value) is None:
            raise ValueError(f"neurons must be a number from 0 to {MAX_CALL_NEURONS:g}, not {value!r}")
        return value

    @model_validator(mode="after")
    def _session_is_a_101(self) -> Interaction:
        if (self.session is not None) != (self.response.status == SWITCHING_PROTOCOLS):
            raise ValueError("a WebSocket session has status 101, and status 101 needs a session")
        return self


class Cassette(_Model):
    """A named, versioned list of interactions: the unit stored in one file."""

    format_version: Literal[1, 2] = FORMAT_VERSION
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    source: str | None = None
    interactions: list[Interaction] = Field(default_factory=list)


class CassetteFormatError(ValueError):
    """A cassette file that is not valid JSON or does not follow the format."""


def dump_cassette(cassette: Cassette) -> bytes:
    """Version 1: one pretty document (UTF-8, indent 2, stable key order, trailing newline)."""
    data = cassette.model_dump(mode="json", exclude_none=True, by_alias=True)
    data["format_version"] = LEGACY_FORMAT_VERSION
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


def header_line(cassette: Cassette) -> bytes:
    """The first line of a version-2 file: the cassette without its interactions."""
    data = cassette.model_dump(mode="json", exclude_none=True, exclude={"interactions"}, by_alias=True)
    data["format_version"] = FORMAT_VERSION
    return orjson.dumps(data) + b"\n"


def interaction_line(interaction: Interaction) -> bytes:
    """One interaction as a version-2 line (what an append writes), a long text or base64 body
    spliced in (`splice`): byte for byte `orjson.dumps` of its `model_dump`, and a newline."""
    apart, strings = long_strings_apart(interaction)
    line = orjson.dumps(apart.model_dump(mode="json", exclude_none=True, by_alias=True)) + b"\n"
    return splice.spliced([line], strings) if strings else line


def long_strings_apart(interaction: Interaction) -> tuple[Interaction, list[splice.LongString]]:
    """`interaction` with each body's long text or base64 string (`splice.is_long`), and each SSE
    event's long wire text and data, replaced by its stand-in, and those strings; the interaction
    itself when it holds none."""
    strings: list[splice.LongString] = []
    sides: dict[str, RecordedRequest | RecordedResponse] = {}
    for name, side in (("request", interaction.request), ("response", interaction.response)):
        body = side.body
        if body is None or body.encoding not in ("text", "base64"):
            continue
        value = body.utf8 if body.utf8 is not None else body.text if body.encoding == "text" else body.base64
        if value is None or not splice.is_long(value):
            continue
        string = splice.LongString(value, splice.StringEncoding(body.encoding))
        strings.append(string)
        # The field a text or base64 body's string is in has the encoding's name (a body built
        # anew: a copy would keep the UTF-8 bytes, which serialise in place of the stand-in).
        stood_in = (Body.model_construct(encoding="text", text=string.stand_in) if body.encoding == "text"
                    else Body.model_construct(encoding="base64", base64=string.stand_in))
        sides[name] = side.model_copy(update={"body": stood_in})
    response = sides.get("response", interaction.response)
    assert isinstance(response, RecordedResponse)
    if response.events is not None and any(splice.is_long(event.raw) for event in response.events):
        events: list[SSEEvent] = []
        for event in response.events:
            update: dict[str, str] = {}
            for field_name in ("raw", "data"):
                value = getattr(event, field_name)
                if splice.is_long(value):
                    string = splice.LongString(value, splice.StringEncoding.TEXT)
                    strings.append(string)
                    update[field_name] = string.stand_in
            events.append(event.model_copy(update=update) if update else event)
        sides["response"] = response.model_copy(update={"events": events})
    return (interaction.model_copy(update=sides) if sides else interaction), strings


def line_document(interaction: Interaction) -> tuple[dict[str, Any], list[splice.LongString]]:
    """The document `interaction_line` serialises, for an interaction whose JSON bodies hold parsed
    JSON (only dicts, lists, strings, numbers, booleans and None), with its long strings apart (the
    caller splices them into the serialised document, `splice.spliced`): each JSON body is put in as
    it is, where `model_dump` would build a copy of it (~350 ms holding the GIL for an image of 5
    million numbers). A large body's line is then serialised in slices."""
    interaction, strings = long_strings_apart(interaction)
    request, response = interaction.request, interaction.response
    # A body of JSON null is left out with the other nulls; the others' places are kept by a stand-in.
    request_json = request.body.encoding == "json" and request.body.json_ is not None
    response_json = (response.body is not None and response.body.encoding == "json"
                     and response.body.json_ is not None)
    if request_json:
        request = request.model_copy(update={"body": request.body.model_copy(update={"json_": 0})})
    if response_json:
        assert response.body is not None
        response = response.model_copy(update={"body": response.body.model_copy(update={"json_": 0})})
    document = interaction.model_copy(update={"request": request, "response": response}).model_dump(
        mode="json", exclude_none=True, by_alias=True)
    if request_json:
        document["request"]["body"]["json"] = interaction.request.body.json_
    if response_json:
        assert interaction.response.body is not None
        document["response"]["body"]["json"] = interaction.response.body.json_
    return document, strings


def dump_cassette_lines(cassette: Cassette, *, last_line: bytes | None = None) -> bytes:
    """Version 2: the header line, then one line per interaction. `last_line` is the last
    interaction's line when it is built already (`interaction_line`'s bytes, serialised in slices);
    the lines are joined by `bytes.join`, which copies without the GIL past 1 MiB."""
    lines = [interaction_line(i) for i in cassette.interactions[:-1 if last_line is not None else None]]
    return b"".join([header_line(cassette), *lines, *([last_line] if last_line is not None else [])])


def is_lines_format(head: bytes) -> bool:
    """Whether a file's first bytes are a version-2 header line."""
    first = head.lstrip()[:40].replace(b" ", b"")
    return first.startswith(b'{"format_version":2') and b"\n" in head


def load_cassette(data: bytes | str, *, origin: str = "<cassette>") -> Cassette:
    """Parse on-disk bytes (either version) into a `Cassette`, naming `origin` and the line or field
    in the error when it is invalid."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if is_lines_format(raw[:4096]):
        return _load_lines(raw, origin)
    try:
        cassette = Cassette.model_validate_json(raw)
    except ValueError as exc:
        raise CassetteFormatError(f"{origin}: not a valid cassette: {_short_error(exc)}") from None
    if cassette.format_version != LEGACY_FORMAT_VERSION:
        raise CassetteFormatError(f"{origin}: a version-{FORMAT_VERSION} cassette must be JSON Lines")
    return cassette


def document_cassette(raw: bytes, document: Any, origin: str) -> Cassette:
    """What `load_cassette(raw)` gives a version-1 file whose parsed JSON is `document` (`UNPARSED`
    when it is not JSON): the document validated, or, when it does not validate, the file read
    whole, for the error any invalid file gets."""
    if document is not UNPARSED and type(document) is dict and document.get("format_version") == 1:
        with contextlib.suppress(ValueError):
            cassette = Cassette.model_validate(document)
            if cassette.format_version == LEGACY_FORMAT_VERSION:
                return cassette
    return load_cassette(raw, origin=origin)


@dataclass(frozen=True, slots=True)
class LongLine:
    """A line of a version-2 file that `read_lines` left unparsed, at `start:end` of the file's bytes:
    the caller reads and parses it (in slices) and puts its interaction (`long_line_interaction`) at
    `position` of the cassette's list."""

    position: int
    start: int
    end: int
    torn: bool  # after the file's last newline: kept only when it is a whole interaction


def read_lines(raw: bytes, origin: str, *, long_line: int | None = None) -> tuple[Cassette, list[LongLine]]:
    """A version-2 file's cassette; with `long_line`, the interaction lines of that many bytes or
    more are left out of it and returned, in the file's order, for the caller to parse."""
    lines: list[Any] = raw.split(b"\n") if long_line is None else _lines_cut_short(raw, long_line)
    torn = lines.pop()  # after the last newline: empty, or a line an interrupted append left
    long: list[LongLine] = []
    try:
        cassette = _header_cassette(lines[0])
        interactions: list[Interaction] = []
        for line in lines[1:]:
            if isinstance(line, tuple):  # a long line: read by the caller
                long.append(LongLine(len(interactions) + len(long), line[0], line[1], torn=False))
            elif line.strip():
                interactions.append(Interaction.model_validate_json(line))
        cassette.interactions = interactions
    except ValueError as exc:
        raise CassetteFormatError(f"{origin}: not a valid cassette: {_short_error(exc)}") from None
    if isinstance(torn, tuple):
        long.append(LongLine(len(interactions) + len(long), torn[0], torn[1], torn=True))
    elif torn.strip():
        # A complete last line whose newline was not written yet still counts; a torn one does not.
        with contextlib.suppress(ValueError):
            cassette.interactions.append(Interaction.model_validate_json(torn))
    return cassette, long


def _header_cassette(line: bytes) -> Cassette:
    """The cassette a version-2 file's header line describes, without interactions (ValueError when
    the line is no header)."""
    header = orjson.loads(line)
    if not isinstance(header, dict) or "interactions" in header:
        raise ValueError("the first line must be the cassette header, without interactions")
    return Cassette.model_validate(header)


def _lines_cut_short(raw: bytes, long_line: int) -> list[bytes | tuple[int, int]]:
    """`raw.split(b"\\n")`, but each line after the header of `long_line` bytes or more given as
    its (start, end) offsets: splitting a file of 20 MB lines copies them all in one call holding
    the GIL (~80 ms for 60 MB); the caller reads each long line from the file by itself
    (`os.pread`, without the GIL)."""
    lines: list[bytes | tuple[int, int]] = []
    start = 0
    while True:
        end = raw.find(b"\n", start)
        stop = len(raw) if end < 0 else end
        lines.append((start, stop) if stop - start >= long_line and lines else raw[start:stop])
        if end < 0:
            return lines
        start = end + 1


def long_line_interaction(line: LongLine, data: bytes, document: Any, origin: str) -> Interaction | None:
    """The interaction of a long line whose bytes are `data` and parsed JSON `document` (`UNPARSED`
    when it is not JSON): what `Interaction.model_validate_json` gives the line, or its error. None
    for a torn last line that is no whole interaction. A document that is not an interaction is
    validated again from the line, so the error reads as it does for any line."""
    try:
        if document is not UNPARSED:
            with contextlib.suppress(ValueError):
                return _interaction_of(document)
        return Interaction.model_validate_json(data)
    except ValueError as exc:
        if line.torn:
            return None
        raise CassetteFormatError(f"{origin}: not a valid cassette: {_short_error(exc)}") from None


def _interaction_of(document: Any) -> Interaction:
    """`Interaction.model_validate(document)`, where the answer's text may be given as its UTF-8
    bytes (the sliced parser's `utf8_at`, for a long one): a text body then holds those bytes
    (`Body.of_utf8_text`), and a body of another encoding the text decoded."""
    response = document.get("response") if isinstance(document, dict) else None
    body = response.get("body") if isinstance(response, dict) else None
    utf8 = body.get("text") if isinstance(body, dict) else None
    if not isinstance(utf8, bytes):
        return Interaction.model_validate(document)
    assert isinstance(response, dict) and isinstance(body, dict)
    if body.get("encoding") != "text":
        body = {**body, "text": utf8.decode("utf-8", "surrogatepass")}
        return Interaction.model_validate({**document, "response": {**response, "body": body}})
    body = {name: value for name, value in body.items() if name != "text"}
    interaction = Interaction.model_validate({**document, "response": {**response, "body": body}})
    assert interaction.response.body is not None
    interaction.response.body._utf8 = utf8
    return interaction


def count_interactions(raw: bytes, *, origin: str = "<cassette>") -> int:
    """How many interactions `load_cassette(raw)` gives a valid cassette, without parsing them where
    the format allows: in version 2, the header line is validated and the other lines that are not
    blank are counted (one interaction per line; a line after the last newline counts when it is a
    whole interaction, as on load); a version-1 document is parsed by orjson and validated (its
    bodies are not copied). An interaction line that would not validate is counted: load refuses the
    file, which replay reports. Raises CassetteFormatError for a header or document that is not a
    cassette."""
    if not is_lines_format(raw[:4096]):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = UNPARSED
        return len(document_cassette(raw, document, origin).interactions)
    end = raw.find(b"\n")
    try:
        _header_cassette(raw[:end])
    except ValueError as exc:
        raise CassetteFormatError(f"{origin}: not a valid cassette: {_short_error(exc)}") from None
    count = 0
    start = end + 1
    while (end := raw.find(b"\n", start)) >= 0:
        count += not _blank(raw, start, end)
        start = end + 1
    if not _blank(raw, start, len(raw)) and raw[start:].rstrip().endswith(b"}"):
        # After the last newline: a whole interaction whose newline was not written yet counts.
        with contextlib.suppress(ValueError):
            Interaction.model_validate_json(raw[start:])
            count += 1
    return count


_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() strips


def _blank(raw: bytes, start: int, end: int) -> bool:
    """Whether raw[start:end] is empty or whitespace (a line is copied only when it starts with some)."""
    if start >= end:
        return True
    if raw[start] not in _WHITESPACE:
        return False
    return not raw[start:end].strip()


def _load_lines(raw: bytes, origin: str) -> Cassette:
    return read_lines(raw, origin)[0]


def _short_error(exc: ValueError) -> str:
    """A validation error without the offending input echoed (a symlinked or binary file must not
    have its bytes shown in an HTTP answer), at most a few lines."""
    lines = [_ERROR_DETAIL.sub("", line).strip() for line in str(exc).splitlines()]
    return " ".join(line for line in lines[:8] if line and not line.startswith("For further"))[:600]


_ERROR_DETAIL = re.compile(r"\s*\[type=.*$")  # pydantic's "[type=…, input_value=<the input>, …]"
