"""Request fingerprint → seed: the only source of randomness for every fake."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson

from emulator.gil import LoopTurns

CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, so key order never changes a fake."""
    return orjson.dumps(value, option=CANONICAL)


# Parts longer than this (uploaded audio and images, as bytes or inside JSON) are hashed with SHA-256
# first: with the SHA extensions most x86 and ARM CPUs have, it digests a 10-second WAV (320 KB) ~3x
# faster than blake2b, which stays for the small parts.
LARGE_PART = 4096


def derive_seed(*parts: Any) -> int:
    """A 64-bit seed from any JSON-able parts (bytes are hashed as they are)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part if isinstance(part, bytes) else canonical(part)
        h.update(data if len(data) <= LARGE_PART else hashlib.sha256(data).digest())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# Bytes parts from this size are hashed on a worker thread (hashlib lets go of the GIL meanwhile).
_THREADED_HASH = 1 << 20


async def derive_seed_in_slices(*parts: Any, slice_seconds: float) -> int:
    """`derive_seed(*parts)`, the same number, for parts of a large body: the canonical JSON is
    built and hashed a slice at a time (`dumps_in_slices`), yielding to the event loop every
    `slice_seconds`, so an image sent as 5 million numbers does not hold the loop for the ~60 ms
    one `canonical` and SHA-256 pass take."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, bytes):
            if len(part) >= _THREADED_HASH:
                h.update(await asyncio.to_thread(_sha256, part))
            else:
                h.update(part if len(part) <= LARGE_PART else _sha256(part))
        else:
            digest = hashlib.sha256()
            head = b""  # the canonical bytes while they are short enough to be hashed as they are
            size = 0
            async for piece in dumps_in_slices(part, CANONICAL, slice_seconds=slice_seconds):
                digest.update(piece)
                size += len(piece)
                if size <= LARGE_PART:
                    head += piece
            h.update(head if size <= LARGE_PART else digest.digest())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


# A list holding this many scalars (an image as `[...new Uint8Array(blob)]`, 300,000 strings, 3,000
# embedding rows of 1,024 floats), counted from its first item down, is serialised by `dumps_in_slices`
# a slice of items at a time: orjson takes ~45 ms for 5 million numbers in one call, holding the GIL.
LONG_LIST_ITEMS = 1 << 16
# The first slice of a list of scalars holds this many items (a slice of 16,384 numbers takes
# ~0.1 ms); a list of containers starts at one item. Each next slice is sized from the last one's
# bytes to about DUMPS_SLICE_BYTES.
DUMPS_SLICE_ITEMS = 1 << 14
DUMPS_SLICE_BYTES = 1 << 17
# Objects with more keys than this, or nested deeper, are serialised whole rather than searched.
_SEARCHED_KEYS = 4096
_SEARCHED_DEPTH = 128
# How deep, and how many of an object's values, the weight of a value is estimated from.
_SAMPLED_DEPTH = 8
_SAMPLED_VALUES = 64
# Stands in for a long list while the rest of the value is serialised; the random part keeps any
# string a client sends from passing for it.
_LIST_MARK = f"long-list-{secrets.token_hex(16)}-"
_CONTAINERS = (list, dict)


async def dumps_in_slices(value: Any, option: int, *, slice_seconds: float) -> AsyncIterator[bytes]:
    """The bytes of `orjson.dumps(value, option=option)`, in pieces, yielding to the event loop every
    `slice_seconds`: the long lists a value holds through objects are serialised a slice of items
    at a time and spliced into the rest, which is serialised with a marker string in their place; an
    item that is itself long (a list of a few huge lists) is serialised the same way, one level
    down. Joined, the pieces are byte for byte what orjson gives for the whole value (compact output,
    which serialises a list's items one after another with a comma between them)."""
    async for piece in _dumps(value, option, LoopTurns(slice_seconds), 0):
        yield piece


async def _dumps(value: Any, option: int, turns: LoopTurns, depth: int) -> AsyncIterator[bytes]:
    lists: list[list[Any] | dict[str, Any]] = []
    skeleton = _marked_long_lists(value, lists, depth)
    if not lists:
        yield orjson.dumps(value, option=option)
        await turns.tick()
        return
    text = orjson.dumps(skeleton, option=option)
    places = sorted((text.find(b'"' + f"{_LIST_MARK}{i}".encode() + b'"'), i) for i in range(len(lists)))
    if places[0][0] < 0:  # cannot happen: every marker is a string value of the skeleton
        yield orjson.dumps(value, option=option)
        return
    done = 0
    for at, i in places:
        yield text[done:at]
        long = lists[i]
        yield b"[" if isinstance(long, list) else b"{"
        async for piece in (_items(long, option, turns, depth + 1) if isinstance(long, list)
                            else _members(long, option, turns)):
            yield piece
        yield b"]" if isinstance(long, list) else b"}"
        done = at + len(_LIST_MARK) + len(str(i)) + 2
    yield text[done:]


async def _items(items: list[Any], option: int, turns: LoopTurns, depth: int) -> AsyncIterator[bytes]:
    """A long list's items, comma-separated: slices sized to ~DUMPS_SLICE_BYTES, or one item at a
    time, each serialised in slices itself, when its first item is long on its own."""
    if not items:
        return
    first = items[0]
    if type(first) in _CONTAINERS and depth <= _SEARCHED_DEPTH and _weight(first, 0) >= LONG_LIST_ITEMS:
        for index, item in enumerate(items):
            if index:
                yield b","
            async for piece in _dumps(item, option, turns, depth + 1):
                yield piece
        return
    count = 1 if type(first) in _CONTAINERS else DUMPS_SLICE_ITEMS
    start = 0
    while start < len(items):
        piece = orjson.dumps(items[start:start + count], option=option)[1:-1]
        yield b"," + piece if start else piece
        start += count
        count = max(1, min(count * 8, count * DUMPS_SLICE_BYTES // max(len(piece), 1)))
        await turns.tick()


async def dumps_joined(value: Any, option: int, *, slice_seconds: float) -> bytes:
    """`orjson.dumps(value, option=option)` for the value of a large body: serialised in slices
    (`dumps_in_slices`), joined on a worker thread (bytes.join copies without the GIL past 1 MiB)."""
    pieces = [piece async for piece in dumps_in_slices(value, option, slice_seconds=slice_seconds)]
    if len(pieces) == 1:
        return pieces[0]
    return await asyncio.to_thread(b"".join, pieces)


# An object's keys are sorted in runs of this many (~5 ms each) and merged, where `sorted` (or
# orjson's OPT_SORT_KEYS) over 1.2 million keys held the GIL ~450 ms in one call; its members are
# serialised MEMBERS_SLICE at a time.
_SORT_RUN = 1 << 14
_MEMBERS_SLICE = 1 << 11


async def _members(node: dict[str, Any], option: int, turns: LoopTurns) -> AsyncIterator[bytes]:
    """A long object's members, comma-separated, in orjson's order: by key (code point order, which
    is the order of their UTF-8 bytes orjson sorts) with OPT_SORT_KEYS, else as inserted."""
    keys: Any = iter(node)
    if option & orjson.OPT_SORT_KEYS:
        everything = list(node)
        runs = []
        for start in range(0, len(everything), _SORT_RUN):
            runs.append(sorted(everything[start:start + _SORT_RUN]))
            await turns.tick()
        keys = heapq.merge(*runs)
    first = True
    while chunk := list(itertools.islice(keys, _MEMBERS_SLICE)):
        piece = orjson.dumps({key: node[key] for key in chunk}, option=option)[1:-1]
        yield piece if first else b"," + piece
        first = False
        await turns.tick()


def _weight(node: Any, depth: int) -> int:
    """Roughly how many values `node` holds: a list counts its length times its first item's weight,
    an object its keys plus its first _SAMPLED_VALUES values' weights (sampled _SAMPLED_DEPTH deep)."""
    kind = type(node)
    if kind is list:
        if not node or depth >= _SAMPLED_DEPTH:
            return max(1, len(node))
        return len(node) * _weight(node[0], depth + 1)
    if kind is dict:
        if depth >= _SAMPLED_DEPTH:
            return max(1, len(node))
        weight = len(node)
        for index, child in enumerate(node.values()):
            if index >= _SAMPLED_VALUES:
                break
            if type(child) in _CONTAINERS:
                weight += _weight(child, depth + 1)
        return max(1, weight)
    return 1


def long_to_dump(value: Any) -> bool:
    """Whether `dumps_in_slices` serialises `value` a slice at a time (it holds a long list)."""
    return _weight(value, 0) >= LONG_LIST_ITEMS or (
        type(value) is dict and bool(_marked_long_lists(value, [], 0) is not value))


def _marked_long_lists(node: Any, lists: list[list[Any] | dict[str, Any]], depth: int) -> Any:
    """`node` with every list of LONG_LIST_ITEMS or more values (`_weight`) and every object of as
    many keys it holds through objects replaced by a marker string (they are appended to `lists`);
    `node` itself when it holds none."""
    if (type(node) is list and _weight(node, 0) >= LONG_LIST_ITEMS) or (
            type(node) is dict and len(node) >= LONG_LIST_ITEMS):
        lists.append(node)
        return f"{_LIST_MARK}{len(lists) - 1}"
    if type(node) is not dict or len(node) > _SEARCHED_KEYS or depth > _SEARCHED_DEPTH:
        return node
    copied: dict[Any, Any] | None = None
    for key, child in node.items():
        if type(child) is not dict and type(child) is not list:
            continue
        marked = _marked_long_lists(child, lists, depth + 1)
        if marked is not child:
            if copied is None:
                copied = dict(node)
            copied[key] = marked
    return node if copied is None else copied


def rng(seed: int) -> np.random.Generator:
    """A numpy generator whose stream is fixed by `seed` (PCG64 is stable across numpy versions)."""
    return np.random.Generator(np.random.PCG64(seed))


# The increment every re-seeded stream uses, and an odd multiplier that spreads a 64-bit seed over
# PCG64's 128-bit state.
_INCREMENT = 0xDA3E39CB94B95BDB_9E3779B97F4A7C15 | 1
_SPREAD = 0x9E3779B97F4A7C15_F39CC0605CEDC835
_MASK128 = (1 << 128) - 1


class _Streams(threading.local):
    def __init__(self) -> None:
        self.generator = np.random.Generator(np.random.PCG64(0))


_streams = _Streams()


def reseeded(seed: int) -> np.random.Generator:
    """This thread's generator, set to the state `seed` fixes: the per-request generator of the cheap
    fakes. Building a generator from a seed (`rng`) hashes it through SeedSequence, ~15 µs; setting
    the state is ~1.5 µs. PCG64's state transition and output are part of numpy's stable API, so the
    numbers are the same in every process. The generator is shared by the thread: it is valid until
    the next `reseeded` call, so a fake draws everything it needs before calling another that
    reseeds."""
    generator = _streams.generator
    state = {"state": (seed * _SPREAD) & _MASK128, "inc": _INCREMENT}
    generator.bit_generator.state = {"bit_generator": "PCG64", "state": state, "has_uint32": 0, "uinteger": 0}
    return generator
