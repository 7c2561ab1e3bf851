"""UTF-8 text worked on a slice at a time, never decoded or encoded in one call: a long answer's
text, a long stream event. One call over 20 MB holds the GIL for tens of milliseconds, on a worker
thread too; between slices these hand it over (`gil.GilTurns`)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from emulator.gil import GilTurns

# Bytes decoded per chunk where UTF-8 text is checked or decoded a chunk at a time.
CHUNK_BYTES = 1 << 20


def decoded_chunks(data: bytes, size: int) -> Iterator[str]:
    """`data` decoded `size` bytes or so at a time; raises UnicodeDecodeError where
    `data.decode("utf-8")` would (an incremental decoder keeps a character cut by a chunk's end for
    the next)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    turns = GilTurns()
    for start in range(0, len(data), size):
        yield decoder.decode(data[start:start + size], start + size >= len(data))
        turns.tick()


def whole_character_slices(data: bytes, size: int) -> Iterator[bytes]:
    """UTF-8 text's bytes in slices of `size` bytes or so, each ending before the first byte of a
    character (not a continuation byte, 0b10xxxxxx), so that each holds whole characters."""
    turns = GilTurns()
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end += 1
        yield data[start:end]
        start = end
        turns.tick()
