"""Credential and identity scrubbing applied to every interaction before it is hashed or written.

What is replaced:

- every explicitly given secret becomes ``REDACTED``. A secret of at least `MIN_SECRET_LENGTH`
  characters is replaced wherever it occurs; a shorter one (``Bearer t``) only where it is a whole
  value: a JSON string, an object key, a query value, a path segment or a whole text body. Replacing
  a one-letter token everywhere would rewrite every ``t`` in the cassette (``"success": REDACTEDrue``);
- a secret hidden by JSON escaping (``"\u0074oken…"``) in a body kept as exact text is found by
  parsing the text; such a body is then stored as its redacted JSON document instead;
- credential-shaped values also become ``REDACTED``: tokens after ``Bearer``, 37-character hex
  Cloudflare global API keys, and any string value of a field or query parameter whose name marks it
  as a credential (``token``, ``api_key``, ``authorization``, ``password``, ``secret``, …);
- account ids become the placeholder: the ones given anywhere, and any 32-character lowercase hex
  string that follows ``accounts/`` or forms a whole URL path segment (gateway URLs). A bare 32-hex
  string in a body is left alone on purpose: real responses carry ids such as
  ``chatcmpl-tool-b975da5af1f843e095ba7062d8e108ba``, and rewriting them would break replay fidelity;
- email addresses become ``redacted@example.com``.

Headers that carry credentials (Authorization, X-Auth-*, cf-aig-authorization, cookies) are dropped
entirely. Replay applies the same `Redactor` to incoming requests, so redacted recordings still match.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

import orjson

from emulator.cassettes import utf8
from emulator.cassettes.format import (
    UNPARSED,
    Body,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    RecordedSession,
    SSEEvent,
    sse_data,
)
from emulator.cassettes.shapes import REDACTED, may_hold_credential, redact_shapes
from emulator.cassettes.shapes_process import ShapesProcesses, ShapesProcessUnavailable
from emulator.gil import GilTurns

# Shorter secrets are redacted only where they are a whole value (see the module docstring).
MIN_SECRET_LENGTH = 8

DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-auth-key",
        "x-auth-email",
        "x-auth-user-service-key",
        "cf-aig-authorization",
        "cookie",
        "set-cookie",
    }
)

# Compared after lower-casing and removing "-" and "_", so apiKey, api-key and API_KEY all match.
SENSITIVE_FIELDS = frozenset(
    {
        "token",
        "apitoken",
        "accesstoken",
        "authtoken",
        "refreshtoken",
        "apikey",
        "xapikey",
        "authorization",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "secretkey",
        "xauthkey",
    }
)

_ACCOUNT_SEGMENT = re.compile(r"(?<=/)[0-9a-f]{32}(?=/|\?|#|$)")


# A text longer than this is searched for credential shapes TEXT_PIECE characters or so at a time,
# cut just after one of `_CUT`'s characters, which none of the five shapes holds: JSON's `,` `}` `]`
# and a query's `&` and `;` (`Redactor._redact_pieces`). The five `re.sub` over a piece of 16 KiB take
# ~1-6 ms.
LONG_TEXT = 1 << 16
TEXT_PIECE = 1 << 14
_CUT = re.compile(r"[,;&}\]]")
_CUT_BYTE = re.compile(rb"[,;&}\]]")  # the same characters in UTF-8 text: each its own byte
# A piece longer than this goes to a helper process (`shapes_process`): the five `re.sub` over
# 64 KiB of base64 take ~10-20 ms. `_CUT` is looked for CUT_SEARCH_CHARS at a time.
LONG_PIECE = 1 << 16
CUT_SEARCH_CHARS = 1 << 20
SHAPES_PROCESSES = ShapesProcesses()


_Text = TypeVar("_Text", str, bytes)


def _piece_end(s: _Text, at: int, turns: GilTurns) -> int:
    """Just after the first `_CUT` character of `s` (a text, or UTF-8 text's bytes) at or after `at`;
    `len(s)` when there is none."""
    cut_pattern: re.Pattern[Any] = _CUT_BYTE if isinstance(s, bytes) else _CUT
    while at < len(s):
        cut = cut_pattern.search(s, at, at + CUT_SEARCH_CHARS)
        if cut is not None:
            return cut.end()
        at += CUT_SEARCH_CHARS
        turns.tick()
    return len(s)

# A list this long is redacted REDACT_BATCH_ITEMS items at a time, its strings looked at together
# (`Redactor._leave_alone`): 300,000 strings one `redact_text` call each took 2.4 s of worker time
# holding the GIL in 5 ms turns, and so kept every answer on the event loop's thread waiting.
REDACT_BATCH_ITEMS = 1024
# Strings of a batch longer than this in all are looked at one by one (the joined copy stays small).
_BATCH_CHARS = 1 << 20
_REMEMBERED_PATHS = 4096
_KEPT = frozenset({int, float, bool, type(None)})  # JSON values redaction leaves alone
_NONE = object()
NOTHING_HIDDEN: Final = _NONE  # no secret hidden by JSON escapes (`Redactor.hidden_secret`)


_REDACTED_UTF8 = REDACTED.encode("ascii")
# A long text is searched for a secret or account id this many characters at a time: one `find` or
# `replace` over 20 MB of text that is not ASCII (4 bytes a character) held the GIL 45-85 ms.
SCAN_CHARS = 1 << 20


def _replace_in_slices(s: _Text, old: _Text, new: _Text) -> _Text:
    """`s.replace(old, new)`, looked for SCAN_CHARS characters at a time with the GIL handed over
    between slices (`gil.GilTurns`): a slice's search reaches `len(old) - 1` characters into the
    next, so an occurrence that starts in the slice is found in it, and the search goes on after
    each one found (the leftmost occurrences that do not overlap, as `replace` takes them). `s`
    itself when `old` is not in it."""
    turns = GilTurns()
    parts: list[_Text] = []
    kept = at = 0
    while at < len(s):
        found = s.find(old, at, at + SCAN_CHARS + len(old) - 1)
        if found < 0:
            at += SCAN_CHARS
        else:
            parts += [s[kept:found], new]
            kept = at = found + len(old)
        turns.tick()
    if not parts:
        return s
    parts.append(s[kept:])
    return s[:0].join(parts)


def opens_json_text(text: str) -> bool:
    """Whether a text body is looked at as JSON for secrets hidden by escapes: it opens an object, an
    array or a string (a number, boolean or null cannot hide one)."""
    return text.lstrip()[:1] in ("{", "[", '"')


def is_utf8(data: bytes) -> bool:
    """Whether `data` is UTF-8 text, decoded a chunk at a time and not kept."""
    try:
        for _ in utf8.decoded_chunks(data, utf8.CHUNK_BYTES):
            pass
    except UnicodeDecodeError:
        return False
    return True


def opens_json_utf8(data: bytes) -> bool:
    """`opens_json_text(data.decode())` for UTF-8 text, decoding only as far as its first character
    that is not white space."""
    for chunk in utf8.decoded_chunks(data, 1 << 12):
        start = chunk.lstrip()
        if start:
            return start[:1] in ("{", "[", '"')
    return False


def _text_body(redacted: str | bytes) -> Body:
    """A text body holding `redacted`: as its UTF-8 bytes when given so (`Body.of_utf8_text`)."""
    if isinstance(redacted, bytes):
        return Body.of_utf8_text(redacted)
    return Body(encoding="text", text=redacted)


def _field_is_sensitive(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in SENSITIVE_FIELDS


class Redactor:
    """Scrubs secrets, account ids and emails from text, JSON, headers, paths and whole interactions."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        account_ids: Iterable[str] = (),
        placeholder_account: str = "{account_id}",
    ) -> None:
        # Longest first so a secret that contains another is replaced whole.
        every = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.secrets: tuple[str, ...] = tuple(s for s in every if len(s) >= MIN_SECRET_LENGTH)
        self.whole_secrets: frozenset[str] = frozenset(every)
        self._longest_whole = max(map(len, every), default=-1)
        self.account_ids: tuple[str, ...] = tuple(
            sorted({a for a in account_ids if a}, key=len, reverse=True)
        )
        self.placeholder_account = placeholder_account
        # Redacted paths by path: replay redacts every incoming request's path, and a client repeats
        # its paths (one per model). Bounded; cleared when full.
        self._paths: dict[str, str] = {}

    def redact_text(self, s: str) -> str:
        """Replace every secret, credential-shaped token, account id and email in `s`. A text longer
        than LONG_TEXT is searched for the credential shapes a piece at a time (`_redact_pieces`)."""
        if len(s) <= self._longest_whole and s in self.whole_secrets:  # no hash of a long text
            return REDACTED
        long = len(s) > LONG_TEXT
        replace = _replace_in_slices if long else str.replace
        for secret in self.secrets:
            s = replace(s, secret, REDACTED)
        for account in self.account_ids:
            s = replace(s, account, self.placeholder_account)
        return self._redact_pieces(s, TEXT_PIECE) if long else self._redact_shapes(s)

    def redact_utf8(self, data: bytes) -> bytes:
        """`redact_text(data.decode()).encode()` for UTF-8 text `data`, worked out on the bytes: a
        long text is never made one Python string (see `Body.of_utf8_text`). UTF-8 tells a
        character's first byte from the others, so a secret's or account id's bytes occur in the
        text's bytes exactly where the text holds it, and replacing the bytes (`_replace_in_slices`)
        replaces what `str.replace` would; the shapes are looked for in pieces each ending just after
        a `_CUT` byte, each decoded by itself (`_redact_pieces`). `data` itself when nothing changes.
        A text short enough to be a whole secret, or no longer than LONG_TEXT, goes through
        `redact_text`."""
        if len(data) <= max(LONG_TEXT, 4 * self._longest_whole):
            text = data.decode("utf-8")
            redacted = self.redact_text(text)
            return data if redacted is text else redacted.encode("utf-8")
        for secret in self.secrets:
            data = _replace_in_slices(data, secret.encode("utf-8", "surrogatepass"), _REDACTED_UTF8)
        placeholder = self.placeholder_account.encode("utf-8", "surrogatepass")
        for account in self.account_ids:
            data = _replace_in_slices(data, account.encode("utf-8", "surrogatepass"), placeholder)
        return self._redact_pieces(data, TEXT_PIECE)

    def _redact_long_utf8(self, data: bytes) -> bytes:
        """`_redact_shapes` on a long piece's UTF-8 bytes, worked out in a helper process; here, from
        the decoded piece, when that cannot start."""
        try:
            return SHAPES_PROCESSES.redact_shapes_utf8(data, self.placeholder_account)
        except ShapesProcessUnavailable:
            return self._redact_utf8_shapes(data)

    def _redact_utf8_shapes(self, data: bytes) -> bytes:
        """`_redact_shapes` of UTF-8 text's bytes, decoded here; `data` itself when unchanged."""
        text = data.decode("utf-8")
        redacted = self._redact_shapes(text)
        return data if redacted is text else redacted.encode("utf-8")

    def _redact_pieces(self, s: _Text, piece: int) -> _Text:
        """`_redact_shapes(s)`, worked out on pieces of at least `piece` characters, each ending just
        after a character of `_CUT` (or at the end of `s`), with the GIL handed over between pieces
        (`gil.GilTurns`): `re.sub` holds it for its whole call, 4.75 s for the five over 20 MB. A
        piece longer than LONG_PIECE (a text with no `_CUT` character for that long) is worked out
        in a helper process (`shapes_process`), where it holds no GIL of this process.

        Why the pieces give the same text: no match of the five patterns holds a `_CUT` character,
        and their lookarounds and word boundaries take a `_CUT` character as they take the start or
        end of the text, so every match of one of them in the whole text lies inside one piece and
        is found there. A substitution leaves the `_CUT` character that ends a piece in place, so the
        substituted pieces are again such pieces of the substituted text, for the next pattern. A
        text without any `_CUT` character after `piece` is one piece (tests/test_redaction_pieces.py).

        Given UTF-8 text's bytes (`redact_utf8`), the pieces are of at least `piece` bytes and end
        just after a `_CUT` byte (an ASCII character, so each holds whole characters), each decoded
        by itself; a long one goes to a helper process as bytes."""
        out: list[_Text] = []
        changed = False
        turns = GilTurns()
        start = 0
        while start < len(s):
            end = _piece_end(s, start + piece - 1, turns)
            text = s[start:end]
            redacted = self._redact_piece(text)
            changed = changed or redacted is not text
            out.append(redacted)
            start = end
            turns.tick()
        return s[:0].join(out) if changed else s  # unchanged: `s` itself, without a copy

    def _redact_piece(self, piece: _Text) -> _Text:
        """One piece of `_redact_pieces`, in a helper process when longer than LONG_PIECE."""
        long = len(piece) > LONG_PIECE
        if isinstance(piece, bytes):
            return self._redact_long_utf8(piece) if long else self._redact_utf8_shapes(piece)
        return self._redact_long_piece(piece) if long else self._redact_shapes(piece)

    def _redact_long_piece(self, text: str) -> str:
        """`_redact_shapes(text)`, worked out in a helper process; here when that cannot start."""
        try:
            return SHAPES_PROCESSES.redact_shapes(text, self.placeholder_account)
        except ShapesProcessUnavailable:
            return self._redact_shapes(text)

    def _redact_shapes(self, s: str) -> str:
        return redact_shapes(s, self.placeholder_account)

    def redact_json(self, obj: Any) -> Any:
        """A deep copy of a JSON value with strings redacted and credential-named string fields
        replaced (a list of numbers, booleans and nulls that the server's sliced parser built is
        shared, not copied)."""
        if isinstance(obj, str):
            return self.redact_text(obj)
        if isinstance(obj, list):
            if not gc.is_tracked(obj) and all(type(v) in _KEPT for v in obj):
                # The server's sliced parser hides every container it builds from the cycle collector
                # (server/dense_json.py). One holding only numbers, booleans and nulls has nothing to
                # redact, so an image sent as 5 million numbers is shared, where a copy would be
                # walked by every collection of its generation; strings, lists and objects are walked.
                return obj
            if len(obj) > REDACT_BATCH_ITEMS:
                return self._redact_long_list(obj)
            # Numbers, booleans and nulls are kept as they are, without a call each.
            return [v if type(v) in _KEPT else self.redact_json(v) for v in obj]
        if isinstance(obj, dict):
            out: dict[str, Any] = {}
            for key, value in obj.items():
                new_key = self.redact_text(key) if isinstance(key, str) else key
                if isinstance(key, str) and _field_is_sensitive(key) and isinstance(value, str) and value:
                    out[new_key] = REDACTED
                else:
                    out[new_key] = self.redact_json(value)
            return out
        return obj

    def _redact_long_list(self, items: list[Any]) -> list[Any]:
        """`[self.redact_json(v) for v in items]`, a batch at a time: a batch whose strings all come
        out of `redact_text` unchanged (`_leave_alone`, decided from one look at them together)
        keeps them without a call each. On a worker thread, the GIL is handed over between batches
        (`gil.GilTurns`)."""
        out: list[Any] = []
        turns = GilTurns()
        for start in range(0, len(items), REDACT_BATCH_ITEMS):
            turns.tick()
            batch = items[start:start + REDACT_BATCH_ITEMS]
            strings = [v for v in batch if type(v) is str]
            if not strings or not self._leave_alone(strings):
                out += [v if type(v) in _KEPT else self.redact_json(v) for v in batch]
            elif len(strings) == len(batch):
                out += batch
            else:
                out += [v if type(v) is str or type(v) in _KEPT else self.redact_json(v) for v in batch]
        return out

    def _leave_alone(self, strings: list[str]) -> bool:
        """Whether `redact_text` gives back every one of `strings` unchanged: none is a whole
        secret, and their text joined holds no secret, no account id and nothing
        `_MAYBE_CREDENTIAL` matches (a match in one string is one in the joined text; one across
        the separator only sends the batch down the string-by-string way)."""
        if not self.whole_secrets.isdisjoint(strings):
            return False
        if sum(map(len, strings)) <= _BATCH_CHARS:
            return self._plain("\x00".join(strings))
        return all(map(self._plain, strings))

    def _plain(self, text: str) -> bool:
        """Whether `text` holds no secret, no account id and nothing `_MAYBE_CREDENTIAL` matches."""
        if any(secret in text for secret in self.secrets) or any(a in text for a in self.account_ids):
            return False
        return not may_hold_credential(text)

    def redact_headers(self, h: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers without credential-carrying ones, remaining values redacted."""
        items = h.items() if isinstance(h, Mapping) else h
        return {k: self.redact_text(v) for k, v in items if k.lower() not in DROPPED_HEADERS}

    def redact_path(self, path: str) -> str:
        """A URL path (optionally with a query string) with account ids and secrets replaced."""
        redacted = self._paths.get(path)
        if redacted is None:
            if len(self._paths) >= _REMEMBERED_PATHS:
                self._paths.clear()
            parts = path
            if self.whole_secrets:
                parts = "/".join(REDACTED if part in self.whole_secrets else part for part in path.split("/"))
            redacted = _ACCOUNT_SEGMENT.sub(self.placeholder_account, self.redact_text(parts))
            self._paths[path] = redacted
        return redacted

    def redact_query(self, query: Mapping[str, str]) -> dict[str, str]:
        """Query parameters with credential-named values replaced and the rest redacted as text."""
        return {
            self.redact_text(k): (REDACTED if _field_is_sensitive(k) and v else self.redact_text(v))
            for k, v in query.items()
        }

    def redact_body(self, body: Body) -> Body:
        """A redacted copy of a body; binary (base64) bodies are left alone."""
        if body.encoding == "json":
            return Body(encoding="json", json=self.redact_json(body.json_))
        if body.encoding == "text":
            text: str | bytes = body.utf8 if body.utf8 is not None else body.text or ""
            redacted = self.redact_utf8(text) if isinstance(text, bytes) else self.redact_text(text)
            hidden = self._escaped_secret(text, redacted)
            return Body(encoding="json", json=hidden) if hidden is not _NONE else _text_body(redacted)
        return body

    def _escaped_secret(self, text: str | bytes, redacted: str | bytes) -> Any:
        """The redacted document of a JSON text whose decoded strings still hold a secret after text
        redaction (JSON escapes hid it), else `_NONE`. `redacted`: `redact_text(text)`, or
        `redact_utf8(text)` for a text given as its UTF-8 bytes."""
        if not (opens_json_utf8(text) if isinstance(text, bytes) else opens_json_text(text)):
            return _NONE
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _NONE
        if redacted == text:
            return self._hidden(document, document)  # the same text: the same document
        try:
            after_text = orjson.loads(redacted)
        except orjson.JSONDecodeError:
            after_text = UNPARSED
        return self._hidden(document, after_text)

    def _hidden(self, document: Any, redacted_document: Any) -> Any:
        """`document` redacted when that differs from `redacted_document` (the value of the document's
        text after `redact_text`, UNPARSED when that text is not JSON), else `_NONE`."""
        cleaned = self.redact_json(document)
        return cleaned if redacted_document is UNPARSED or cleaned != redacted_document else _NONE

    def text_body(self, redacted: str | bytes, document: Any, redacted_document: Any) -> Body:
        """What `redact_body` stores for a text body, from its parts worked out already: `redacted`,
        the text after `redact_text` (or its UTF-8 bytes, `redact_utf8`'s, kept as such:
        `Body.of_utf8_text`); `document`, the text's JSON value when `opens_json_text` holds and it
        is JSON, else UNPARSED; `redacted_document`, `redacted`'s JSON value (UNPARSED when it is not
        JSON). A JSON text whose decoded strings still hold a secret after text redaction (JSON
        escapes hid it) is stored as its redacted document."""
        hidden = _NONE if document is UNPARSED else self._hidden(document, redacted_document)
        return Body(encoding="json", json=hidden) if hidden is not _NONE else _text_body(redacted)

    def redact_request(self, request: RecordedRequest) -> RecordedRequest:
        """A redacted copy of a recorded request."""
        return RecordedRequest(
            method=request.method,
            path=self.redact_path(request.path),
            query=self.redact_query(request.query),
            headers=self.redact_headers(request.headers),
            body=self.redact_body(request.body),
        )

    def redact_response(self, response: RecordedResponse, *, body_redacted: bool = False,
                        events_redacted: bool = False) -> RecordedResponse:
        """A redacted copy of a recorded response (SSE events keep `data` consistent with `raw`);
        `body_redacted`: its body is redacted already (a large answer, `large_bodies.read_large_answer`)
        and is kept as it is; `events_redacted`: the same for its events
        (`large_bodies.read_large_events`)."""
        events = (
            [self.redact_event(e) for e in response.events]
            if response.events is not None and not events_redacted else response.events
        )
        body = response.body
        return RecordedResponse(
            status=response.status,
            headers=self.redact_headers(response.headers),
            body=self.redact_body(body) if body is not None and not body_redacted else body,
            events=events,
            cut=response.cut,
        )

    def redact_event(self, event: SSEEvent) -> SSEEvent:
        redacted = self.redact_text(event.raw)
        return self.event_of(event, redacted, self._escaped_secret(event.data, sse_data(redacted)))

    def event_of(self, event: SSEEvent, redacted: str, hidden: Any) -> SSEEvent:
        """What `redact_event` gives, from its parts worked out already: `redacted`, the event's wire
        text after `redact_text`; `hidden`, the redacted document of its data when escapes hid a
        secret there (`hidden_secret`), else NOTHING_HIDDEN."""
        if hidden is not _NONE:
            # The event's JSON hid a secret behind escapes: it is kept as its redacted document.
            redacted = "data: " + orjson.dumps(hidden).decode() + "\n\n"
        return SSEEvent.from_raw(redacted, event.offset_ms)

    def hidden_secret(self, document: Any, redacted_document: Any) -> Any:
        """`document` (a JSON text's value) redacted, when its strings still hold a secret that text
        redaction missed (JSON escapes hid it), else NOTHING_HIDDEN. `redacted_document`: the value of
        the text after `redact_text` (UNPARSED when that is not JSON)."""
        return self._hidden(document, redacted_document)

    def redact_frame_text(self, text: str) -> str:
        """A WebSocket text message redacted as a text body is (JSON escapes included)."""
        body = self.redact_body(Body(encoding="text", text=text))
        return body.text if body.text is not None else orjson.dumps(body.json_).decode()

    def redact_session(self, session: RecordedSession) -> RecordedSession:
        """A redacted copy of a WebSocket session: text frames redacted, binary ones left alone."""
        frames = [
            frame.model_copy(update={"text": self.redact_frame_text(frame.text)}) if frame.text is not None
            else frame
            for frame in session.frames
        ]
        return session.model_copy(update={"frames": frames})

    def redact_interaction(self, interaction: Interaction) -> Interaction:
        """A redacted copy of a whole interaction: what `CassetteStore.append` callers should store."""
        update: dict[str, Any] = {
            "request": self.redact_request(interaction.request),
            "response": self.redact_response(interaction.response),
        }
        if interaction.session is not None:
            update["session"] = self.redact_session(interaction.session)
        return interaction.model_copy(update=update)
