"""JSON Schema validation of /ai/run bodies, worded like Cloudflare's 5006 'Bad input' messages.

A schema is compiled once into a tree of closures (`compile_schema`); each node has a fast
`ok(instance) -> bool` used on the happy path and a `collect(instance, path, out)` that is only
run when `ok` said no, so valid requests never build paths or strings.

Wording seen in real Cloudflare answers (fixtures/real/err-5006-*.json,
fixtures/observations/err-rest-envelopes-notebook-2024.json):

- ``Type mismatch of '<path>', '<expected>' not in '<actual>'`` — expected is the schema's
  type list (``'string','null'``), actual the instance's JSON type (``'string' not in 'null'``,
  ``'string' not in 'object'``, ``'array' not in 'string'`` for a string where an array is
  wanted). A JSON array whose items are all integers 0..255 is reported as ``'array','binary'``
  (moondream / whisper-large-v3-turbo answers quote ``'string' not in 'array','binary'`` for
  byte arrays). Exception, fitted to the evidence: any other array instance is printed first,
  ``'array' not in '<expected>'`` — three independent real captures of OpenAI content-part
  arrays sent to a string ``content`` read ``Type mismatch of '/messages/0/content', 'array'
  not in 'string'``, which no expected-first rule can produce. A type mismatch stops validation
  of that location.
- ``required properties at '<path>' are '<a,b>'`` — the whole ``required`` list, emitted when any
  member is missing.
- ``Additional or unevaluated properties '<path/x, path/y>' at '<path>' not allowed``.
- ``oneOf at '<path>' not met, <n> matches: <branch errors>`` and ``anyOf at '<path>' not met:
  <branch errors>`` (no count for anyOf, as in the new-api#4605 quote).
- ``enum <value> not in <a,b> at '<path>'`` (new-api#4605 quotes
  ``enum function not in custom at '/tools/0/type'``; the join of several allowed values is
  inferred to match ``required``'s comma join).

Inferred (never seen in a real answer; same style, documented here so tests can pin them):

- ``const <value> not <const> at '<path>'`` (mirrors the enum wording).
- ``minimum at '<path>' not met, 0 < 1``; ``maximum ... 99999 > 2048``;
  ``exclusiveMinimum ... 0 <= 0``; ``exclusiveMaximum ... 2 >= 2``.
- ``minLength at '<path>' not met, 0 < 1`` / ``maxLength ... 9 > 8``; the same shape for
  ``minItems``/``maxItems`` and ``minProperties``/``maxProperties``.
- ``pattern at '<path>' not met, '<value>' does not match '<pattern>'`` (Python ``re.search``).
- ``not at '<path>' not met`` and ``false schema at '<path>'`` for boolean ``false`` subschemas.
- Order at one location: type, enum, const, string/number/array keywords, then object keywords
  (``properties`` in schema order, ``required``, ``additionalProperties``, min/maxProperties),
  then ``not``, ``allOf``, ``anyOf``, ``oneOf``. Nothing short-circuits inside a branch.
- oneOf counts as met when at least one branch matches (``strict_one_of=False``, the default).
  The saved catalog's llama-3.3-70b-instruct-fp8-fast input has an "Async Batch" branch with no
  ``required``, so every Prompt/Messages body also matches it; the live API accepts those bodies,
  so the live check cannot be JSON Schema's exactly-one rule (no real "2 matches" answer has
  been seen). ``strict_one_of=True`` restores the exactly-one rule and its
  ``oneOf at '<path>' not met, 2 matches`` error.
- Joining: errors are joined with ``', '``; a oneOf/anyOf head is joined to its own first branch
  error with ``': '``. The final message gets an ``Error: `` prefix unless every error is an
  additionalProperties error (the flux-1-schnell answer has no prefix, every other one does).
- Types: ``integer`` accepts Python ints only (not 3.0, never bools); ``number`` accepts ints and
  floats. ``{"type":"string","format":"binary"}`` also accepts ``bytes`` (a raw request body);
  plain ``"string"`` does not, and the actual type of ``bytes`` is reported as ``'binary'``.
  Other ``format`` values are not checked. Unknown keywords and unknown type names are ignored.
- Bounds (the emulator's, not Cloudflare's; docs/reliability.md): a message stops at
  ``MAX_MESSAGE_CHARS`` characters and ends with ``…``; a walk over an instance's items or keys
  stops collecting once its list holds ``MAX_COLLECTED_ERRORS`` errors or that many characters, and
  a shown value is cut to that many characters. A 5-million-item array of wrong types so costs a
  few hundred errors, not a 300 MB message. Messages under the bound are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeGuard

import orjson

Ok = Callable[[object], bool]
Collect = Callable[[object, str, list[str]], None]

_ADDITIONAL: Final = "Additional or unevaluated properties "
MAX_MESSAGE_CHARS: Final = 16_384  # the longest message a catalog schema yields for a plausible body: ~3,700
MAX_COLLECTED_ERRORS: Final = 256
_MORE: Final = "…"
_SHOWN_ITEMS: Final = 4_096  # items of a list or object dumped to show it; the text is cut after
_BYTES_TYPES: Final = (bytes, bytearray, memoryview)


def _always(_x: object) -> bool:
    return True


def _never(_x: object) -> bool:
    return False


def _collect_nothing(_x: object, _path: str, _out: list[str]) -> None:
    return None


def _collect_false(_x: object, path: str, out: list[str]) -> None:
    out.append(f"false schema at '{path}'")


class _Node:
    """One compiled location: a fast predicate plus an error collector that agrees with it."""

    __slots__ = ("collect", "ok", "trivial")

    def __init__(self, ok: Ok, collect: Collect, trivial: bool = False) -> None:
        self.ok = ok
        self.collect = collect
        self.trivial = trivial


_ACCEPT: Final = _Node(_always, _collect_nothing, trivial=True)
_REJECT: Final = _Node(_never, _collect_false)


# ---------------------------------------------------------------- types


def _is_string(x: object) -> bool:
    return isinstance(x, str)


def _is_binary_string(x: object) -> bool:
    return isinstance(x, (str, *_BYTES_TYPES))


def _is_binary(x: object) -> bool:
    return isinstance(x, _BYTES_TYPES)


def _is_object(x: object) -> bool:
    return isinstance(x, dict)


def _is_array(x: object) -> bool:
    return isinstance(x, (list, tuple))


def _is_number(x: object) -> TypeGuard[int | float]:
    # type() rather than isinstance so that bool (a subclass of int) is never a number
    t = type(x)
    return t is int or t is float


def _is_integer(x: object) -> bool:
    return type(x) is int


def _is_boolean(x: object) -> bool:
    return type(x) is bool


def _is_null(x: object) -> bool:
    return x is None


_TYPE_PREDICATES: Final[dict[str, Ok]] = {
    "string": _is_string,
    "object": _is_object,
    "array": _is_array,
    "number": _is_number,
    "integer": _is_integer,
    "boolean": _is_boolean,
    "null": _is_null,
    "binary": _is_binary,
}


def json_type(instance: object) -> str:
    """The JSON type name of a Python value as the error messages print it ('binary' for bytes)."""
    if instance is None:
        return "null"
    t = type(instance)
    if t is bool:
        return "boolean"
    if t is int:
        return "integer"
    if t is float:
        return "number"
    if isinstance(instance, str):
        return "string"
    if isinstance(instance, dict):
        return "object"
    if isinstance(instance, (list, tuple)):
        return "array"
    if isinstance(instance, _BYTES_TYPES):
        return "binary"
    if isinstance(instance, int):
        return "integer"
    if isinstance(instance, float):
        return "number"
    return type(instance).__name__


def _is_byte_array(x: Sequence[object]) -> bool:
    return bool(x) and all(type(v) is int and 0 <= v <= 255 for v in x)


def _actual_types(instance: object) -> str:
    name = json_type(instance)
    if name == "array" and _is_byte_array(instance):  # type: ignore[arg-type]
        return "'array','binary'"
    return f"'{name}'"


# ---------------------------------------------------------------- formatting helpers


def _num(v: object) -> str:
    # JavaScript prints whole floats without ".0"; the real validator runs in JS
    if type(v) is float and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return str(v)


def _show(v: object) -> str:
    if isinstance(v, str):
        return _cut(v)
    if v is None:
        return "null"
    if type(v) is bool:
        return "true" if v else "false"
    if _is_number(v):
        return _num(v)
    if isinstance(v, (list, tuple)) and len(v) > _SHOWN_ITEMS:
        return _cut(_show(list(v[:_SHOWN_ITEMS])))
    if isinstance(v, dict) and len(v) > _SHOWN_ITEMS:
        return _cut(_show(dict(list(v.items())[:_SHOWN_ITEMS])))
    try:
        return _cut(orjson.dumps(v).decode())
    except TypeError:
        return json_type(v)


def _full(out: list[str]) -> bool:
    """True once `out` holds as much as a message can show: walks over an instance's items stop."""
    return len(out) >= MAX_COLLECTED_ERRORS or sum(map(len, out)) > MAX_MESSAGE_CHARS


def _stop(out: list[str]) -> None:
    """Mark a walk cut short by `_full`, once."""
    if not out or out[-1] != _MORE:
        out.append(_MORE)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + _MORE


def _escape(key: str) -> str:
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def _base(path: str) -> str:
    return "" if path == "/" else path


def _joined(head: str, errors: list[str]) -> str:
    return f"{head}: {', '.join(errors)}" if errors else head


def _json_equal(a: object, b: object) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(b, (dict, list, tuple)):
        return False
    return a == b


# ---------------------------------------------------------------- keyword compilers

_Part = tuple[Ok, Collect]


def _enum_part(values: list[Any]) -> _Part:
    allowed = ",".join(_show(v) for v in values)
    if values and all(isinstance(v, str) for v in values):
        strings = frozenset(values)

        def ok(x: object) -> bool:
            return isinstance(x, str) and x in strings

    else:
        frozen = tuple(values)

        def ok(x: object) -> bool:
            return any(_json_equal(x, v) for v in frozen)

    def collect(x: object, path: str, out: list[str]) -> None:
        if not ok(x):
            out.append(f"enum {_show(x)} not in {allowed} at '{path}'")

    return ok, collect


def _const_part(value: object) -> _Part:
    def ok(x: object) -> bool:
        return _json_equal(x, value)

    def collect(x: object, path: str, out: list[str]) -> None:
        if not ok(x):
            out.append(f"const {_show(x)} not {_show(value)} at '{path}'")

    return ok, collect


def _bound_part(keyword: str, limit: float, exclusive: bool, lower: bool) -> _Part:
    shown = _num(limit)
    if lower:
        sign = "<=" if exclusive else "<"

        def ok(x: object) -> bool:
            if not _is_number(x):
                return True
            return x > limit if exclusive else x >= limit

    else:
        sign = ">=" if exclusive else ">"

        def ok(x: object) -> bool:
            if not _is_number(x):
                return True
            return x < limit if exclusive else x <= limit

    def collect(x: object, path: str, out: list[str]) -> None:
        if not ok(x):
            out.append(f"{keyword} at '{path}' not met, {_num(x)} {sign} {shown}")

    return ok, collect


def _size_part(keyword: str, limit: int, lower: bool, applies: type | tuple[type, ...]) -> _Part:
    if lower:

        def ok(x: object) -> bool:
            return not isinstance(x, applies) or len(x) >= limit  # type: ignore[arg-type]

        sign = "<"
    else:

        def ok(x: object) -> bool:
            return not isinstance(x, applies) or len(x) <= limit  # type: ignore[arg-type]

        sign = ">"

    def collect(x: object, path: str, out: list[str]) -> None:
        if not ok(x):
            out.append(f"{keyword} at '{path}' not met, {len(x)} {sign} {limit}")  # type: ignore[arg-type]

    return ok, collect


def _pattern_part(pattern: str) -> _Part | None:
    try:
        search = re.compile(pattern).search
    except re.error:
        return None

    def ok(x: object) -> bool:
        return not isinstance(x, str) or search(x) is not None

    def collect(x: object, path: str, out: list[str]) -> None:
        if not ok(x):
            out.append(f"pattern at '{path}' not met, '{_cut(x)}' does not match '{pattern}'")  # type: ignore[arg-type]

    return ok, collect


def _items_part(items: object, strict: bool) -> _Part | None:
    if isinstance(items, list):
        nodes = [_compile(s, strict) for s in items]
        if all(n.trivial for n in nodes):
            return None

        def ok(x: object) -> bool:
            if not isinstance(x, (list, tuple)):
                return True
            return all(n.ok(v) for n, v in zip(nodes, x, strict=False))

        def collect(x: object, path: str, out: list[str]) -> None:
            if not isinstance(x, (list, tuple)):
                return
            base = _base(path)
            for i, (n, v) in enumerate(zip(nodes, x, strict=False)):
                if not n.ok(v):
                    if _full(out):
                        _stop(out)
                        return
                    n.collect(v, f"{base}/{i}", out)

        return ok, collect

    node = _compile(items, strict)
    if node.trivial:
        return None
    item_ok = node.ok
    item_collect = node.collect

    def ok_all(x: object) -> bool:
        return not isinstance(x, (list, tuple)) or all(map(item_ok, x))

    def collect_all(x: object, path: str, out: list[str]) -> None:
        if not isinstance(x, (list, tuple)):
            return
        base = _base(path)
        for i, v in enumerate(x):
            if not item_ok(v):
                if _full(out):
                    _stop(out)
                    return
                item_collect(v, f"{base}/{i}", out)

    return ok_all, collect_all


def _object_part(schema: dict[str, Any], strict: bool) -> _Part | None:
    properties = schema.get("properties")
    props: dict[str, Any] = properties if isinstance(properties, dict) else {}
    names = frozenset(props)
    checked = [(k, _compile(s, strict)) for k, s in props.items()]
    checked = [(k, n) for k, n in checked if not n.trivial]
    prop_ok = {k: n.ok for k, n in checked}
    raw_required = schema.get("required")
    required = tuple(r for r in raw_required if isinstance(r, str)) if isinstance(raw_required, list) else ()
    required_text = ",".join(required)
    raw_additional = schema.get("additionalProperties", True)
    forbid_extra = raw_additional is False
    extra_node = None if isinstance(raw_additional, bool) else _compile(raw_additional, strict)
    if extra_node is not None and extra_node.trivial:
        extra_node = None
    extra_ok = extra_node.ok if extra_node is not None else _always
    min_props = schema.get("minProperties")
    max_props = schema.get("maxProperties")
    min_props = min_props if _is_integer(min_props) else None
    max_props = max_props if _is_integer(max_props) else None
    watch_keys = bool(prop_ok) or forbid_extra or extra_node is not None

    if not watch_keys and not required and min_props is None and max_props is None:
        return None

    def ok(x: object) -> bool:
        if not isinstance(x, dict):
            return True
        if watch_keys:
            for k, v in x.items():
                f = prop_ok.get(k)
                if f is not None:
                    if not f(v):
                        return False
                elif k not in names and (forbid_extra or not extra_ok(v)):
                    return False
        for r in required:
            if r not in x:
                return False
        if min_props is not None and len(x) < min_props:
            return False
        return max_props is None or len(x) <= max_props

    def collect(x: object, path: str, out: list[str]) -> None:
        if not isinstance(x, dict):
            return
        base = _base(path)
        for k, node in checked:
            if k in x:
                v = x[k]
                if not node.ok(v):
                    node.collect(v, f"{base}/{_escape(k)}", out)
        for r in required:
            if r not in x:
                out.append(f"required properties at '{path}' are '{required_text}'")
                break
        if forbid_extra:
            extra: list[str] = []
            for k in x:
                if k not in names:
                    if _full(extra):
                        _stop(extra)
                        break
                    extra.append(f"{base}/{_escape(k)}")
            if extra:
                out.append(f"{_ADDITIONAL}'{', '.join(extra)}' at '{path}' not allowed")
        elif extra_node is not None:
            for k, v in x.items():
                if k not in names and not extra_ok(v):
                    if _full(out):
                        _stop(out)
                        break
                    extra_node.collect(v, f"{base}/{_escape(k)}", out)
        if min_props is not None and len(x) < min_props:
            out.append(f"minProperties at '{path}' not met, {len(x)} < {min_props}")
        if max_props is not None and len(x) > max_props:
            out.append(f"maxProperties at '{path}' not met, {len(x)} > {max_props}")

    return ok, collect


def _not_part(sub: object, strict: bool) -> _Part:
    node = _compile(sub, strict)

    def ok(x: object) -> bool:
        return not node.ok(x)

    def collect(x: object, path: str, out: list[str]) -> None:
        if node.ok(x):
            out.append(f"not at '{path}' not met")

    return ok, collect


def _all_of_part(subs: list[Any], strict: bool) -> _Part | None:
    nodes = [n for n in (_compile(s, strict) for s in subs) if not n.trivial]
    if not nodes:
        return None

    def ok(x: object) -> bool:
        return all(n.ok(x) for n in nodes)

    def collect(x: object, path: str, out: list[str]) -> None:
        for n in nodes:
            if not n.ok(x):
                n.collect(x, path, out)

    return ok, collect


def _any_of_part(subs: list[Any], strict: bool) -> _Part | None:
    nodes = [_compile(s, strict) for s in subs]
    if not nodes or any(n.trivial for n in nodes):
        return None

    def ok(x: object) -> bool:
        return any(n.ok(x) for n in nodes)

    def collect(x: object, path: str, out: list[str]) -> None:
        if ok(x):
            return
        errors: list[str] = []
        for n in nodes:
            n.collect(x, path, errors)
        out.append(_joined(f"anyOf at '{path}' not met", errors))

    return ok, collect


def _one_of_part(subs: list[Any], strict: bool) -> _Part:
    nodes = [_compile(s, strict) for s in subs]

    if strict:

        def ok(x: object) -> bool:
            matches = 0
            for n in nodes:
                if n.ok(x):
                    matches += 1
                    if matches > 1:
                        return False
            return matches == 1

    else:

        def ok(x: object) -> bool:
            return any(n.ok(x) for n in nodes)

    def collect(x: object, path: str, out: list[str]) -> None:
        if ok(x):
            return
        matches = 0
        errors: list[str] = []
        for n in nodes:
            if n.ok(x):
                matches += 1
            else:
                n.collect(x, path, errors)
        # reaching here means ok() failed: 0 matches, or (strict) 2+ matches
        out.append(_joined(f"oneOf at '{path}' not met, {matches} matches", errors))

    return ok, collect


# ---------------------------------------------------------------- node compiler


def _type_check(schema: dict[str, Any]) -> tuple[Ok | None, str]:
    raw = schema.get("type")
    if raw is None:
        return None, ""
    names = [raw] if isinstance(raw, str) else [t for t in raw if isinstance(t, str)]
    binary = schema.get("format") == "binary"
    preds: list[Ok] = []
    for name in names:
        pred = _TYPE_PREDICATES.get(name)
        if pred is None:
            continue
        preds.append(_is_binary_string if binary and name == "string" else pred)
    if not preds:
        return None, ""
    expected = ",".join(f"'{n}'" for n in names if n in _TYPE_PREDICATES)
    if len(preds) == 1:
        return preds[0], expected
    options = tuple(preds)

    def any_type(x: object) -> bool:
        return any(p(x) for p in options)

    return any_type, expected


def _compile(schema: object, strict: bool) -> _Node:
    if schema is True or schema is None:
        return _ACCEPT
    if schema is False:
        return _REJECT
    if not isinstance(schema, dict):
        return _ACCEPT
    type_ok, expected = _type_check(schema)
    parts: list[_Part | None] = []
    if isinstance(schema.get("enum"), list):
        parts.append(_enum_part(schema["enum"]))
    if "const" in schema:
        parts.append(_const_part(schema["const"]))

    for keyword, lower in (("minLength", True), ("maxLength", False)):
        if _is_integer(schema.get(keyword)):
            parts.append(_size_part(keyword, schema[keyword], lower, str))
    if isinstance(schema.get("pattern"), str):
        parts.append(_pattern_part(schema["pattern"]))

    for keyword, exclusive_keyword, lower in (
        ("minimum", "exclusiveMinimum", True),
        ("maximum", "exclusiveMaximum", False),
    ):
        limit = schema.get(keyword)
        exclusive = schema.get(exclusive_keyword)
        # draft-4 spelled exclusivity as a boolean next to minimum/maximum
        if _is_number(limit):
            parts.append(_bound_part(keyword, limit, False, lower))
            if exclusive is True:
                parts[-1] = _bound_part(exclusive_keyword, limit, True, lower)
        if _is_number(exclusive):
            parts.append(_bound_part(exclusive_keyword, exclusive, True, lower))

    for keyword, lower in (("minItems", True), ("maxItems", False)):
        if _is_integer(schema.get(keyword)):
            parts.append(_size_part(keyword, schema[keyword], lower, (list, tuple)))
    if "items" in schema:
        parts.append(_items_part(schema["items"], strict))

    parts.append(_object_part(schema, strict))

    if "not" in schema:
        parts.append(_not_part(schema["not"], strict))
    if isinstance(schema.get("allOf"), list):
        parts.append(_all_of_part(schema["allOf"], strict))
    if isinstance(schema.get("anyOf"), list):
        parts.append(_any_of_part(schema["anyOf"], strict))
    if isinstance(schema.get("oneOf"), list):
        parts.append(_one_of_part(schema["oneOf"], strict))

    present = [p for p in parts if p is not None]
    checks = tuple(p[0] for p in present)
    collectors = tuple(p[1] for p in present)
    if type_ok is None and not checks:
        return _ACCEPT
    return _Node(_node_ok(type_ok, checks), _node_collect(type_ok, expected, collectors))


def _node_ok(type_ok: Ok | None, checks: tuple[Ok, ...]) -> Ok:
    # specialised shapes keep the common one- and zero-keyword nodes to a single call
    if type_ok is None:
        if len(checks) == 1:
            return checks[0]

        def ok_all(x: object) -> bool:
            for c in checks:  # noqa: SIM110 - a plain loop beats all(<genexpr>) on the hot path
                if not c(x):
                    return False
            return True

        return ok_all
    if not checks:
        return type_ok
    if len(checks) == 1:
        only = checks[0]

        def ok_typed_one(x: object) -> bool:
            return type_ok(x) and only(x)

        return ok_typed_one

    def ok_typed(x: object) -> bool:
        if not type_ok(x):
            return False
        for c in checks:  # noqa: SIM110 - a plain loop beats all(<genexpr>) on the hot path
            if not c(x):
                return False
        return True

    return ok_typed


def _node_collect(type_ok: Ok | None, expected: str, collectors: tuple[Collect, ...]) -> Collect:
    def collect(x: object, path: str, out: list[str]) -> None:
        if type_ok is not None and not type_ok(x):
            actual = _actual_types(x)
            if actual == "'array'":
                # real answers put a (non-byte) array instance first; see the module docstring
                out.append(f"Type mismatch of '{path}', {actual} not in {expected}")
            else:
                out.append(f"Type mismatch of '{path}', {expected} not in {actual}")
            return
        for c in collectors:
            c(x, path, out)

    return collect


# ---------------------------------------------------------------- public API


def format_message(errors: Sequence[str]) -> str:
    """Join validator errors into the detail Cloudflare puts after 'AiError: Bad input: '."""
    text = _cut(", ".join(errors))
    if errors and all(e.startswith(_ADDITIONAL) for e in errors):
        return text
    return f"Error: {text}"


class CompiledSchema:
    """A schema compiled once; hold on to it and call it per request."""

    __slots__ = ("_collect", "_ok", "schema", "strict_one_of")

    def __init__(self, schema: dict[str, Any] | None, strict_one_of: bool = False) -> None:
        self.schema = schema
        self.strict_one_of = strict_one_of
        node = _compile(schema if schema else None, strict_one_of)
        self._ok: Ok = node.ok
        self._collect: Collect = node.collect

    def is_valid(self, instance: object) -> bool:
        """True when the instance satisfies the schema."""
        return self._ok(instance)

    def errors(self, instance: object) -> list[str]:
        """Top-level errors in Cloudflare's wording; [] when valid."""
        if self._ok(instance):
            return []
        out: list[str] = []
        self._collect(instance, "/", out)
        if not out:  # defensive: ok/collect disagreeing must still yield a 400, not a silent pass
            out.append("schema at '/' not met")
        return out

    def message(self, instance: object) -> str | None:
        """None when valid, else the joined detail (with or without the 'Error: ' prefix)."""
        if self._ok(instance):
            return None
        return format_message(self.errors(instance))


def compile_schema(schema: dict[str, Any] | None, *, strict_one_of: bool = False) -> CompiledSchema:
    """Compile a JSON Schema; None or {} accepts everything.

    By default a oneOf is met by one *or more* matching branches (see the module docstring);
    `strict_one_of=True` gives JSON Schema's exactly-one rule, used by the fakes and tests.
    """
    return CompiledSchema(schema, strict_one_of)
