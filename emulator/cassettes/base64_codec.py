"""Base64 of a large cassette body (an image, audio) without holding the GIL for the whole of it.

`base64.b64decode(text, validate=True)` checks its input with a regular expression and decodes it in
one call, and `base64.b64encode` encodes in one: each holds the GIL throughout, on a worker thread
too (a 20 MB answer: 250-570 ms to decode, 140-250 ms to encode on this 2-core machine under load).
Base64 works on groups, 4 characters for 3 bytes, so a text cut at a multiple of 4 characters decodes
piece by piece into the same bytes, and bytes cut at a multiple of 3 encode piece by piece into the
same text. Between pieces the GIL is handed over (`gil.GilTurns`); run inline on the event loop's
thread (a small body) nothing is handed over.
"""

from __future__ import annotations

import base64
import binascii

from emulator.gil import GilTurns

# Characters per decoded piece (a multiple of 4) and bytes per encoded piece (a multiple of 3):
# ~0.5-1 ms of work each.
DECODE_PIECE_CHARS = 64 * 1024
ENCODE_PIECE_BYTES = 48 * 1024
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def decode(text: str) -> bytes:
    """`base64.b64decode(text, validate=True)`: the same bytes, and an error (ValueError, or its
    subclass binascii.Error) for the same texts. A piece before the last one holding data may hold
    only the 64 characters of the alphabet (padding followed by data is refused), so it decodes
    alone. The last piece (with the padding after it) is decoded with the 4 characters before it,
    their 3 bytes dropped: read after a whole group, as in the whole text, its padding is judged the
    same way (a `=` first in a text is refused)."""
    data_end = _data_end(text)
    if data_end <= DECODE_PIECE_CHARS or not text.isascii():  # not ASCII: refused, as one call does
        return base64.b64decode(text, validate=True)
    turns = GilTurns()
    pieces: list[bytes] = []
    last = (data_end - 1) // DECODE_PIECE_CHARS * DECODE_PIECE_CHARS
    for start in range(0, last, DECODE_PIECE_CHARS):
        piece = text[start:start + DECODE_PIECE_CHARS].encode("ascii")
        if piece.translate(None, _ALPHABET):
            raise binascii.Error("Only base64 data is allowed")
        pieces.append(binascii.a2b_base64(piece))
        turns.tick()
    pieces.append(base64.b64decode(text[last - 4:], validate=True)[3:])
    return b"".join(pieces)


def _data_end(text: str) -> int:
    """The offset after the last character of `text` that is not padding (`=`), looked for in its
    end before the whole text is copied."""
    tail = text[-DECODE_PIECE_CHARS:].rstrip("=")
    if tail or len(text) <= DECODE_PIECE_CHARS:
        return len(text) - min(len(text), DECODE_PIECE_CHARS) + len(tail)
    return len(text.rstrip("="))


def encode(data: bytes) -> str:
    """`base64.b64encode(data).decode("ascii")`, a piece at a time."""
    if len(data) <= ENCODE_PIECE_BYTES:
        return base64.b64encode(data).decode("ascii")
    turns = GilTurns()
    view = memoryview(data)
    pieces: list[str] = []
    for start in range(0, len(data), ENCODE_PIECE_BYTES):
        piece = binascii.b2a_base64(view[start:start + ENCODE_PIECE_BYTES], newline=False)
        pieces.append(piece.decode("ascii"))
        turns.tick()
    return "".join(pieces)

