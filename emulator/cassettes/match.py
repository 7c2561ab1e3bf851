"""Request matching for replay: normalisation, stable request keys, per-field matchers and the O(1) index.

Two requests match when all four matchers agree:

- ``method``: compared case-insensitively;
- ``path``: compared after normalisation. Percent-encoding is undone (``%40cf%2Fmeta`` equals
  ``@cf/meta``), runs of ``/`` are collapsed, and the account id (the segment after ``accounts/``, or
  any 32-hex segment) becomes ``{account_id}``;
- ``query``: compared as a sorted set of pairs, without the keys listed in ``volatile_query``;
- ``body``: JSON bodies are compared canonically, so key order and whitespace do not matter. Fields
  named in ``volatile`` are removed first: ``seed`` is a top-level field, ``options.rejectIfBusy`` is a
  nested one, and ``*`` matches any key or list item (``messages.*.id``). Other bodies are compared
  byte for byte.

Lookup hashes these normalised parts (`request_key`) and finds the key in a dict, so it is O(1).
Only the diagnostic for a miss scans the cassette, to name the closest recorded request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import orjson

from emulator.cassettes.format import (
    Body,
    Cassette,
    Interaction,
    RecordedRequest,
    is_json_type,
    normalise_path,
)
from emulator.cassettes.redact import Redactor

_DIFF_VALUE_WIDTH = 60

QueryInput = Mapping[str, str] | Iterable[tuple[str, str]] | str | None


def normalise_query(
    query: QueryInput, volatile_query: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """Sorted (key, value) pairs without volatile keys; accepts a mapping, pairs, or a raw query string."""
    if not query:  # None, "" or empty: most requests have no query
        return ()
    pairs: Iterable[tuple[str, str]]
    if isinstance(query, str):
        pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    elif isinstance(query, Mapping):
        pairs = query.items()
    else:
        pairs = query
    return tuple(sorted((str(k), str(v)) for k, v in pairs if k not in volatile_query))


def _without(obj: Any, parts: list[str]) -> Any:
    """`obj` with the dotted path removed; untouched subtrees are shared, never mutated."""
    head, rest = parts[0], parts[1:]
    if isinstance(obj, dict):
        keys = list(obj) if head == "*" else ([head] if head in obj else [])
        if not keys:
            return obj
        out = dict(obj)
        for key in keys:
            if rest:
                out[key] = _without(out[key], rest)
            else:
                del out[key]
        return out
    if isinstance(obj, list):
        if head == "*":
            indices = list(range(len(obj)))
        elif head.isdigit() and int(head) < len(obj):
            indices = [int(head)]
        else:
            return obj
        if not rest:
            drop = set(indices)
            return [v for i, v in enumerate(obj) if i not in drop]
        items = list(obj)
        for i in indices:
            items[i] = _without(items[i], rest)
        return items
    return obj


def strip_volatile(value: Any, volatile: frozenset[str]) -> Any:
    """A JSON value with every volatile dotted path removed."""
    for dotted in sorted(volatile):
        value = _without(value, dotted.split("."))
    return value


def _canonical_dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        # orjson refuses integers wider than 64 bits; the stdlib handles them.
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_NOT_JSON = object()


def _parse_json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_JSON


@dataclass(frozen=True, slots=True)
class NormalisedRequest:
    """The comparable parts of a request: what matchers look at and `request_key` hashes."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body_kind: str  # "json", "bytes" or "empty"
    body_canonical: bytes  # sorted-key JSON, or the raw bytes
    body_json: Any = None
    key: str = field(init=False)  # stable blake2b hex digest of the parts above (not of body_json)

    def __post_init__(self) -> None:
        h = hashlib.blake2b(digest_size=16)
        # Length-prefixing keeps ("ab", "c") and ("a", "bc") from hashing alike.
        for part in (
            self.method.encode(),
            self.path.encode(),
            urlencode(self.query).encode(),
            self.body_kind.encode(),
        ):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        h.update(self.body_canonical)
        object.__setattr__(self, "key", h.hexdigest())

    def describe(self) -> str:
        """``METHOD /path?query`` for messages."""
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{self.method} {self.path}{query}"


def normalise_request(
    method: str,
    path: str,
    query: QueryInput,
    body: bytes | str | Body | Any,
    content_type: str | None = None,
    *,
    volatile: frozenset[str] = frozenset(),
    volatile_query: frozenset[str] = frozenset(),
    redactor: Redactor | None = None,
) -> NormalisedRequest:
    """Normalise one request for matching.

    `body` may be wire bytes, a ``str`` (its UTF-8 bytes), a `Body`, an already-parsed JSON value
    (dict, list, number, bool) or ``None``. Bytes are compared as JSON whenever they parse, so the
    same document matches whatever its Content-Type or spacing. With a `redactor`, the request is
    redacted exactly as recording redacts it, so a scrubbed cassette still matches live traffic.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    parsed: Any = _NOT_JSON
    path, query = _redacted_target(path, query, redactor)
    if redactor is not None:
        if isinstance(body, bytes) and body and is_json_type(content_type):
            # What Body.from_request_bytes and redact_body give a JSON body, without building two Body
            # models: replay normalises every incoming request this way.
            parsed = _parse_json(body)
            if parsed is not _NOT_JSON:
                parsed = redactor.redact_json(parsed)
        if parsed is _NOT_JSON:
            if isinstance(body, bytes):
                body = Body.from_request_bytes(body, content_type)
            body = redactor.redact_body(body) if isinstance(body, Body) else redactor.redact_json(body)

    if parsed is not _NOT_JSON:
        kind = "json"
    elif body is None or (isinstance(body, bytes) and not body):
        kind, parsed = "empty", None
    elif isinstance(body, Body):
        if body.encoding == "empty":
            kind, parsed = "empty", None
        elif body.encoding == "json":
            kind, parsed = "json", body.json_
        else:
            raw = body.to_bytes()
            parsed = _parse_json(raw)
            kind = "bytes" if parsed is _NOT_JSON else "json"
    elif isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        parsed = _parse_json(raw)
        kind = "bytes" if parsed is _NOT_JSON else "json"
    else:
        kind, parsed = "json", body

    if kind == "json":
        parsed = prepare_json(parsed, volatile=volatile, redactor=None)  # redacted above
        canonical = _canonical_dumps(parsed)
    elif kind == "bytes":
        canonical, parsed = _without_boundary(raw, content_type), None
    else:
        canonical = b""
    return _normalised(method, path, query, volatile_query, kind, canonical, parsed)


def _redacted_target(path: str, query: QueryInput, redactor: Redactor | None) -> tuple[str, QueryInput]:
    """Path and query redacted as recording redacts them (normalised first, as recording does: a secret
    path segment is found once percent-decoded)."""
    if redactor is None:
        return path, query
    path = redactor.redact_path(normalise_path(path))
    if query is not None:
        query = redactor.redact_query(dict(normalise_query(query)))
    return path, query


def _normalised(method: str, path: str, query: QueryInput, volatile_query: frozenset[str], kind: str,
                canonical: bytes, parsed: Any) -> NormalisedRequest:
    return NormalisedRequest(
        method=method.upper(),
        path=normalise_path(path),
        query=normalise_query(query, volatile_query),
        body_kind=kind,
        body_canonical=canonical,
        body_json=parsed,
    )


_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.I)


def normalised_json(
    method: str,
    path: str,
    query: QueryInput,
    value: Any,
    canonical: bytes,
    *,
    volatile_query: frozenset[str] = frozenset(),
    redactor: Redactor | None = None,
) -> NormalisedRequest:
    """What `normalise_request` gives a request whose JSON body, redacted and without its volatile
    fields (`prepare_json`), is `value`, and `canonical` its sorted-key dump: the caller builds the
    dump a slice at a time for a large body. Hashing the key releases the GIL (hashlib, past 2 KiB)."""
    path, query = _redacted_target(path, query, redactor)
    return _normalised(method, path, query, volatile_query, "json", canonical, value)


def prepare_json(value: Any, *, volatile: frozenset[str], redactor: Redactor | None) -> Any:
    """A parsed JSON body as `normalise_request` compares it: redacted, without its volatile fields."""
    if redactor is not None:
        value = redactor.redact_json(value)
    return strip_volatile(value, volatile) if volatile else value


def _without_boundary(raw: bytes, content_type: str | None) -> bytes:
    """A multipart body with its boundary replaced by a fixed token: clients draw a random boundary
    for every request, so the same form would otherwise never match its recording."""
    if not content_type or "multipart/" not in content_type.lower():
        return raw
    found = _BOUNDARY.search(content_type)
    return raw.replace(found[1].encode("latin-1"), b"BOUNDARY") if found else raw


def normalise_recorded(
    request: RecordedRequest,
    *,
    volatile: frozenset[str] = frozenset(),
    volatile_query: frozenset[str] = frozenset(),
) -> NormalisedRequest:
    """Normalise a stored request (it was redacted when recorded, so no redactor is applied)."""
    return normalise_request(
        request.method,
        request.path,
        request.query,
        request.body,
        request.headers.get("content-type"),
        volatile=volatile,
        volatile_query=volatile_query,
    )


def request_key(
    method: str,
    path: str,
    query: QueryInput,
    body_bytes_or_json: bytes | str | Body | Any,
    content_type: str | None,
    *,
    volatile: frozenset[str],
    volatile_query: frozenset[str] = frozenset(),
    redactor: Redactor | None = None,
) -> str:
    """Stable hash (blake2b hex) of a request's normalised method, path, query and body."""
    return normalise_request(
        method,
        path,
        query,
        body_bytes_or_json,
        content_type,
        volatile=volatile,
        volatile_query=volatile_query,
        redactor=redactor,
    ).key


def _short(value: Any) -> str:
    text = value if isinstance(value, str) and not value.startswith(("{", "[")) else None
    text = repr(text) if text is not None else _canonical_dumps(value).decode("utf-8", "replace")
    return text if len(text) <= _DIFF_VALUE_WIDTH else text[: _DIFF_VALUE_WIDTH - 1] + "…"


def _first_json_diff(a: Any, b: Any, where: str = "") -> str | None:
    """``location: a != b`` for the first place two JSON values differ (dict keys in sorted order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            loc = f"{where}.{key}" if where else key
            if key not in a:
                return f"{loc}: (missing) != {_short(b[key])}"
            if key not in b:
                return f"{loc}: {_short(a[key])} != (missing)"
            found = _first_json_diff(a[key], b[key], loc)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first_json_diff(x, y, f"{where}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{where or '(root)'}: {len(a)} items != {len(b)} items"
        return None
    if type(a) is not type(b) or a != b:
        return f"{where or '(root)'}: {_short(a)} != {_short(b)}"
    return None


class Matchers:
    """One function per request field: ``None`` when equal, else ``"field: request != recorded"``."""

    ORDER: ClassVar[tuple[str, ...]] = ("method", "path", "query", "body")

    @staticmethod
    def method(request: NormalisedRequest, recorded: NormalisedRequest) -> str | None:
        """Compare HTTP methods."""
        return None if request.method == recorded.method else f"method: {request.method} != {recorded.method}"

    @staticmethod
    def path(request: NormalisedRequest, recorded: NormalisedRequest) -> str | None:
        """Compare normalised paths."""
        return None if request.path == recorded.path else f"path: {request.path} != {recorded.path}"

    @staticmethod
    def query(request: NormalisedRequest, recorded: NormalisedRequest) -> str | None:
        """Compare sorted query pairs."""
        if request.query == recorded.query:
            return None
        return f"query: {urlencode(request.query) or '(none)'} != {urlencode(recorded.query) or '(none)'}"

    @staticmethod
    def body(request: NormalisedRequest, recorded: NormalisedRequest) -> str | None:
        """Compare canonical bodies, pointing at the first differing JSON field."""
        if request.body_kind == recorded.body_kind and request.body_canonical == recorded.body_canonical:
            return None
        if request.body_kind == "json" and recorded.body_kind == "json":
            return f"body: {_first_json_diff(request.body_json, recorded.body_json)}"

        def describe(r: NormalisedRequest) -> str:
            if r.body_kind == "empty":
                return "(empty)"
            digest = hashlib.blake2b(r.body_canonical, digest_size=4).hexdigest()
            return f"{r.body_kind} {len(r.body_canonical)} bytes #{digest}"

        return f"body: {describe(request)} != {describe(recorded)}"

    @classmethod
    def all(cls) -> tuple[tuple[str, Callable[[NormalisedRequest, NormalisedRequest], str | None]], ...]:
        """(name, matcher) pairs in reporting order."""
        return tuple((name, getattr(cls, name)) for name in cls.ORDER)

    @classmethod
    def compare(cls, request: NormalisedRequest, recorded: NormalisedRequest) -> tuple[list[str], list[str]]:
        """Names of the matchers that passed, and the diff lines of those that failed."""
        passed: list[str] = []
        diffs: list[str] = []
        for name, matcher in cls.all():
            diff = matcher(request, recorded)
            if diff is None:
                passed.append(name)
            else:
                diffs.append(diff)
        return passed, diffs


class NoMatch(LookupError):
    """No recorded interaction matches a request; the message names the closest one and why it failed."""

    def __init__(
        self,
        cassette_name: str,
        closest: RecordedRequest | None,
        diffs: list[str],
        *,
        request: str = "",
        passed: list[str] | None = None,
        closest_index: int | None = None,
        recorded_count: int = 0,
    ) -> None:
        self.cassette_name = cassette_name
        self.closest = closest
        self.diffs = diffs
        self.request = request
        self.passed = passed or []
        self.closest_index = closest_index
        self.recorded_count = recorded_count
        super().__init__(self._message())

    @property
    def failed(self) -> list[str]:
        """Names of the matchers the closest request failed."""
        return [d.split(":", 1)[0] for d in self.diffs]

    def _message(self) -> str:
        request = self.request or "the request"
        head = f"No recorded interaction in cassette {self.cassette_name!r} matches {request}"
        if self.closest is None:
            return f"{head}: the cassette has no recorded requests."
        lines = [
            f"{head} ({self.recorded_count} recorded).",
            f"Closest recorded request: #{self.closest_index} {self.closest.method} {self.closest.path}",
            f"  matchers passed: {', '.join(self.passed) or '(none)'}",
            f"  matchers failed: {', '.join(self.failed)}",
        ]
        lines.extend(f"    {diff}" for diff in self.diffs)
        return "\n".join(lines)


class CassetteIndex:
    """O(1) replay lookup over one cassette.

    Identical requests (same key) are answered in recorded order through a per-key cursor. Once the
    last recording for a key has been played, it keeps being returned. A client that retries or polls
    then keeps getting the final recorded answer instead of an error.
    """

    def __init__(
        self,
        cassette: Cassette,
        *,
        volatile: frozenset[str] = frozenset(),
        volatile_query: frozenset[str] = frozenset(),
        redactor: Redactor | None = None,
        normalised: Mapping[int, NormalisedRequest] | None = None,
    ) -> None:
        """`normalised`: the recorded requests at these positions of the cassette, normalised
        already (`normalise_recorded`'s result, built in slices for a large body)."""
        self.cassette = cassette
        self.volatile = frozenset(volatile)
        self.volatile_query = frozenset(volatile_query)
        self.redactor = redactor
        self._by_key: dict[str, list[int]] = {}
        self._cursor: dict[str, int] = {}
        self._normalised: list[NormalisedRequest] = []
        self._played: set[int] = set()
        self._lock = threading.Lock()
        for position, interaction in enumerate(cassette.interactions):
            self._index(interaction, (normalised or {}).get(position))

    def _index(self, interaction: Interaction, norm: NormalisedRequest | None = None) -> None:
        if norm is None:
            norm = normalise_recorded(
                interaction.request, volatile=self.volatile, volatile_query=self.volatile_query
            )
        self._by_key.setdefault(norm.key, []).append(len(self._normalised))
        self._normalised.append(norm)

    def __len__(self) -> int:
        return len(self._normalised)

    def add(self, interaction: Interaction, normalised: NormalisedRequest | None = None) -> None:
        """Index an interaction appended to the cassette after construction (replay-or-record mode);
        `normalised`: its request normalised already, as for the constructor."""
        with self._lock:
            if len(self.cassette.interactions) == len(self._normalised):
                self.cassette.interactions.append(interaction)
            self._index(interaction, normalised)

    def normalise(
        self,
        method: str,
        path: str,
        query: QueryInput,
        body: bytes | str | Body | Any,
        content_type: str | None,
        *,
        redactor: Redactor | None = None,
    ) -> NormalisedRequest:
        """Normalise an incoming request with this index's volatile fields and redactor (or `redactor`,
        which also knows the credentials this request came with, as recording it would have)."""
        return normalise_request(
            method,
            path,
            query,
            body,
            content_type,
            volatile=self.volatile,
            volatile_query=self.volatile_query,
            redactor=redactor or self.redactor,
        )

    def prepare_json(self, value: Any, *, redactor: Redactor | None = None) -> Any:
        """A parsed JSON body redacted and stripped as `normalise` does (pure Python: on a thread, it
        hands the GIL back every few milliseconds)."""
        return prepare_json(value, volatile=self.volatile, redactor=redactor or self.redactor)

    def normalised_json(
        self, method: str, path: str, query: QueryInput, value: Any, canonical: bytes, *,
        redactor: Redactor | None = None,
    ) -> NormalisedRequest:
        """`normalised_json` with this index's volatile query keys and redactor."""
        return normalised_json(method, path, query, value, canonical, volatile_query=self.volatile_query,
                               redactor=redactor or self.redactor)

    def take(self, request: NormalisedRequest, *, required: bool = False) -> tuple[Interaction, bool] | None:
        """`play` for a request already normalised."""
        return self._take_required(request) if required else self._take(request)

    def find(
        self,
        method: str,
        path: str,
        query: QueryInput,
        body: bytes | str | Body | Any,
        content_type: str | None = None,
    ) -> Interaction | None:
        """Like `next`, but returns ``None`` instead of raising when nothing matches."""
        played = self.play(method, path, query, body, content_type)
        return played[0] if played is not None else None

    def next(
        self,
        method: str,
        path: str,
        query: QueryInput,
        body: bytes | str | Body | Any,
        content_type: str | None = None,
    ) -> Interaction:
        """The next recorded interaction for this request, or raise `NoMatch` with a diagnostic."""
        return self._take_required(self.normalise(method, path, query, body, content_type))[0]

    def play(
        self,
        method: str,
        path: str,
        query: QueryInput,
        body: bytes | str | Body | Any,
        content_type: str | None = None,
        *,
        required: bool = False,
        redactor: Redactor | None = None,
    ) -> tuple[Interaction, bool] | None:
        """The next recorded interaction for this request, and whether it is the last one for its key
        (so every identical request from now on gets it again). When nothing matches: None, or with
        `required`, `NoMatch` with a diagnostic."""
        request = self.normalise(method, path, query, body, content_type, redactor=redactor)
        return self._take_required(request) if required else self._take(request)

    def candidates(
        self, method: str, path: str, query: QueryInput, *, redactor: Redactor | None = None
    ) -> list[Interaction]:
        """Every recording of a bodiless request (a WebSocket upgrade), the next one in recorded order
        first: a replayed session picks among them by the client's messages. Raises `NoMatch`."""
        request = self.normalise(method, path, query, b"", None, redactor=redactor)
        with self._lock:
            positions = self._by_key.get(request.key)
            if positions:
                cursor = self._cursor.get(request.key, 0)
                start = min(cursor, len(positions) - 1)
                self._cursor[request.key] = cursor + 1
                self._played.add(positions[start])
                order = positions[start:] + positions[:start]
                return [self.cassette.interactions[position] for position in order]
        raise self.explain(request)

    def _take_required(self, request: NormalisedRequest) -> tuple[Interaction, bool]:
        found = self._take(request)
        if found is None:
            raise self.explain(request)
        return found

    def _take(self, request: NormalisedRequest) -> tuple[Interaction, bool] | None:
        with self._lock:
            positions = self._by_key.get(request.key)
            if not positions:
                return None
            cursor = self._cursor.get(request.key, 0)
            last = len(positions) - 1
            position = positions[min(cursor, last)]
            self._cursor[request.key] = cursor + 1
            self._played.add(position)
            return self.cassette.interactions[position], cursor >= last

    def explain(self, request: NormalisedRequest) -> NoMatch:
        """The `NoMatch` for a request; closest = most matchers passing, the first recorded on a tie."""
        best: tuple[int, int, list[str], list[str]] | None = None
        for position, recorded in enumerate(self._normalised):
            passed, diffs = Matchers.compare(request, recorded)
            if best is None or len(passed) > len(best[2]):
                best = (len(passed), position, passed, diffs)
        if best is None:
            return NoMatch(self.cassette.name, None, [], request=request.describe())
        _, position, passed, diffs = best
        return NoMatch(
            self.cassette.name,
            self.cassette.interactions[position].request,
            diffs,
            request=request.describe(),
            passed=passed,
            closest_index=position,
            recorded_count=len(self._normalised),
        )

    def unplayed(self) -> list[Interaction]:
        """Recorded interactions never returned so far (for "all recordings used" checks)."""
        with self._lock:
            return [i for n, i in enumerate(self.cassette.interactions) if n not in self._played]

    def rewind(self) -> None:
        """Forget what has been played, so the cassette replays from the start."""
        with self._lock:
            self._cursor.clear()
            self._played.clear()
