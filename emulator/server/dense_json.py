"""Large JSON bodies whose bulk is long flat arrays of numbers, parsed and serialised in slices.

An image sent as `[...new Uint8Array(blob)]` (Cloudflare's documented form) is 5 million numbers in
18 MB. orjson parses it in one call holding the GIL for ~100-200 ms (a thread would not help), and
the push parser the other large bodies go through builds numbers ~20 times slower. Such arrays are
found in the raw bytes instead: a run of bytes that can only make up numbers, commas and whitespace,
opened by `[` and closed by `]`. Each run is replaced by a marker string, the small rest of the body
is parsed by orjson, and each array is parsed in pieces cut at commas, yielding to the loop between
pieces, then put back where its marker is. A body this cannot read that way (a run inside a string, a
piece that does not parse) is `Unsplittable`: the caller asks orjson about the whole body.
`fakes/seed.dumps_joined` is the way back: such a value serialised in slices.
"""

from __future__ import annotations

import asyncio
import ctypes
import secrets
import time
from typing import Any

import orjson

from emulator.limits import LOOP_SLICE_SECONDS

# The bytes a flat array of JSON numbers is made of.
NUMERIC = b"0123456789,.+-eE \t\r\n"
# Window of the scan: a window holding only NUMERIC bytes is inside a run. A run of twice this many
# bytes always fills a window; the shorter arrays stay in the rest of the body.
SCAN_BYTES = 16 * 1024
# One piece of an array handed to orjson: ~0.3 ms.
PIECE_BYTES = 128 * 1024
# The most the rest of the body may hold: it is parsed in one go and walked on the loop (~1 ms).
MAX_REST_BYTES = 256 * 1024
# The marker strings; the random part keeps any string a client sends from passing for one.
_MARK = f"dense-json-{secrets.token_hex(16)}-"


class Unsplittable(Exception):
    """The body is not valid JSON read as a rest and arrays; orjson on the whole body decides."""


async def parse_dense(raw: bytes) -> tuple[Any, int] | None:
    """(value, nesting depth) of `raw`, equal to what `orjson.loads(raw)` gives, or None when the
    body's bulk is not long flat arrays of numbers. Raises Unsplittable when the body cannot be read this
    way (it is then invalid JSON, or arrays of numbers sit inside strings)."""
    spans = await _numeric_arrays(raw)
    if not spans:
        return None
    parts: list[bytes] = []
    done = 0
    for i, (start, end) in enumerate(spans):
        parts += [raw[done:start], b'"', f"{_MARK}{i}".encode(), b'"']
        done = end + 1
    parts.append(raw[done:])
    text = b"".join(parts)
    if len(text) > MAX_REST_BYTES:
        return None  # its bulk is something else than arrays of numbers
    try:
        rest = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Unsplittable from None
    places, depth = _markers(rest, len(spans))
    arrays = [await _parse_array(raw, start + 1, end) for start, end in spans]
    if isinstance(rest, str):  # the body is one array
        return arrays[0], 1
    for container, key, i in places:
        container[key] = arrays[i]
    return rest, depth


async def _numeric_arrays(raw: bytes) -> list[tuple[int, int]]:
    """(offset of `[`, offset of `]`) of every array whose content is SCAN_BYTES or more of NUMERIC
    bytes and fills at least one scan window, in order."""
    spans: list[tuple[int, int]] = []
    opener: int | None = None  # in a run: the offset of the byte before it (-1: the body's start)
    started = time.perf_counter()
    position = 0
    while position < len(raw):
        window = raw[position:position + SCAN_BYTES]
        numeric = not window.translate(None, NUMERIC)
        if numeric and opener is None:
            # The run starts after the last non-numeric byte of the window before this one.
            before = raw[max(0, position - SCAN_BYTES):position].rstrip(NUMERIC)
            opener = position - SCAN_BYTES + len(before) - 1 if before else -1
        elif not numeric and opener is not None:
            end = position + len(window) - len(window.lstrip(NUMERIC))
            if opener >= 0 and raw[opener] == ord("[") and raw[end] == ord("]"):
                spans.append((opener, end))
            opener = None
            position = end
        position += SCAN_BYTES
        if time.perf_counter() - started > LOOP_SLICE_SECONDS:
            await asyncio.sleep(0)
            started = time.perf_counter()
    if opener is not None and opener >= 0 and raw[opener] == ord("["):
        raise Unsplittable  # an array of numbers that never closes
    return spans


def _markers(rest: Any, count: int) -> tuple[list[tuple[Any, Any, int]], int]:
    """Where the markers of `count` arrays are in `rest` (container, key or index, array number),
    and the nesting depth of the body they stand for. Each marker must be a value, once."""
    places: list[tuple[Any, Any, int]] = []
    seen: set[int] = set()
    deepest = 1 if isinstance(rest, str) else 0
    stack: list[tuple[Any, int]] = [(rest, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif isinstance(child, str) and child.startswith(_MARK):
                number = child[len(_MARK):]
                if number.isdigit() and int(number) < count and int(number) not in seen:
                    seen.add(int(number))
                    places.append((node, key, int(number)))
                    deepest = max(deepest, depth + 1)
    found_all = len(seen) == count or (isinstance(rest, str) and rest == f"{_MARK}0" and count == 1)
    if not found_all:
        raise Unsplittable  # a marker landed inside a string: the `[` was not an array's
    return places, deepest


def _untrack(numbers: list[Any]) -> None:
    """Hide a list of numbers from the cycle collector (the C API's `PyObject_GC_UnTrack`; reference
    counting still frees it). Numbers hold no references, so the list can be in no cycle, while the
    collector would walk all its items, 30-45 ms for 5 million holding the GIL, each time it
    examines the generation the list is in (twice or more while a request runs)."""
    ctypes.pythonapi.PyObject_GC_UnTrack(ctypes.py_object(numbers))


# A list grown item by item past the C allocator's mmap threshold (up to 32 MB with glibc) is copied
# once into fresh pages: ~15-20 ms for an image of 5 million numbers, in one step. A list that asked
# for more room than that at first lives in mapped memory from the start, which grows in place
# (`mremap`), so every step stays short. 4 Mi pointers are 32 MB.
_RESERVED_ITEMS = 1 << 22


class _Reserve:
    """Nothing to iterate, with a length hint: `list.extend` allocates room for the hint first, then
    gives back what it did not use, leaving the list's storage mapped (see _RESERVED_ITEMS)."""

    def __init__(self, hint: int) -> None:
        self.hint = hint

    def __iter__(self) -> _Reserve:
        return self

    def __next__(self) -> Any:
        raise StopIteration

    def __length_hint__(self) -> int:
        return self.hint


async def _parse_array(raw: bytes, start: int, end: int) -> list[Any]:
    """The numbers between `raw[start - 1]` (`[`) and `raw[end]` (`]`), parsed PIECE_BYTES at a time
    (each piece ends before a comma), yielding to the loop every LOOP_SLICE_SECONDS."""
    values: list[Any] = []
    _untrack(values)
    values.extend(_Reserve(max((end - start) // 2 + 1, _RESERVED_ITEMS)))
    started = time.perf_counter()
    while True:
        cut = raw.find(b",", start + PIECE_BYTES, end) if end - start > PIECE_BYTES else -1
        piece = raw[start:end if cut < 0 else cut]
        try:
            parsed = orjson.loads(b"[" + piece + b"]")
        except orjson.JSONDecodeError:
            raise Unsplittable from None
        if not parsed:
            if cut < 0 and not values:
                return values  # only whitespace between the brackets
            raise Unsplittable  # nothing between two commas, or after the last one
        values += parsed
        if cut < 0:
            return values
        start = cut + 1
        if time.perf_counter() - started > LOOP_SLICE_SECONDS:
            await asyncio.sleep(0)
            started = time.perf_counter()
