"""Large bodies of many small values read and written in slices give exactly what orjson gives in one go.

`server/dense_json.parse_dense` must equal `orjson.loads` on every valid body (arrays of numbers, of
strings with every escape, of small objects, nested, objects with many or repeated keys) and never
accept an invalid one; `fakes/seed.dumps_in_slices` must equal `orjson.dumps` byte for byte, and
`derive_seed_in_slices` `derive_seed`. The slice sizes are shrunk here so that generated bodies of a
few hundred bytes are cut into many pieces, as a 20 MB body is with the real sizes.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.fakes import seed
from emulator.server.dense_json import Unsplittable, parse_dense
from tests.examples import property_examples
from tests.slicing import shrink_slices

SETTINGS = settings(max_examples=property_examples(60), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    shrink_slices(monkeypatch)
    monkeypatch.setattr(seed, "LARGE_PART", 64)
    yield


WS = st.sampled_from(["", "", "", " ", "\n", "\t", " \r\n "])
NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,6})(\.[0-9]{1,4})?([eE][+-]?[0-9]{1,2})?", fullmatch=True) | (
    st.sampled_from(["0", "-0", "-0.0", "255", "1E5", "1e-7", "18446744073709551615",
                     "123456789012345678901234567890"]))
# Strings that look like arrays, separators or cuts, which must stay strings.
TRICKY = st.sampled_from(["[1,2]", "[" + "1," * 30 + "1]", "a\\\"[" + "2, " * 20 + "3]", "[" + "7" * 40, "]",
                          "dense-json-", "[ ]", '","', '", "', "},{", "], [", ",", '"', "\\", "\\\"",
                          'a\\", "b', "{", "}", ":", "\u2028", "", "😀"])
UNICODE = st.text(st.characters(codec="utf-8"), max_size=12)
# A string as a client may write it: raw UTF-8 (orjson), every non-ASCII letter escaped as \uXXXX
# with surrogate pairs past the BMP (json.dumps), or with the escapes no serialiser picks.
STRING = st.one_of(
    (UNICODE | TRICKY).map(lambda s: orjson.dumps(s).decode()),
    (UNICODE | TRICKY).map(json.dumps),
    st.lists(st.sampled_from(["a", ",", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0041", "\\u00e9",
                              "\\ud83d\\ude00", "\\uD834\\uDD1E", "\\\\", '\\"', "[", "]", "é"]),
             max_size=8).map(lambda parts: '"' + "".join(parts) + '"'),
)
LITERAL = st.sampled_from(["true", "false", "null"])
SCALAR_TEXT = NUMBER | STRING | LITERAL


@st.composite
def numeric_array(draw: st.DrawFn) -> str:
    return _array(draw, draw(st.lists(NUMBER, max_size=40)))


def _array(draw: st.DrawFn, items: list[str]) -> str:
    if not items:
        return "[" + draw(WS) + "]"
    return "[" + draw(WS) + (draw(WS) + "," + draw(WS)).join(items) + draw(WS) + "]"


@st.composite
def scalar_array(draw: st.DrawFn) -> str:
    """A long flat array of one kind of scalar, or of all kinds mixed."""
    kind = draw(st.sampled_from([STRING, STRING, SCALAR_TEXT, LITERAL]))
    return _array(draw, draw(st.lists(kind, max_size=30)))


@st.composite
def small_object(draw: st.DrawFn) -> str:
    """A `messages` item: a few members, maybe a list of parts."""
    members = [f"{draw(STRING)}{draw(WS)}:{draw(WS)}{draw(SCALAR_TEXT | scalar_array())}"
               for _ in range(draw(st.integers(0, 3)))]
    return "{" + draw(WS) + ("," + draw(WS)).join(members) + draw(WS) + "}"


@st.composite
def object_array(draw: st.DrawFn) -> str:
    return _array(draw, draw(st.lists(small_object(), max_size=20)))


@st.composite
def value(draw: st.DrawFn, depth: int = 0) -> str:
    kinds = ["number", "string", "literal", "numbers", "scalars", "objects"] + (
        ["array", "object"] if depth < 5 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return draw(NUMBER)
    if kind == "string":
        return draw(STRING)
    if kind == "literal":
        return draw(LITERAL)
    if kind == "numbers":
        return draw(numeric_array())
    if kind == "scalars":
        return draw(scalar_array())
    if kind == "objects":
        return draw(object_array())
    items = draw(st.lists(value(depth + 1), max_size=4))
    if kind == "array":
        return "[" + draw(WS) + ",".join(f"{draw(WS)}{item}{draw(WS)}" for item in items) + draw(WS) + "]"
    # Keys repeat now and then: the last value wins, in the first key's place.
    keys = st.sampled_from(['"a"', '"b"', '"\\u0061"']) | STRING
    members = [f"{draw(WS)}{draw(keys)}{draw(WS)}:{draw(WS)}{item}" for item in items]
    return "{" + ",".join(members) + draw(WS) + "}"


BODIES = value().map(str.encode)


def _parsed(raw: bytes) -> Any:
    try:
        return asyncio.run(parse_dense(raw))
    except Unsplittable as exc:
        return exc


def _same(left: Any, right: Any) -> bool:
    """Equal as JSON values, telling 0 from 0.0 and -0.0 apart (== does not)."""
    return orjson.dumps(left) == orjson.dumps(right)


@SETTINGS
@given(raw=BODIES)
def test_a_valid_body_parses_as_orjson_parses_it(small_slices: None, raw: bytes) -> None:
    expected = orjson.loads(raw)
    parsed = _parsed(raw)
    assert not isinstance(parsed, Unsplittable), raw
    assert _same(parsed, expected)


EXTRA = st.sampled_from([b",", b"]", b"[", b'"', b" ", b"x", b".", b"-", b"e", b"1", b"{", b"}", b":",
                         b"\\", b"\\u", b"\\ud800", b"\\udc00", b"\\x", b"\n", b"\x00", b"\x0c", b"\xff",
                         b"\xe9", b"tru", b"nul", b'"a"', b"[]"])


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    """A body with one edit: where the cuts and the glue between pieces are (a comma before a closing
    bracket or brace, a comma doubled or dropped, a colon dropped, something after the document), or
    any byte inserted, deleted or cut off anywhere."""
    raw = draw(BODIES)

    def at(targets: bytes) -> int | None:
        places = [i for i, byte in enumerate(raw) if byte in targets]
        return draw(st.sampled_from(places)) if places else None

    edit = draw(st.sampled_from(["trailing-comma", "double-comma", "drop", "append", "insert", "delete",
                                 "truncate"]))
    if edit == "trailing-comma" and (i := at(b"]}")) is not None:
        return raw[:i] + b"," + raw[i:]
    if edit == "double-comma" and (i := at(b",")) is not None:
        return raw[:i] + b"," + raw[i:]
    if edit == "drop" and (i := at(b",:")) is not None:
        return raw[:i] + raw[i + 1:]
    if edit == "append":
        return raw + draw(EXTRA)
    where = draw(st.integers(0, len(raw)))
    if edit == "delete" and raw:
        where = min(where, len(raw) - 1)
        return raw[:where] + raw[where + 1:]
    if edit == "insert":
        return raw[:where] + draw(EXTRA) + raw[where:]
    return raw[:where]


@SETTINGS
@given(raw=broken())
def test_an_edited_body_is_never_read_differently_from_orjson(small_slices: None, raw: bytes) -> None:
    try:
        expected: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        expected = Unsplittable
    parsed = _parsed(raw)
    if isinstance(parsed, Unsplittable):
        return  # orjson on the whole body decides
    assert expected is not Unsplittable, raw
    assert _same(parsed, expected)


def test_long_arrays_of_numbers_are_read_in_pieces_the_collector_ignores() -> None:
    image = list(range(256)) * 400  # 102,400 numbers: several real pieces
    body = orjson.dumps({"image": image, "prompt": "[1, 2]", "nested": [[image], []]})
    value = asyncio.run(parse_dense(body))
    assert value == orjson.loads(body)
    # The arrays and what holds them are the cycle collector's to ignore (a JSON value is a tree).
    assert _tracked_containers(value) == 0 and isinstance(value["prompt"], str)


def _tracked_containers(value: Any) -> int:
    """How many lists and dicts in `value` (itself included) the cycle collector tracks."""
    tracked, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        else:
            continue
        tracked += gc.is_tracked(node)
    return tracked


@SETTINGS
@given(raw=BODIES)
def test_every_container_read_in_pieces_is_hidden_from_the_collector(small_slices: None, raw: bytes) -> None:
    """Parsed JSON holds no cycles: each container is untracked as its piece is read, and the value
    is still orjson's."""
    parsed = _parsed(raw)
    assert not isinstance(parsed, Unsplittable), raw
    assert _same(parsed, orjson.loads(raw))
    assert _tracked_containers(parsed) == 0, raw


def _short_texts(count: int) -> list[str]:
    import random

    rng = random.Random(7)
    return ["".join(rng.choices('ab ,[]{}:"\\é😀\n', k=rng.randrange(0, 80))) for _ in range(count)]


LARGE_BODIES: dict[str, dict[str, Any]] = {
    "strings": {"text": _short_texts(30_000)},
    "strings-escaped": {"text": _short_texts(20_000), "ascii": True},
    "messages": {"messages": [{"role": "user", "content": text} for text in _short_texts(20_000)]},
    "parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}
                           for text in _short_texts(10_000)]},
    "mixed": {"values": [[1, "a", None], True, 2.5, "x", {"k": [1, {"z": "y"}]}, -0.0] * 20_000},
    "many-keys": {f"key-{i}": [i, str(i)] for i in range(40_000)},
    "deep-items": {"items": [[[[[[i]]]]] for i in range(100_000)]},
    "long-strings": {"text": ["word, " * 60_000, "[1, 2]" * 30_000, *_short_texts(20_000)]},
}


def _wire_body(kind: str) -> bytes:
    value = LARGE_BODIES[kind]
    if value.get("ascii"):  # every non-ASCII letter as \uXXXX, surrogate pairs past the BMP
        return json.dumps(value, indent=1).encode()
    return orjson.dumps(value)


@pytest.fixture
def orjson_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each text the dense reader hands orjson."""
    from emulator.server import dense_json

    calls: list[int] = []
    loads = dense_json._Reader.loads

    def counted(text: bytes) -> Any:
        calls.append(len(text))
        return loads(text)

    monkeypatch.setattr(dense_json._Reader, "loads", staticmethod(counted))
    return calls


@pytest.mark.parametrize("kind", sorted(LARGE_BODIES))
def test_large_bodies_are_parsed_a_piece_at_a_time(orjson_calls: list[int], kind: str) -> None:
    """With the real piece size: the value is orjson's, and no orjson call is handed much more
    than two pieces (nor a string longer than a piece with no place to cut it)."""
    from emulator.server import dense_json

    body = _wire_body(kind)
    longest = max(len(orjson.dumps(text)) for text in LARGE_BODIES[kind].get("text", [""]))
    calls = orjson_calls
    value = asyncio.run(parse_dense(body))
    assert _same(value, orjson.loads(body)) and _tracked_containers(value) == 0
    assert len(body) > 1_000_000 and len(calls) > len(body) // (2 * dense_json.PIECE_BYTES)
    assert max(calls) <= max(2 * dense_json.PIECE_BYTES + 2, longest), (max(calls), len(body))


@pytest.mark.parametrize("body", [
    b'{"image": [' + b"1," * 50_000 + b"1",  # never closes
    b'{"image": [' + b"1," * 50_000 + b"]}",  # a comma before the bracket
    b'{"image": [' + b"1," * 50_000 + b",1]}",  # two commas
    b'{"image": [' + b"1," * 50_000 + b"1.]}",  # not a number
    b'{"text": [' + b'"ab",' * 50_000 + b"]}",
    b'{"text": [' + b'"ab",' * 50_000 + b'"a" "b"]}',  # no comma between two strings
    b'{"text": [' + b'"ab",' * 50_000 + b'"\\ud800"]}',  # a lone surrogate
    b'{"text": [' + b'"ab",' * 50_000 + b'"\\x"]}',  # not an escape
    b'{"text": [' + b'"ab",' * 50_000 + b'"a\tb"]}',  # a raw control character
    b'{"text": [' + b'"ab",' * 50_000 + b'"\xff"]}',  # not UTF-8
    b'{"text": [' + b'"ab",' * 50_000 + b'"ab]}',  # a string that never closes
    b'{"text": [' + b'"ab",' * 50_000 + b'"ab"]} x',  # something after the document
    b'{"m": [' + b'{"a": 1},' * 30_000 + b'{"a" 1}]}',  # no colon
    b'{"m": [' + b'{"a": 1},' * 30_000 + b'{"a": 1,}]}',  # a comma before the brace
    b'{' + b'"k": 1,' * 30_000 + b"}",  # a comma before the object's brace
    b"[" * 129 + b'"ab",' * 50_000 + b'"ab"' + b"]" * 129,  # deeper than the depth limit
    b'{"image": "' + b"QUJD" * 100_000 + b'\x01' + b"QUJD" * 10 + b'"}',  # a control character, long string
    b'{"image": "' + b"QUJD" * 100_000 + b'\xed\xa0\x80"}',  # a surrogate encoded, ending a long string
    b'{"image": "' + b"\xc3" * 300_001 + b'"}',  # a long string that is not UTF-8
    b'{"image": "' + b"QUJD" * 100_000 + b'\xe2\x82"}',  # a character cut short at its end
    b'{"image": "' + b"QUJD" * 100_000 + b'\\q"}',  # a bad escape in a long string
], ids=["unclosed", "trailing-comma", "double-comma", "bad-number", "strings-trailing-comma",
        "strings-no-comma", "lone-surrogate", "bad-escape", "control-character", "not-utf8", "open-string",
        "trailing", "no-colon", "object-trailing-comma", "top-trailing-comma", "too-deep",
        "long-string-control", "long-string-surrogate", "long-string-not-utf8", "long-string-cut",
        "long-string-bad-escape"])
def test_what_cannot_be_read_in_slices_is_left_to_orjson(body: bytes) -> None:
    with pytest.raises(Unsplittable):
        asyncio.run(parse_dense(body))


@pytest.mark.parametrize(("text", "pieces"), [
    ("QUJD" * 300_000, True),  # an image as base64
    ("é€😀a" * 40_000, True),  # characters of two to four bytes, cut before a character's first byte
    ("中文字符" * 60_000, True),  # no ASCII at all
    ("a\\\"b\n\u00e9" * 30_000, True),  # escapes, cut just after one ends
    ("\x01" * 300_000, False),  # nothing but `\u0001` escapes: no safe cut, one orjson call
], ids=["base64", "multibyte", "cjk", "escaped", "unicode-escapes"])
def test_a_string_longer_than_a_piece_is_read_in_pieces(orjson_calls: list[int], text: str,
                                                         pieces: bool) -> None:
    """A string of megabytes (an image as base64, a long text) is decoded a piece at a time, cut
    where no character and no escape is cut in two; one with no such place is one orjson call."""
    from emulator.server import dense_json

    body = orjson.dumps({"prompt": "hi", "image": text})
    assert asyncio.run(parse_dense(body)) == orjson.loads(body)
    assert (max(orjson_calls) <= 2 * dense_json.PIECE_BYTES) is pieces, max(orjson_calls)


def test_arrays_inside_strings_stay_strings() -> None:
    body = b'{"image": "[' + b"1," * 50_000 + b'1]", "text": ["' + b'\\", \\"' * 30_000 + b'"]}'
    assert asyncio.run(parse_dense(body)) == orjson.loads(body)


def test_nesting_up_to_the_limit_is_read() -> None:
    from emulator.limits import MAX_JSON_DEPTH

    body = b"[" * MAX_JSON_DEPTH + b'"ab",' * 50_000 + b'"ab"' + b"]" * MAX_JSON_DEPTH
    assert asyncio.run(parse_dense(body)) == orjson.loads(body)


async def _joined(value: Any, option: int) -> bytes:
    return b"".join([piece async for piece in seed.dumps_in_slices(value, option, slice_seconds=0.0)])


SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda items: st.lists(items, max_size=8) | st.dictionaries(st.text(max_size=6), items, max_size=5),
    max_leaves=60,
)


@SETTINGS
@given(value=JSON_VALUES, option=st.sampled_from([0, seed.CANONICAL, orjson.OPT_SERIALIZE_NUMPY]))
def test_dumps_in_slices_gives_orjsons_bytes(small_slices: None, value: Any, option: int) -> None:
    assert asyncio.run(_joined(value, option)) == orjson.dumps(value, option=option)


@SETTINGS
@given(parts=st.lists(JSON_VALUES | st.binary(max_size=200), min_size=1, max_size=4))
def test_derive_seed_in_slices_gives_derive_seeds_number(small_slices: None, parts: list[Any]) -> None:
    assert asyncio.run(seed.derive_seed_in_slices(*parts, slice_seconds=0.0)) == seed.derive_seed(*parts)


def test_an_image_of_five_million_numbers_gets_the_seed_it_always_had() -> None:
    image = [i % 256 for i in range(5_000_000)]
    inputs = {"image": image, "prompt": "what is in this picture?"}
    in_slices = asyncio.run(seed.derive_seed_in_slices(0, "@cf/llava-hf/llava-1.5-7b-hf", inputs,
                                                       slice_seconds=0.003))
    assert in_slices == seed.derive_seed(0, "@cf/llava-hf/llava-1.5-7b-hf", inputs)


def test_an_object_of_many_keys_gets_the_seed_it_always_had() -> None:
    """Keys sorted in runs and merged, members serialised a slice at a time: orjson's sorted bytes."""
    prefixes = ["k", "é", "日", "\U0001f600", "\x7f", ""]  # UTF-8 byte order is code point order
    extra = {prefixes[i % 6] + str(i): [i] if i % 7 else i for i in range(300_000)}
    inputs = {"prompt": "x", "extra": extra}
    for option in (seed.CANONICAL, 0):
        assert asyncio.run(_joined(inputs, option)) == orjson.dumps(inputs, option=option)
    assert asyncio.run(seed.derive_seed_in_slices(0, "m", inputs, slice_seconds=0.003)) == (
        seed.derive_seed(0, "m", inputs))


@pytest.mark.parametrize("repeated", [False, True], ids=["too-deep", "deep-branch-replaced"])
def test_a_body_whose_text_nests_too_deep_is_judged_on_its_value(repeated: bool) -> None:
    """Past the depth limit the pieces give up; the child process judges the whole body as
    `parse_json` judges a small one: too deep, unless a repeated key replaced the deep branch."""
    from emulator.errors import CFError
    from emulator.server.inputs import parse_json, parse_json_body

    deep = b"[" * 130 + b'"ab",' * 300_000 + b'"ab"' + b"]" * 130
    body = b'{"a": ' + deep + (b', "a": 0}' if repeated else b"}")
    small = body.replace(b'"ab",' * 300_000, b"")
    if repeated:
        assert asyncio.run(parse_json_body(body)) == parse_json(small) == {"a": 0}
        return
    with pytest.raises(CFError) as large_error:
        asyncio.run(parse_json_body(body))
    with pytest.raises(CFError) as small_error:
        parse_json(small)
    message = small_error.value.message
    assert large_error.value.message == message and "nested deeper" in message


def _parser_bytes() -> int:
    """Bytes still allocated by server/dense_json.py's lines (orjson's values are counted there too)."""
    import tracemalloc

    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/dense_json.py")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def _released(limit: int, seconds: float = 60.0) -> int:
    """The parser's bytes once this loop's releaser (`limits.free_in_slices`) has taken apart every
    body it keeps, or after `seconds`. Waiting on the releaser, not on snapshots, keeps the count to
    one snapshot: each takes seconds with a few hundred thousand traces, and a loaded machine once
    used up a 30-second wait on snapshots while the body was being freed."""
    from emulator import limits

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    releaser = limits._RELEASERS.get(loop)
    while releaser is not None and releaser.task is not None and not releaser.task.done():
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    while (left := _parser_bytes()) >= limit and loop.time() < deadline:
        await asyncio.sleep(0.5)
    return left


PARTS_BODY = orjson.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}
                                        for text in _short_texts(40_000)]})


async def test_hidden_containers_are_freed_with_the_value() -> None:
    """Untracked containers are still freed by reference counting: nothing the parser built outlives
    the value."""
    import tracemalloc

    tracemalloc.start()
    try:
        value = await parse_dense(PARTS_BODY)
        assert _tracked_containers(value) == 0 and len(PARTS_BODY) > 2_000_000
        await asyncio.sleep(0.2)
        assert _parser_bytes() > 2_000_000  # held while the value is
        del value
        assert await _released(64 * 1024) < 64 * 1024
    finally:
        tracemalloc.stop()


async def test_a_request_leaves_nothing_of_its_body_behind(emulator: Any) -> None:
    """Over HTTP: once the answer is sent, the parsed body (messages with lists of parts, every
    container untracked) is freed, whatever the route did with it."""
    import tracemalloc

    tracemalloc.start()
    try:
        answer = await emulator.run("@cf/meta/llama-3.1-8b-instruct", data=PARTS_BODY,
                                    headers={"Content-Type": "application/json"})
        assert answer.status == 400 and "'/messages/0/content'" in await answer.text()
        assert await _released(64 * 1024) < 64 * 1024
    finally:
        tracemalloc.stop()


def _utf8_at(value: Any, path: tuple[str, ...]) -> Any:
    """`value` with the string at `path` (when there is one) as its UTF-8 bytes."""
    if not path:
        return value.encode() if isinstance(value, str) else value
    if not isinstance(value, dict) or path[0] not in value:
        return value
    return {**value, path[0]: _utf8_at(value[path[0]], path[1:])}


@SETTINGS
@given(answer=STRING, around=st.lists(value(), max_size=3), wrapped=st.booleans())
def test_a_long_string_at_utf8_at_is_given_as_its_utf8_bytes(small_slices: None, answer: str,
                                                             around: list[str], wrapped: bool) -> None:
    """The string the keys `utf8_at` lead to, when longer than a piece (PIECE_BYTES, shrunk), comes
    as its UTF-8 bytes (a cassette line's long text answer, never one Python string); every other
    value, and that string below an array, as orjson gives it."""
    from emulator.server import dense_json

    members = [f'"n{at}": {item}' for at, item in enumerate(around)]
    body = '{"response": {"body": {"encoding": "text", "text": ' + answer + "}, " + ", ".join(
        [*members, '"status": 200']) + "}}"
    if wrapped:
        body = "[" + body + "]"
    raw = body.encode()
    expected = orjson.loads(raw)
    parsed = asyncio.run(parse_dense(raw, utf8_at=("response", "body", "text")))
    long = len(answer.encode()) > dense_json.PIECE_BYTES
    want = expected if wrapped or not long else _utf8_at(expected, ("response", "body", "text"))
    assert orjson.dumps(parsed, default=lambda b: {"utf8": b.decode()}) == orjson.dumps(
        want, default=lambda b: {"utf8": b.decode()})
