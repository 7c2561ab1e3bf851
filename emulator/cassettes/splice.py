"""A cassette line with its long strings (a large text or base64 body) spliced in.

orjson's one `dumps` of a 20 MB string holds the GIL for its whole call, on a worker thread too
(70-120 ms for a text with an escape every few characters, or one that is not ASCII; ~70 ms for
27 MB of base64). So the line is serialised with a short stand-in in place of each long string
(`LongString.stand_in`), and each stand-in's serialised form is then replaced by its string's
encoding, built a slice at a time with the GIL handed over between slices (`gil.GilTurns`), the
parts joined by `bytes.join` (which copies without the GIL past 1 MiB). Two encoders:

- text: each slice serialised by orjson, its quotes stripped. JSON escapes each character by
  itself (a Python string holds code points, so no slice cuts a character or a surrogate pair in
  two), so the slices' escaped texts, joined between quotes, are the whole string's; a lone
  surrogate makes a slice refuse (TypeError) as the whole string would. A text held as its UTF-8
  bytes (`format.Body.of_utf8_text`) is cut into slices before the first byte of a character, and
  each slice decoded and serialised so;
- base64: each slice encoded as ASCII. A base64 body holds only the alphabet and `=` (its field's
  check), which JSON writes as they are.

The line is byte for byte the one orjson writes in one call (tests/test_large_body_records.py,
tests/test_base64_codec.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import orjson

from emulator.cassettes import utf8
from emulator.gil import GilTurns

# A body string this long (in characters) is spliced in; a shorter one is serialised with the line.
LONG_STRING_CHARS = 1 << 16
# Characters encoded per slice: ~1 ms of orjson on text with an escape every few characters.
SLICE_CHARS = 1 << 18


class StringEncoding(Enum):
    """How a long string is written into the line."""

    TEXT = "text"  # any text: JSON-escaped by orjson
    BASE64 = "base64"  # base64: its characters as they are


@dataclass(frozen=True, slots=True)
class LongString:
    """A long string of a line, and the stand-in the rest of the line is serialised with (random,
    so that no recorded string passes for it)."""

    value: str | bytes  # bytes: a text's UTF-8 encoding
    encoding: StringEncoding
    stand_in: str = field(default_factory=lambda: f"long-string-{secrets.token_hex(16)}")


def is_long(value: str | bytes | None) -> bool:
    """Whether a body's string is spliced in rather than serialised with its line."""
    return value is not None and len(value) >= LONG_STRING_CHARS


def spliced(pieces: Sequence[bytes], strings: Sequence[LongString]) -> bytes:
    """The line whose serialised pieces, in order, are `pieces` (written with each string's
    stand-in; the serialised stand-in lies within one piece), each serialised stand-in replaced by
    its string's encoding. Raises TypeError for a text orjson refuses."""
    waiting = {orjson.dumps(string.stand_in): string for string in strings}
    turns = GilTurns()
    # Only bytes: `bytes.join` keeps the GIL while it copies when a part is another buffer (a
    # memoryview), as that could change meanwhile.
    parts: list[bytes] = []
    for piece in pieces:
        start = 0
        while waiting:
            found = [(at, mark) for mark in waiting if (at := piece.find(mark, start)) >= 0]
            if not found:
                break
            at, mark = min(found)
            parts += [piece[start:at], b'"', *_encoded(waiting.pop(mark), turns), b'"']
            start = at + len(mark)
        parts.append(piece[start:] if start else piece)
    if waiting:
        raise AssertionError("each stand-in is a string value of the line")  # cannot happen
    return b"".join(parts)


def _encoded(string: LongString, turns: GilTurns) -> list[bytes]:
    """`string`'s value as the line holds it between its quotes, a slice at a time."""
    value = string.value
    if isinstance(value, bytes):
        return _utf8_encoded(value)
    pieces: list[bytes] = []
    for start in range(0, len(value), SLICE_CHARS):
        part = value[start:start + SLICE_CHARS]
        pieces.append(part.encode("ascii") if string.encoding is StringEncoding.BASE64
                      else orjson.dumps(part)[1:-1])
        turns.tick()
    return pieces


def _utf8_encoded(value: bytes) -> list[bytes]:
    """A text given as its UTF-8 bytes, as the line holds it between its quotes: slices of
    SLICE_CHARS bytes or so holding whole characters, each decoded and serialised by orjson."""
    return [orjson.dumps(part.decode("utf-8"))[1:-1]
            for part in utf8.whole_character_slices(value, SLICE_CHARS)]
