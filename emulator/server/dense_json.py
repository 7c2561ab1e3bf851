"""Large JSON bodies of many small values, parsed in slices.

orjson parses a body in one call holding the GIL (a thread would not help): 60-120 ms for 20 MB of
short strings (an embeddings batch), ~200 ms for an image sent as `[...new Uint8Array(blob)]`
(Cloudflare's documented form, 5 million numbers in 18 MB), ~300-600 ms for 20 MB of small objects
(a `messages` array). The push parser the bodies of long values go through builds small values ~20
times slower. Such a body is read top-down instead: a container too large to parse in one step is
split at its own commas into pieces of about PIECE_BYTES, each piece parsed by orjson as
`[piece]` (or `{piece}`) and added to the container, yielding to the loop between pieces; an element
too large for a piece is read the same way, one level down.

orjson is the judge of every cut. A piece that starts where an element starts and parses as
`[piece]` is exactly whole elements (a cut inside a string or a nested container leaves a string or a
bracket open, and the container's own `]` inside the piece ends the document before the piece does),
so the comma after it is one of the container's own. The cut can then be looked for cheaply: after
the first full piece, the first comma past PIECE_BYTES between two elements shaped as the first one
(`","` between strings, `},{` between objects, any comma between numbers). Where orjson refuses that
piece, a pattern that knows string boundaries and PATTERN_LEVELS of nesting cuts the next piece
exactly (~100 MB/s). A body this cannot read (a piece or a glue byte orjson or the patterns refuse) is
`Unsplittable`: the caller asks orjson about the whole body, so an invalid body gets orjson's error.
`fakes/seed.dumps_joined` is the way back: such a value serialised in slices.

The value is a tree, so it can be in no reference cycle: every container is hidden from the cycle
collector as its piece is read (a full collection would otherwise walk all of them in one step).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar

import orjson

from emulator.gil import LoopTurns
from emulator.limits import LOOP_SLICE_SECONDS, MAX_JSON_DEPTH

# One piece handed to orjson: ~0.3 ms of numbers or strings, ~1.5 ms of small objects.
PIECE_BYTES = 128 * 1024


class Unsplittable(Exception):
    """The body cannot be read in pieces (it may be invalid JSON): orjson on the whole body decides."""


_WS = rb"[ \t\n\r]*+"
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
# A number, true, false or null; orjson tells which, and whether it is one.
_ATOM = rb'[^ \t\n\r,:\[\]{}"]++'


def _container(levels: int) -> bytes:
    """An array or object holding containers at most `levels` deep, strings kept whole. A `[` may
    close with `}` here: orjson refuses such a piece, the pattern only has to stay linear in size."""
    container = b""
    for _ in range(levels):
        inner = rb'(?:[^\[\]{}"]++|' + _STRING + (rb"|" + container if container else b"") + rb")*+"
        container = rb"[\[{]" + inner + rb"[\]}]"
    return container


# Elements nested to the depth limit are delimited by the patterns: their cost per byte does not grow
# with their levels (a 128-level pattern cuts a piece as fast as an 8-level one; compiling the four
# takes ~100 ms at import). An item read on its own, one level at a time, costs tens of µs: patterns
# of fewer levels would leave an array of small items nested deeper than them to that way, which gives
# up (`_Reader.alone`), and the body would be parsed whole on the loop (0.9-1.3 s for 12 MB).
PATTERN_LEVELS = MAX_JSON_DEPTH
# Patterns that find the boundaries of elements, not judges: orjson parses what they delimit.
_ELEMENT = rb"(?:" + _STRING + rb"|" + _ATOM + rb"|" + _container(PATTERN_LEVELS) + rb")"
_MEMBER = _WS + _STRING + _WS + rb":" + _WS + _ELEMENT + _WS
_ITEMS = re.compile(rb"(?:" + _WS + _ELEMENT + _WS + rb",)*+", re.S)  # elements, each with its comma
_LAST_ITEM = re.compile(_WS + rb"(?:" + _ELEMENT + _WS + rb")?\]", re.S)  # the last one and `]`
_MEMBERS = re.compile(rb"(?:" + _MEMBER + rb",)*+", re.S)
_LAST_MEMBER = re.compile(rb"(?:" + _MEMBER + rb"|" + _WS + rb")\}", re.S)
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
_ATOM_BODY = re.compile(rb'[^ \t\n\r,:\[\]{}"]*+')
_SPACE = re.compile(_WS)
# A byte a long string's text is cut after (`_Reader._long_string`): ASCII, so it ends a character,
# and neither `\`, `u` nor a hex digit, the bytes an escape (`\n`, `\u00e9`, a surrogate pair
# `\ud83d\ude00`) goes on after, so no escape is cut in two.
_STRING_CUT = re.compile(rb"[^\\u0-9a-fA-F\x80-\xff]")
# A byte a long string's text is cut before (`_Reader._long_string`): the first byte of a character
# (not a UTF-8 continuation byte) after twelve bytes without a backslash, the longest escape being a
# surrogate pair, `\ud83d\ude00`. It cuts text with no ASCII letter outside the hex digits (CJK, emoji).
_CHARACTER_CUT = re.compile(rb"(?<=[^\\]{12})[^\x80-\xbf]")
# Where the cheap cut is looked for, by the byte the container's first element starts with; the cut
# is group 1's comma. Any other first byte (a number, a literal): the first comma.
_SEPARATORS = {
    ord('"'): re.compile(rb'"' + _WS + rb"(,)" + _WS + rb'"'),
    ord("{"): re.compile(rb"\}" + _WS + rb"(,)" + _WS + rb"\{"),
    ord("["): re.compile(rb"\]" + _WS + rb"(,)" + _WS + rb"\["),
}
_MEMBER_SEPARATOR = re.compile(rb"(,)" + _WS + rb'"')


async def parse_dense(raw: bytes, *, utf8_at: tuple[str, ...] | None = None) -> Any:
    """The value of `raw`, equal to what `orjson.loads(raw)` gives, nested at most MAX_JSON_DEPTH
    levels. Raises Unsplittable when the body cannot be read in pieces: it is then invalid JSON, a
    valid shape the patterns do not follow, or its text nests deeper than MAX_JSON_DEPTH (its value
    may not: a key given twice keeps only its last value). `utf8_at`: the keys, from the top, of a
    string given as its UTF-8 bytes when it is longer than a piece (a cassette line's long text
    answer, `format.Body.of_utf8_text`), never made one Python string."""
    reader = _Reader(raw, utf8_at)
    value, end = await reader.value(reader.skip_space(0), 1, ())
    if reader.skip_space(end) != len(raw):
        raise Unsplittable  # something after the document
    return value


class _Reader:
    """One body read top-down. An element the patterns cannot take within a piece is read on its
    own: one larger than a piece, or nested deeper than PATTERN_LEVELS. Many of the latter would make
    the read far slower than orjson's, so past a few per piece of body the reader gives up."""

    def __init__(self, raw: bytes, utf8_at: tuple[str, ...] | None = None) -> None:
        self.raw = raw
        self.utf8_at = utf8_at
        self.turns = LoopTurns(LOOP_SLICE_SECONDS)
        self.alone_left = 4 * (len(raw) // PIECE_BYTES) + 2 * MAX_JSON_DEPTH

    def alone(self) -> None:
        self.alone_left -= 1
        if self.alone_left < 0:
            raise Unsplittable  # small elements nested deep: orjson's one parse is the faster

    @staticmethod
    def reach(level: int) -> None:
        if level > MAX_JSON_DEPTH:
            raise Unsplittable  # too deep, or invalid: orjson on the whole body and the depth walk decide

    def skip_space(self, position: int) -> int:
        return self._span(_SPACE, position)

    def _span(self, pattern: re.Pattern[bytes], position: int) -> int:
        """The end of `pattern`'s match at `position`, matched PIECE_BYTES at a time (a run of spaces
        or digits may be megabytes long); `pattern` matches runs of one kind of byte."""
        while True:
            end = pattern.match(self.raw, position, position + PIECE_BYTES).end()  # type: ignore[union-attr]
            if end < position + PIECE_BYTES or end >= len(self.raw):
                return end
            position = end

    async def value(self, position: int, level: int, path: tuple[str, ...] | None = None
                    ) -> tuple[Any, int]:
        """The value starting at `position` (no space before it) at nesting `level`, and its end;
        `path`, the keys from the top that lead to it (None below an array)."""
        if position >= len(self.raw):
            raise Unsplittable
        first = self.raw[position]
        if first == ord("["):
            self.reach(level)
            return await self._array(position + 1, level)
        if first == ord("{"):
            self.reach(level)
            return await self._object(position + 1, level, path)
        if first == ord('"'):
            end = await self._string_end(position)
            if end - position > PIECE_BYTES:
                parts = self._long_string(position, end)
                if path is not None and path == self.utf8_at:
                    return await _utf8_joined(parts), end
                return "".join([part async for part in parts]), end
        else:
            end = self._span(_ATOM_BODY, position)
        return self.loads(self.raw[position:end]), end

    async def _string_end(self, position: int) -> int:
        """The offset after the string opening at `position`, found PIECE_BYTES at a time: where a
        piece holds no backslash, its first quote ends the string (`bytes.find`, ~50x faster than
        the pattern, which a piece with escapes goes through)."""
        at = position + 1
        while True:
            start = at
            stop = min(at + PIECE_BYTES, len(self.raw))
            quote = self.raw.find(b'"', at, stop)
            if self.raw.find(b"\\", at, quote if quote >= 0 else stop) < 0:
                if quote >= 0:
                    return quote + 1
                if stop == len(self.raw):
                    raise Unsplittable  # the string never closes
                at = stop
                await self.turns.tick()
                continue
            at = _STRING_BODY.match(self.raw, at, at + PIECE_BYTES).end()  # type: ignore[union-attr]
            if at < len(self.raw) and self.raw[at] == ord('"'):
                return at + 1
            if at == start:
                raise Unsplittable  # the string never closes (or ends in a lone backslash)
            await self.turns.tick()

    async def _long_string(self, start: int, end: int) -> AsyncIterator[str]:
        """The string `raw[start:end]` (quotes included) decoded PIECE_BYTES or so at a time, each
        piece of its text parsed by orjson as `"piece"` (orjson took 70-120 ms on the loop for a
        20 MB string of escaped JSON text, 30-100 ms for 27 MB of base64): a string's value is its
        characters and escapes decoded one by one, so pieces cut where no character and no escape
        is cut in two decode to it. A piece ends just after a `_STRING_CUT` byte, or before the first
        byte of a character that follows twelve bytes without a backslash (`_CHARACTER_CUT`: no
        escape, a surrogate pair's included, reaches over it), whichever comes first past
        PIECE_BYTES. A string with neither past PIECE_BYTES is one piece. The decoded pieces, in
        order."""
        at, stop = start + 1, end - 1
        while at < stop:
            cut = stop
            after_byte = _STRING_CUT.search(self.raw, at + PIECE_BYTES, stop)
            if after_byte is not None:
                cut = after_byte.end()
            before_character = _CHARACTER_CUT.search(self.raw, at + PIECE_BYTES, cut)
            if before_character is not None:
                cut = before_character.start()
            yield self.loads(b'"' + self.raw[at:cut] + b'"')
            at = cut
            await self.turns.tick()

    @staticmethod
    def loads(text: bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Unsplittable from None

    def piece(self, text: bytes, level: int, wrapper: tuple[bytes, bytes],
              ends_at_comma: bool) -> tuple[Any, bool]:
        """The elements (or members) `text` holds, parsed by orjson inside `wrapper`, and whether
        they may hold containers; `text` comes from a container at nesting `level`. A piece before
        a comma must hold something."""
        parsed = self.loads(wrapper[0] + text + wrapper[1])
        if ends_at_comma and not parsed:
            raise Unsplittable  # nothing before a comma
        nesting = _nesting(text, MAX_JSON_DEPTH - level)
        self.reach(level + nesting)
        return parsed, nesting > 0

    def expect(self, position: int, allowed: bytes) -> int:
        """The offset after the byte at `position`, which must be one of `allowed`."""
        if position >= len(self.raw) or self.raw[position] not in allowed:
            raise Unsplittable
        return position + 1

    def first_byte(self, position: int) -> int | None:
        at = self.skip_space(position)
        return self.raw[at] if at < len(self.raw) else None

    async def _array(self, position: int, level: int) -> tuple[list[Any], int]:
        """The array whose content starts at `position`, and the offset after its `]`."""
        raw = self.raw
        items = _Items()
        first = self.first_byte(position)
        cuts = _Cuts(_SEPARATORS.get(first) if first is not None else None)
        after_comma = False
        while True:
            await self.turns.tick()
            cheap = self.cheap_piece(cuts, position, level, (b"[", b"]"))
            if cheap is not None:
                parsed, nested, cut = cheap
                await self.add(items, parsed, nested, cut - position)
                position, after_comma = cut + 1, True
                continue
            run = _ITEMS.match(raw, position, position + PIECE_BYTES).end()  # type: ignore[union-attr]
            if run > position:
                parsed, nested = self.piece(raw[position:run - 1], level, (b"[", b"]"), True)
                await self.add(items, parsed, nested, run - position)
                cuts.exact(run - position)
                position, after_comma = run, True
                continue
            last = _LAST_ITEM.match(raw, position, position + PIECE_BYTES)
            if last:
                parsed, nested = self.piece(raw[position:last.end() - 1], level, (b"[", b"]"), after_comma)
                await self.add(items, parsed, nested, 0)
                return items.done(), last.end()
            # An element too large (or too deep) for one piece: read on its own, one level down.
            self.alone()
            item, end = await self.value(self.skip_space(position), level + 1)
            items.values.append(item)
            end = self.expect(self.skip_space(end), b",]")
            if raw[end - 1] == ord("]"):
                return items.done(), end
            position, after_comma = end, True

    def cheap_piece(self, cuts: _Cuts, position: int, level: int, brackets: tuple[bytes, bytes]
                    ) -> tuple[Any, bool, int] | None:
        """The piece up to the cheap cut from `position` (its value, whether it nests, the cut), or
        None when there is no such cut or orjson refuses the piece (the exact cut is looked for)."""
        cut = cuts.cheap(self.raw, position)
        if cut is None:
            return None
        try:
            parsed, nested = self.piece(self.raw[position:cut], level, brackets, True)
        except Unsplittable:
            cuts.missed()
            return None
        cuts.hit()
        return parsed, nested, cut

    async def add(self, items: _Items, parsed: list[Any], nested: bool, length: int) -> None:
        """Add a parsed piece of `length` bytes to `items`, its containers hidden from the collector."""
        if nested:
            await self.hide(parsed)
        items.add(parsed, length)

    async def hide(self, values: Iterable[Any]) -> None:
        """Untrack the containers `values` hold, all levels down, a batch at a time (see _hide)."""
        pending = list(filter(gc.is_tracked, values))
        while pending:
            batch = pending[-_HIDE_BATCH:]
            del pending[-_HIDE_BATCH:]
            pending += _hide(batch)
            await self.turns.tick()

    async def _object(self, position: int, level: int, path: tuple[str, ...] | None = None
                      ) -> tuple[dict[str, Any], int]:
        """The object whose content starts at `position`, and the offset after its `}`. A key given
        twice keeps its first place and its last value, as orjson (and dict.update) keep it."""
        raw = self.raw
        members: dict[str, Any] = {}
        cuts = _Cuts(_MEMBER_SEPARATOR)
        after_comma = False
        while True:
            await self.turns.tick()
            cheap = self.cheap_piece(cuts, position, level, (b"{", b"}"))
            if cheap is not None:
                parsed, nested, cut = cheap
                await self.update(members, parsed, nested)
                position, after_comma = cut + 1, True
                continue
            run = _MEMBERS.match(raw, position, position + PIECE_BYTES).end()  # type: ignore[union-attr]
            if run > position:
                await self.update(members, *self.piece(raw[position:run - 1], level, (b"{", b"}"), True))
                cuts.exact(run - position)
                position, after_comma = run, True
                continue
            last = _LAST_MEMBER.match(raw, position, position + PIECE_BYTES)
            if last:
                await self.update(members, *self.piece(raw[position:last.end() - 1], level, (b"{", b"}"),
                                                       after_comma))
                return _untrack(members), last.end()
            # A member whose value is too large (or too deep) for one piece.
            self.alone()
            start = self.expect(self.skip_space(position), b'"') - 1
            key_end = await self._string_end(start)
            name = self.loads(raw[start:key_end])
            colon = self.expect(self.skip_space(key_end), b":")
            members[name], end = await self.value(self.skip_space(colon), level + 1,
                                                  None if path is None else (*path, name))
            end = self.expect(self.skip_space(end), b",}")
            if raw[end - 1] == ord("}"):
                return _untrack(members), end
            position, after_comma = end, True

    async def update(self, members: dict[str, Any], parsed: dict[str, Any], nested: bool) -> None:
        """Add a parsed piece's members to `members`, their containers hidden from the collector."""
        if nested:
            await self.hide(parsed.values())
        members.update(parsed)


async def _utf8_joined(parts: AsyncIterator[str]) -> bytes:
    """The UTF-8 bytes of the string whose decoded pieces are `parts`: each piece encoded by itself,
    all joined on a thread (`bytes.join` copies without the GIL past 1 MiB)."""
    encoded = [part.encode("utf-8", "surrogatepass") async for part in parts]
    return await asyncio.to_thread(b"".join, encoded)


class _Cuts:
    """Where a container's next cut is looked for. The cheap cut is tried once an exact piece has
    shown the container is large, and given up when misses pass one in eight tries plus two
    (elements of mixed shapes): each miss costs orjson a piece."""

    def __init__(self, separator: re.Pattern[bytes] | None) -> None:
        self.separator = separator
        self.large = False
        self.hits = self.misses = 0

    def cheap(self, raw: bytes, position: int) -> int | None:
        if not self.large or self.misses > self.hits // 8 + 2:
            return None
        start, stop = position + PIECE_BYTES, position + 2 * PIECE_BYTES
        if self.separator is None:
            cut = raw.find(b",", start, stop)
            return cut if cut >= 0 else None
        match = self.separator.search(raw, start, stop)
        return match.start(1) if match else None

    def hit(self) -> None:
        self.hits += 1

    def missed(self) -> None:
        self.misses += 1

    def exact(self, length: int) -> None:
        self.large = self.large or length > PIECE_BYTES // 2


class _Items:
    """A large array's items. From the first long piece on, the list's storage is mapped memory, and
    the cycle collector ignores the list: its items are scalars or containers hidden as they came."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.reserved = False

    def add(self, parsed: list[Any], length: int) -> None:
        """Add a parsed piece's items, `length` bytes of the body."""
        if not self.reserved and length > PIECE_BYTES // 2:
            self.reserved = True
            self.values.extend(_Reserve(_RESERVED_ITEMS))
            _untrack(self.values)
        self.values += parsed

    def done(self) -> list[Any]:
        return _untrack(self.values)


# Every byte but those that open or close strings and containers.
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))


def _nesting(text: bytes, limit: int) -> int:
    """How deep the containers in `text` (elements orjson has read) nest, 0 for scalars only, or
    `limit` + 1 once past `limit`: the depth of the text, not of its value (a key given twice keeps
    only its last value), found without walking the value. Escaped backslashes and quotes go first,
    so the quotes left alternate opening and closing; what is between them goes; then each round
    drops the innermost pairs of brackets."""
    bare = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    skeleton = b"".join(bare.split(b'"')[::2])
    depth = 0
    while skeleton and depth <= limit:
        depth += 1
        skeleton = skeleton.replace(b"[]", b"x").replace(b"{}", b"x").replace(b"x", b"")
    return depth


# Parsed JSON is a tree: each container is referenced by its parent alone, and holds scalars or
# containers of its own. It can be in no reference cycle, so the cycle collector has nothing to find
# in it, while each collection of the generation it is in walks every container, holding the GIL:
# 20 MB of `messages` with lists of parts are ~400,000 containers, 5 million for items nested 5
# deep, and a full collection of them took 200-400 ms in one step. Such containers are untracked
# (the C API's `PyObject_GC_UnTrack`) as each piece is read; reference counting still frees them.
# A dict that is given a container later tracks itself again (CPython's dicts do on insert); a list
# does not, so a list from the body must never be made part of a cycle (nothing in the emulator puts
# anything but JSON values into an input's lists: docs/reliability.md).
_Container = TypeVar("_Container", list[Any], dict[str, Any])
_GC_UNTRACK = ctypes.PYFUNCTYPE(None, ctypes.py_object)(("PyObject_GC_UnTrack", ctypes.pythonapi))
# Containers untracked in one step: ~0.5 µs each (the ctypes call), ~2-4 ms a batch.
_HIDE_BATCH = 4096


def _hide(batch: list[Any]) -> list[Any]:
    """Untrack the containers in `batch` (tracked lists and dicts of a parsed value) and return the
    tracked containers they hold. A dict of scalars is never tracked (CPython's rule), so what is
    left to walk is what still needs untracking."""
    deque(map(_GC_UNTRACK, batch), maxlen=0)
    return list(filter(gc.is_tracked, gc.get_referents(*batch)))


def _untrack(container: _Container) -> _Container:
    """`container`, hidden from the cycle collector: its items are scalars or hidden containers, so
    it can be in no cycle, while the collector would walk all its items (30-45 ms for 5 million
    numbers) each time it examines the container's generation."""
    _GC_UNTRACK(container)
    return container


# A list grown item by item past the C allocator's mmap threshold (up to 32 MB with glibc) is copied
# once into fresh pages: ~15-20 ms for an image of 5 million numbers, in one step. A list that asked
# for more room than that at first lives in mapped memory from then on, which grows in place
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
