"""Seeded values generated from a JSON Schema: tool arguments, json_schema content, generic outputs.

Rules decided here (the emulator relies on them being stable):

- Everything comes from the numpy generator passed in, so one rng state gives one value.
- ``const``/``enum`` pick from the schema; ``default`` is ignored (generated values look livelier).
- A type list uses its first non-null type; with no ``type`` the kind is inferred from the
  keywords present (properties → object, items → array, minimum → number, else string).
- Objects get every required property and, at depth < 3, each optional one with probability ½.
  Arrays get 1–3 items within minItems/maxItems. Numbers stay inside their (exclusive) bounds,
  using [0, 100] for unbounded integers and [0, 1] for unbounded numbers.
- Strings are words from a small list (or ``words``), fitted to minLength/maxLength;
  ``format: binary`` gives a short base64 string; date-time/date/time/uri/email/uuid give
  well-formed values; a ``pattern`` is served by a realistic data URI when one matches, else by a
  tiny generator over the parsed regex, else a fixed safe string, else ''.
- oneOf/anyOf start at an rng-chosen branch (parent keywords merged in) and fall back to the
  other branches, then to a minimal object, until the value satisfies the whole schema — for
  oneOf, exactly one branch. When no branch can be hit alone (branches without ``required`` that
  every object satisfies), the value of the first branch that validates under the emulator's
  own ≥1-match oneOf rule is returned rather than padding it with keys that would poison the
  other branches.
- Recursion deeper than 6 produces minimal values (required keys only, minItems items).
"""

from __future__ import annotations

import base64
import copy
import math
import re
import re._parser as sre_parse  # type: ignore[import-not-found]  # the stdlib regex parser: a pattern's plan
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from emulator.validation.schema import CompiledSchema, compile_schema

MAX_DEPTH: Final = 6
OPTIONAL_DEPTH: Final = 3

WORDS: Final[tuple[str, ...]] = (
    "amber", "anchor", "answer", "apple", "arrow", "autumn", "basket", "beacon", "bright", "bridge",
    "candle", "canyon", "cedar", "circle", "cloud", "copper", "coral", "delta", "ember", "engine",
    "falcon", "field", "forest", "garden", "glacier", "harbor", "island", "jasper", "kernel",
    "lantern", "linen", "maple", "meadow", "mirror", "morning", "native", "north", "ocean", "orbit",
    "paper", "pepper", "planet", "quiet", "river", "rocket", "saddle", "signal", "silver", "spring",
    "stone", "summer", "timber", "travel", "valley", "velvet", "willow", "window", "winter",
    "yellow", "zephyr",
)  # fmt: skip

# Realistic values tried first for `pattern` strings (the catalog's patterns are data-URI prefixes).
_DATA_URIS: Final = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "data:audio/mpeg;base64,SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4LjI5LjEwMAAAAAAAAAAAAAAA",
    "data:video/mp4;base64,AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDE=",
)
_SAFE_STRINGS: Final = ("example", "abc123XYZ", "0", "a", "https://example.com/")

_SPACE_CHAR: Final = " "


# ---------------------------------------------------------------- compiled-schema cache

_COMPILED: dict[tuple[int, bool], tuple[object, CompiledSchema]] = {}
_COMPILED_LIMIT: Final = 2048


def _compiled(schema: Any, strict: bool) -> CompiledSchema:
    # Keyed by id() but the entry keeps the schema alive, so the id cannot be recycled while cached.
    key = (id(schema), strict)
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_COMPILED) >= _COMPILED_LIMIT:
        _COMPILED.clear()
    compiled = compile_schema(schema if isinstance(schema, dict) else None, strict_one_of=strict)
    _COMPILED[key] = (schema, compiled)
    return compiled


_MERGED: dict[tuple[int, str], tuple[object, list[Any]]] = {}


def _merged_parts(schema: dict[str, Any], keyword: str) -> list[Any]:
    """The schema's oneOf/anyOf branches with the parent's keywords merged in (allOf: one merge).

    Memoised so that the merged dicts are the same objects on every call, which lets
    `_compiled` hit its cache for the nested combinators they contain.
    """
    key = (id(schema), keyword)
    hit = _MERGED.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_MERGED) >= _COMPILED_LIMIT:
        _MERGED.clear()
    base = {k: v for k, v in schema.items() if k != keyword}
    if keyword == "allOf":
        merged = base
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged = _merge(merged, part)
        parts: list[Any] = [merged]
    else:
        parts = [_merge(base, b) if isinstance(b, dict) else base for b in schema[keyword]]
    _MERGED[key] = (schema, parts)
    return parts


# ---------------------------------------------------------------- schema helpers


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Overlay `extra` on `base`, uniting properties and required (allOf / oneOf-with-parent)."""
    out = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        else:
            out[key] = value
    return out


def _kind(schema: dict[str, Any]) -> str:
    raw = schema.get("type")
    if isinstance(raw, list):
        real = [t for t in raw if isinstance(t, str) and t != "null"]
        return real[0] if real else "null"
    if isinstance(raw, str):
        return raw
    keys = schema.keys()
    if keys & {"properties", "required", "additionalProperties", "minProperties", "maxProperties"}:
        return "object"
    if keys & {"items", "minItems", "maxItems"}:
        return "array"
    if keys & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        return "number"
    return "string"


def _is_binary_string(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "string" and schema.get("format") == "binary"


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _num_or_none(value: Any) -> float | None:
    return value if type(value) in (int, float) else None


# ---------------------------------------------------------------- regex strings


def _category_char(category: Any) -> str:
    name = getattr(category, "name", str(category))
    return {
        "CATEGORY_DIGIT": "7",
        "CATEGORY_NOT_DIGIT": "a",
        "CATEGORY_SPACE": _SPACE_CHAR,
        "CATEGORY_NOT_SPACE": "x",
        "CATEGORY_WORD": "w",
        "CATEGORY_NOT_WORD": "-",
    }.get(name, "a")


def _from_regex(items: Any, rng: np.random.Generator) -> str | None:
    out: list[str] = []
    for op, arg in items:
        name = getattr(op, "name", str(op))
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "ANY":
            out.append("x")
        elif name == "AT":
            continue
        elif name == "CATEGORY":
            out.append(_category_char(arg))
        elif name == "IN":
            char = _from_class(arg, rng)
            if char is None:
                return None
            out.append(char)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            # optional repeats stay empty: '^\s*clef\s*$' → 'clef', not '   clef  '
            count = 0 if low == 0 else int(rng.integers(low, min(high, low + 3) + 1))
            for _ in range(count):
                piece = _from_regex(sub, rng)
                if piece is None:
                    return None
                out.append(piece)
        elif name == "SUBPATTERN":
            piece = _from_regex(arg[-1], rng)
            if piece is None:
                return None
            out.append(piece)
        elif name == "BRANCH":
            alternatives = arg[1]
            piece = _from_regex(alternatives[int(rng.integers(len(alternatives)))], rng)
            if piece is None:
                return None
            out.append(piece)
        else:
            return None
    return "".join(out)


def _from_class(items: Any, rng: np.random.Generator) -> str | None:
    ranges: list[tuple[int, int]] = []
    for op, arg in items:
        name = getattr(op, "name", str(op))
        if name == "LITERAL":
            ranges.append((arg, arg))
        elif name == "RANGE":
            ranges.append(arg)
        elif name == "CATEGORY":
            code = ord(_category_char(arg))
            ranges.append((code, code))
        else:
            return None  # negated classes and the like: let the safe strings try instead
    if not ranges:
        return None
    low, high = ranges[int(rng.integers(len(ranges)))]
    return chr(int(rng.integers(low, high + 1)))


# ---------------------------------------------------------------- generator


class _Generator:
    """One generation run: the rng, the word list and the recursive builders."""

    def __init__(self, rng: np.random.Generator, words: Sequence[str] | None) -> None:
        self.rng = rng
        self.words: Sequence[str] = words if words else WORDS

    # ------------------------------------------------------------ dispatch

    def value(self, schema: Any, depth: int, minimal: bool = False) -> Any:
        if schema is True or schema is None or not isinstance(schema, dict) or not schema:
            return self.word()
        if "const" in schema:
            return copy.deepcopy(schema["const"])
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return copy.deepcopy(enum[int(self.rng.integers(len(enum)))])
        minimal = minimal or depth > MAX_DEPTH
        if isinstance(schema.get("allOf"), list):
            return self.value(_merged_parts(schema, "allOf")[0], depth, minimal)
        for keyword in ("oneOf", "anyOf"):
            if isinstance(schema.get(keyword), list) and schema[keyword]:
                return self.choose(schema, keyword, depth, minimal)
        kind = _kind(schema)
        if kind == "object":
            return self.object(schema, depth, minimal)
        if kind == "array":
            return self.array(schema, depth, minimal)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return bool(self.rng.integers(2))
        if kind == "null":
            return None
        return self.string(schema)

    def choose(self, schema: dict[str, Any], keyword: str, depth: int, minimal: bool) -> Any:
        branches = _merged_parts(schema, keyword)
        strict = _compiled(schema, True)
        lenient = _compiled(schema, False)
        start = int(self.rng.integers(len(branches)))
        fallback: Any = None
        found_fallback = False
        last: Any = None
        for step in range(len(branches)):
            merged = branches[(start + step) % len(branches)]
            for as_minimal in (minimal, True) if not minimal else (True,):
                candidate = self.value(merged, depth, as_minimal)
                if strict.is_valid(candidate):
                    return candidate
                if not found_fallback and lenient.is_valid(candidate):
                    fallback, found_fallback = candidate, True
                last = candidate
        return fallback if found_fallback else last

    # ------------------------------------------------------------ kinds

    def object(self, schema: dict[str, Any], depth: int, minimal: bool) -> dict[str, Any]:
        raw_props = schema.get("properties")
        props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
        raw_required = schema.get("required")
        required = [r for r in raw_required if isinstance(r, str)] if isinstance(raw_required, list) else []
        additional = schema.get("additionalProperties", True)
        extra_schema: Any = additional if isinstance(additional, dict) else {}
        optional_ok = not minimal and depth < OPTIONAL_DEPTH
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (optional_ok and self.rng.random() < 0.5):
                out[name] = self.value(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = self.value(extra_schema, depth + 1)
        if (
            additional is not False
            and isinstance(additional, dict)
            and additional
            and not props
            and optional_ok
        ):
            for _ in range(int(self.rng.integers(1, 3))):
                out.setdefault(self.word(), self.value(additional, depth + 1))
        min_props = _int_or_none(schema.get("minProperties")) or 0
        for name, sub in props.items():
            if len(out) >= min_props:
                break
            out.setdefault(name, self.value(sub, depth + 1))
        counter = 0
        while len(out) < min_props and additional is not False:
            counter += 1
            out.setdefault(f"{self.word()}_{counter}", self.value(extra_schema, depth + 1))
        max_props = _int_or_none(schema.get("maxProperties"))
        if max_props is not None:
            for name in [k for k in reversed(out) if k not in required]:
                if len(out) <= max_props:
                    break
                del out[name]
        return out

    def array(self, schema: dict[str, Any], depth: int, minimal: bool) -> list[Any]:
        items = schema.get("items")
        low = max(_int_or_none(schema.get("minItems")) or 0, 0)
        high = _int_or_none(schema.get("maxItems"))
        if isinstance(items, list):
            out = [self.value(sub, depth + 1, minimal) for sub in items]
            while len(out) < low:
                out.append(self.value(schema.get("additionalItems") or {}, depth + 1, minimal))
            return out
        if high is not None and high < max(low, 1):
            count = high
        elif minimal:
            count = max(low, 1)
        else:
            top = max(low, 1, min(high if high is not None else 3, 3))
            count = int(self.rng.integers(max(low, 1), top + 1))
        return [self.value(items, depth + 1, minimal) for _ in range(count)]

    def integer(self, schema: dict[str, Any]) -> int:
        low: int | None = None
        high: int | None = None
        minimum, maximum = _num_or_none(schema.get("minimum")), _num_or_none(schema.get("maximum"))
        ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if minimum is not None:
            low = (
                math.floor(minimum) + 1
                if ex_min is True and float(minimum).is_integer()
                else math.ceil(minimum)
            )
        ex_min_bound, ex_max_bound = _num_or_none(ex_min), _num_or_none(ex_max)
        if ex_min_bound is not None:
            candidate = math.floor(ex_min_bound) + 1
            low = candidate if low is None else max(low, candidate)
        if maximum is not None:
            high = (
                math.ceil(maximum) - 1
                if ex_max is True and float(maximum).is_integer()
                else math.floor(maximum)
            )
        if ex_max_bound is not None:
            candidate = math.ceil(ex_max_bound) - 1
            high = candidate if high is None else min(high, candidate)
        if low is None and high is None:
            low, high = 0, 100
        elif low is None:
            assert high is not None
            low = 0 if high >= 0 else high - 100
        elif high is None:
            high = low + 100
        if high < low:
            return low
        # keep values human-sized inside huge ranges such as seed ∈ [1, 9999999999]
        high = min(high, low + 1000)
        return int(self.rng.integers(low, high + 1))

    def number(self, schema: dict[str, Any]) -> float | int:
        minimum, maximum = _num_or_none(schema.get("minimum")), _num_or_none(schema.get("maximum"))
        ex_min, ex_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        low, high = minimum, maximum
        low_open = ex_min is True
        high_open = ex_max is True
        ex_min_bound, ex_max_bound = _num_or_none(ex_min), _num_or_none(ex_max)
        if ex_min_bound is not None and (low is None or ex_min_bound >= low):
            low, low_open = ex_min_bound, True
        if ex_max_bound is not None and (high is None or ex_max_bound <= high):
            high, high_open = ex_max_bound, True
        if low is None and high is None:
            low, high = 0.0, 1.0
        elif low is None:
            assert high is not None
            low = min(0.0, high - 1.0)
        elif high is None:
            high = low + 1.0
        value = round(float(low) + float(self.rng.random()) * (float(high) - float(low)), 4)

        def inside(v: float) -> bool:
            above = v > low if low_open else v >= low
            below = v < high if high_open else v <= high
            return above and below

        for candidate in (value, (float(low) + float(high)) / 2, float(low), float(high)):
            if inside(candidate):
                return candidate
        return float(low)

    def string(self, schema: dict[str, Any]) -> str:
        min_len = _int_or_none(schema.get("minLength")) or 0
        max_len = _int_or_none(schema.get("maxLength"))
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            return self.patterned(pattern, min_len, max_len)
        fmt = schema.get("format")
        text: str
        if fmt == "binary" or fmt == "byte":
            size = int(self.rng.integers(6, 13))
            text = base64.b64encode(self.rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()).decode()
        elif fmt == "date-time":
            text = self.date() + "T" + self.time() + "Z"
        elif fmt == "date":
            text = self.date()
        elif fmt == "time":
            text = self.time()
        elif fmt in ("uri", "url", "iri", "uri-reference"):
            text = f"https://example.com/{self.word()}"
        elif fmt in ("email", "idn-email"):
            text = f"{self.word()}@example.com"
        elif fmt == "uuid":
            raw = self.rng.integers(0, 256, size=16, dtype=np.uint8).tobytes().hex()
            text = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:32]}"
        elif fmt in ("hostname", "idn-hostname"):
            text = f"{self.word()}.example.com"
        elif fmt == "ipv4":
            text = ".".join(str(int(b)) for b in self.rng.integers(1, 255, size=4))
        else:
            text = self.text(int(self.rng.integers(1, 5)))
        return self.fit(text, min_len, max_len)

    def patterned(self, pattern: str, min_len: int, max_len: int | None) -> str:
        try:
            search = re.compile(pattern).search
        except re.error:
            return self.fit(self.word(), min_len, max_len)

        def fits(text: str) -> bool:
            return len(text) >= min_len and (max_len is None or len(text) <= max_len) and bool(search(text))

        for candidate in _DATA_URIS:
            if fits(candidate):
                return candidate
        try:
            generated = _from_regex(sre_parse.parse(pattern), self.rng)
        except (re.error, RecursionError, ValueError, TypeError):
            generated = None
        if generated is not None and fits(generated):
            return generated
        for candidate in (self.word(), *_SAFE_STRINGS):
            if fits(candidate):
                return candidate
        return ""

    # ------------------------------------------------------------ text pieces

    def word(self) -> str:
        return str(self.words[int(self.rng.integers(len(self.words)))])

    def text(self, count: int) -> str:
        return " ".join(self.word() for _ in range(max(count, 1)))

    def fit(self, text: str, min_len: int, max_len: int | None) -> str:
        while len(text) < min_len:
            text = f"{text} {self.word()}"
        if max_len is not None and len(text) > max_len:
            text = text[:max_len].rstrip() or text[:max_len]
            if len(text) < min_len:
                text = text.ljust(min_len, "x")
        return text

    def date(self) -> str:
        month, day = int(self.rng.integers(1, 13)), int(self.rng.integers(1, 29))
        return f"2024-{month:02d}-{day:02d}"

    def time(self) -> str:
        h, m, s = (int(v) for v in self.rng.integers(0, [24, 60, 60]))
        return f"{h:02d}:{m:02d}:{s:02d}"


# ---------------------------------------------------------------- public API


def fake_from_schema(
    schema: dict[str, Any],
    rng: np.random.Generator,
    *,
    depth: int = 0,
    words: Sequence[str] | None = None,
) -> Any:
    """A value valid against `schema`, fixed by the rng state (see the module docstring)."""
    return _Generator(rng, words).value(schema, depth)


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    for keyword in ("oneOf", "anyOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            return _merged_parts(schema, keyword)
    return [schema]


def valid_input_examples(schema: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    """One valid body per top-level oneOf/anyOf branch (small bytes for binary-string branches)."""
    if not schema:
        return [fake_from_schema(schema, rng)]
    strict = _compiled(schema, True)
    lenient = _compiled(schema, False)
    generator = _Generator(rng, None)
    examples: list[Any] = []
    for branch in _branches(schema):
        if _is_binary_string(branch):
            candidate: Any = b"RIFF" + rng.integers(0, 256, size=12, dtype=np.uint8).tobytes()
            if lenient.is_valid(candidate):
                examples.append(candidate)
            continue
        attempts = [generator.value(branch, 0, minimal) for minimal in (False, True, False)]
        chosen = next((a for a in attempts if strict.is_valid(a)), None)
        if chosen is None:
            chosen = next((a for a in attempts if lenient.is_valid(a)), None)
        if chosen is not None:
            examples.append(chosen)
    return examples


_WRONG_VALUES: Final[tuple[Any, ...]] = (12345, "not-a-valid-value", None, [], {}, True)


def invalid_input_examples(schema: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    """A few bodies the validator must reject: wrong root type, missing required, bad values."""
    if not schema:
        return []
    validator = _compiled(schema, False)
    candidates: list[Any] = [12345, [1.5, "x"], None, True]
    for example in valid_input_examples(schema, rng):
        if not isinstance(example, dict):
            continue
        for key in example:
            candidates.append({k: v for k, v in example.items() if k != key})
        for key, value in example.items():
            for wrong in _WRONG_VALUES:
                if type(wrong) is not type(value):
                    candidates.append({**example, key: wrong})
                    break
            candidates.append({**example, key: "__not_in_enum__"})
        candidates.append({**example, "__unexpected_property__": 1})
    out: list[Any] = []
    seen: set[str] = set()
    for candidate in candidates:
        if validator.is_valid(candidate):
            continue
        marker = repr(candidate)
        if marker in seen:
            continue
        seen.add(marker)
        out.append(candidate)
        if len(out) >= 8:
            break
    return out
