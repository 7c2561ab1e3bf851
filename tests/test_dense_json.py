"""Large bodies of numbers read and written in slices give exactly what orjson gives in one go.

`server/dense_json.parse_dense` must equal `orjson.loads` on every valid body and never accept an
invalid one; `fakes/seed.dumps_in_slices` must equal `orjson.dumps` byte for byte, and
`derive_seed_in_slices` `derive_seed`. The slice sizes are shrunk here so that generated bodies of a
few hundred bytes are cut into many windows and pieces, as an 18 MB image is with the real sizes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.fakes import seed
from emulator.limits import json_depth
from emulator.server.dense_json import Unsplittable, parse_dense
from tests.slicing import shrink_slices

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
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
# Strings that look like arrays of numbers, which must stay strings.
TRICKY = st.sampled_from(["[1,2]", "[" + "1," * 30 + "1]", "a\\\"[" + "2, " * 20 + "3]", "[" + "7" * 40, "]",
                          "dense-json-", "[ ]"])
STRING = (st.text(max_size=12) | TRICKY).map(lambda s: orjson.dumps(s).decode())


@st.composite
def numeric_array(draw: st.DrawFn) -> str:
    numbers = draw(st.lists(NUMBER, max_size=40))
    if not numbers:
        return "[" + draw(WS) + "]"
    return "[" + draw(WS) + (draw(WS) + "," + draw(WS)).join(numbers) + draw(WS) + "]"


@st.composite
def value(draw: st.DrawFn, depth: int = 0) -> str:
    kinds = ["number", "string", "literal", "numbers"] + (["array", "object"] if depth < 4 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return draw(NUMBER)
    if kind == "string":
        return draw(STRING)
    if kind == "literal":
        return draw(st.sampled_from(["true", "false", "null"]))
    if kind == "numbers":
        return draw(numeric_array())
    items = draw(st.lists(value(depth + 1), max_size=4))
    if kind == "array":
        return "[" + draw(WS) + ",".join(f"{draw(WS)}{item}{draw(WS)}" for item in items) + draw(WS) + "]"
    members = [f"{draw(WS)}{draw(STRING)}{draw(WS)}:{draw(WS)}{item}" for item in items]
    return "{" + ",".join(members) + draw(WS) + "}"


BODIES = value().map(str.encode)


def _parsed(raw: bytes) -> tuple[Any, int] | Unsplittable | None:
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
    if parsed is None:
        return  # no long array of numbers outside strings: the caller parses with orjson
    if isinstance(parsed, Unsplittable):
        # Only when what looked like an array of numbers is inside a string.
        assert b'"' in raw
        return
    value, depth = parsed
    assert _same(value, expected)
    assert depth == json_depth(expected)


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    raw = draw(BODIES)
    at = draw(st.integers(0, len(raw)))
    edit = draw(st.sampled_from(["delete", "insert", "truncate"]))
    if edit == "delete" and raw:
        at = min(at, len(raw) - 1)
        return raw[:at] + raw[at + 1:]
    if edit == "insert":
        extra = draw(st.sampled_from([b",", b"]", b"[", b'"', b" ", b"x", b".", b"-", b"e", b"1"]))
        return raw[:at] + extra + raw[at:]
    return raw[:at]


@SETTINGS
@given(raw=broken())
def test_an_edited_body_is_never_read_differently_from_orjson(small_slices: None, raw: bytes) -> None:
    try:
        expected: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        expected = Unsplittable
    parsed = _parsed(raw)
    if parsed is None or isinstance(parsed, Unsplittable):
        return  # orjson on the whole body decides
    assert expected is not Unsplittable, raw
    assert _same(parsed[0], expected)


def test_long_arrays_of_numbers_are_found_and_the_rest_is_left_alone() -> None:
    image = list(range(256)) * 400  # 102,400 numbers: past the real scan window
    body = orjson.dumps({"image": image, "prompt": "[1, 2]", "nested": [[image], []]})
    value, depth = asyncio.run(parse_dense(body))
    assert value == orjson.loads(body)
    assert depth == 4  # object, array, array, the image
    # The arrays are the cycle collector's to ignore (numbers hold no references).
    assert not gc.is_tracked(value["image"]) and not gc.is_tracked(value["nested"][0][0])
    assert gc.is_tracked(value) and isinstance(value["prompt"], str)


@pytest.mark.parametrize("body", [
    b'{"image": [' + b"1," * 50_000 + b"1",  # never closes
    b'{"image": [' + b"1," * 50_000 + b"]}",  # a comma before the bracket
    b'{"image": [' + b"1," * 50_000 + b",1]}",  # two commas
    b'{"image": [' + b"1," * 50_000 + b"1.]}",  # not a number
    b'{"image": "[' + b"1," * 50_000 + b'1]"}',  # inside a string: valid, left to orjson
], ids=["unclosed", "trailing-comma", "double-comma", "bad-number", "in-a-string"])
def test_what_cannot_be_read_in_slices_is_left_to_orjson(body: bytes) -> None:
    with pytest.raises(Unsplittable):
        asyncio.run(parse_dense(body))


def test_a_body_whose_bulk_is_not_numbers_is_left_to_orjson() -> None:
    body = orjson.dumps({"image": list(range(50_000)), "words": ["a"] * 200_000})
    assert asyncio.run(parse_dense(body)) is None


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
