"""Tests for emulator.validation.schema: Cloudflare 5006 wording, keyword coverage, jsonschema parity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.validation import compile_schema, json_type
from emulator.validation.schema import format_message
from tests.examples import property_examples

CATALOG = Path(__file__).resolve().parent.parent / "emulator" / "catalog" / "data"


def catalog_schema(name: str, part: str = "input") -> dict[str, Any]:
    return json.loads((CATALOG / f"{name}.json").read_text())["schema"][part]


def catalog_schemas() -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    for path in sorted(CATALOG.glob("[!_]*.json")):
        schema = json.loads(path.read_text()).get("schema")
        if not isinstance(schema, dict):
            continue
        for part in ("input", "output"):
            found.append((path.stem, part, schema.get(part)))
    return found


# ------------------------------------------------------------ real messages


def test_llama3_content_array_message_is_exact() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert compile_schema(catalog_schema("llama-3-8b-instruct")).message(body) == (
        "Error: oneOf at '/' not met, 0 matches: required properties at '/' are 'prompt', "
        "Type mismatch of '/messages/0/content', 'array' not in 'string'"
    )


def test_llama3_content_array_and_null_content_message_is_exact() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"content": None, "tool_calls": []},
        ]
    }
    assert compile_schema(catalog_schema("llama-3-8b-instruct")).message(body) == (
        "Error: oneOf at '/' not met, 0 matches: required properties at '/' are 'prompt', "
        "Type mismatch of '/messages/0/content', 'array' not in 'string', "
        "Type mismatch of '/messages/1/content', 'string' not in 'null', "
        "required properties at '/messages/1' are 'role,content'"
    )


def test_qwen_coder_null_content_wording() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "x"},
            {"role": "assistant", "content": None},
        ]
    }
    message = compile_schema(catalog_schema("qwen2.5-coder-32b-instruct")).message(body)
    assert message is not None
    assert "Type mismatch of '/messages/2/content', 'string' not in 'null'" in message


def test_flux_width_height_has_no_error_prefix() -> None:
    body = {"prompt": "a cat", "steps": 4, "width": 512, "height": 512}
    assert compile_schema(catalog_schema("flux-1-schnell")).message(body) == (
        "Additional or unevaluated properties '/width, /height' at '/' not allowed"
    )


def test_whisper_object_with_string_audio_is_exact() -> None:
    compiled = compile_schema(catalog_schema("whisper"))
    assert compiled.message({"audio": "UklGRg=="}) == (
        "Error: oneOf at '/' not met, 0 matches: Type mismatch of '/', 'string' not in 'object', "
        "Type mismatch of '/audio', 'array' not in 'string'"
    )
    assert compiled.is_valid(b"RIFF....WAVE")
    assert compiled.is_valid({"audio": [0, 12, 255]})


def test_gpt_oss_catalog_schema_nested_one_of() -> None:
    # the saved catalog has a third, nested Prompt/Messages branch in front of the two the real
    # answer (cloudflare/ai#279) lists, so our rules add its errors first
    assert compile_schema(catalog_schema("gpt-oss-120b")).message({}) == (
        "Error: oneOf at '/' not met, 0 matches: oneOf at '/' not met, 0 matches: "
        "required properties at '/' are 'prompt', required properties at '/' are 'messages', "
        "required properties at '/' are 'input', required properties at '/' are 'requests'"
    )


def test_responses_shape_message_is_exact() -> None:
    schema = {
        "oneOf": [
            {"type": "object", "properties": {"input": {}}, "required": ["input"]},
            {"type": "object", "properties": {"requests": {"type": "array"}}, "required": ["requests"]},
        ]
    }
    assert compile_schema(schema).message({"model": "x"}) == (
        "Error: oneOf at '/' not met, 0 matches: required properties at '/' are 'input', "
        "required properties at '/' are 'requests'"
    )


def test_binding_required_contexts_is_exact() -> None:
    schema = {"type": "object", "properties": {"contexts": {"type": "array"}}, "required": ["contexts"]}
    assert compile_schema(schema).message({"query": "x"}) == (
        "Error: required properties at '/' are 'contexts'"
    )


def test_required_lists_the_whole_array() -> None:
    message = compile_schema(catalog_schema("bge-reranker-base")).message({"query": "q"})
    assert message == "Error: required properties at '/' are 'query,contexts'"


def test_byte_array_reported_as_array_binary() -> None:
    message = compile_schema(catalog_schema("moondream3.1-9B-A2B")).message({"image": [137, 80, 78]})
    assert message == "Error: Type mismatch of '/image', 'string' not in 'array','binary'"
    turbo = compile_schema(catalog_schema("whisper-large-v3-turbo"))
    assert turbo.message({"audio": [1, 2, 3]}) == (
        "Error: Type mismatch of '/audio', 'string' not in 'array','binary'"
    )


def test_new_api_enum_wording() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tools": {
                "type": "array",
                "items": {"type": "object", "properties": {"type": {"type": "string", "enum": ["custom"]}}},
            }
        },
    }
    assert compile_schema(schema).errors({"tools": [{"type": "function"}]}) == [
        "enum function not in custom at '/tools/0/type'"
    ]


def test_any_of_has_no_count() -> None:
    schema = {"anyOf": [{"type": "string"}, {"type": "object", "required": ["a", "b"]}]}
    assert compile_schema(schema).message({"a": 1}) == (
        "Error: anyOf at '/' not met: Type mismatch of '/', 'string' not in 'object', "
        "required properties at '/' are 'a,b'"
    )
    assert compile_schema(schema).is_valid("x")


# ------------------------------------------------------------ invented keywords


@pytest.mark.parametrize(
    ("schema", "instance", "errors"),
    [
        ({"enum": ["a", "b"]}, "c", ["enum c not in a,b at '/'"]),
        ({"enum": [1, 2, None]}, 3, ["enum 3 not in 1,2,null at '/'"]),
        ({"const": "x"}, "y", ["const y not x at '/'"]),
        (
            {"properties": {"max_tokens": {"type": "integer", "maximum": 2048}}},
            {"max_tokens": 99999},
            ["maximum at '/max_tokens' not met, 99999 > 2048"],
        ),
        ({"type": "integer", "minimum": 1}, 0, ["minimum at '/' not met, 0 < 1"]),
        ({"type": "number", "exclusiveMinimum": 0}, 0, ["exclusiveMinimum at '/' not met, 0 <= 0"]),
        ({"type": "number", "exclusiveMaximum": 2}, 2.0, ["exclusiveMaximum at '/' not met, 2 >= 2"]),
        ({"type": "number", "maximum": 1}, 1.5, ["maximum at '/' not met, 1.5 > 1"]),
        (
            {"properties": {"prompt": {"type": "string", "minLength": 1}}},
            {"prompt": ""},
            ["minLength at '/prompt' not met, 0 < 1"],
        ),
        ({"type": "string", "maxLength": 3}, "abcd", ["maxLength at '/' not met, 4 > 3"]),
        (
            {"properties": {"text": {"type": "array", "maxItems": 100}}},
            {"text": ["x"] * 101},
            ["maxItems at '/text' not met, 101 > 100"],
        ),
        ({"type": "array", "minItems": 1}, [], ["minItems at '/' not met, 0 < 1"]),
        (
            {"type": "string", "pattern": "^[0-9]+$"},
            "12a",
            ["pattern at '/' not met, '12a' does not match '^[0-9]+$'"],
        ),
        ({"type": "object", "minProperties": 1}, {}, ["minProperties at '/' not met, 0 < 1"]),
        ({"type": "object", "maxProperties": 1}, {"a": 1, "b": 2}, ["maxProperties at '/' not met, 2 > 1"]),
        (
            {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            ["a", "b"],
            ["Type mismatch of '/1', 'integer' not in 'string'"],
        ),
        ({"type": ["string", "null"]}, 3, ["Type mismatch of '/', 'string','null' not in 'integer'"]),
        ({"type": "integer"}, 3.0, ["Type mismatch of '/', 'integer' not in 'number'"]),
        ({"type": "integer"}, True, ["Type mismatch of '/', 'integer' not in 'boolean'"]),
        ({"type": "number"}, False, ["Type mismatch of '/', 'number' not in 'boolean'"]),
        ({"type": "object"}, b"raw", ["Type mismatch of '/', 'object' not in 'binary'"]),
        ({"type": "string"}, b"raw", ["Type mismatch of '/', 'string' not in 'binary'"]),
        ({"not": {"type": "string"}}, "x", ["not at '/' not met"]),
        (
            {"allOf": [{"required": ["a"]}, {"properties": {"b": {"type": "string"}}}]},
            {"b": 1},
            ["required properties at '/' are 'a'", "Type mismatch of '/b', 'string' not in 'integer'"],
        ),
        (
            {"type": "object", "additionalProperties": {"type": "number"}},
            {"a/b": "x", "c~": 1},
            ["Type mismatch of '/a~1b', 'number' not in 'string'"],
        ),
        (
            {"properties": {"a": {"properties": {"b": {"type": "string"}}, "additionalProperties": False}}},
            {"a": {"b": "x", "c": 1}},
            ["Additional or unevaluated properties '/a/c' at '/a' not allowed"],
        ),
        ({"properties": {"a": False}}, {"a": 1}, ["false schema at '/a'"]),
    ],
)
def test_keyword_wording(schema: dict[str, Any], instance: object, errors: list[str]) -> None:
    compiled = compile_schema(schema)
    assert compiled.errors(instance) == errors
    assert not compiled.is_valid(instance)


def test_one_of_two_matches_only_fails_when_strict() -> None:
    schema = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert compile_schema(schema).is_valid(3)
    strict = compile_schema(schema, strict_one_of=True)
    assert strict.errors(3) == ["oneOf at '/' not met, 2 matches"]
    assert strict.errors("x") == [
        "oneOf at '/' not met, 0 matches: Type mismatch of '/', 'number' not in 'string', "
        "Type mismatch of '/', 'integer' not in 'string'"
    ]
    assert strict.is_valid(2.5)


def test_llama33_messages_body_is_accepted() -> None:
    # its Async Batch branch has no `required`, so strict oneOf would reject every chat body
    schema = catalog_schema("llama-3.3-70b-instruct-fp8-fast")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    assert compile_schema(schema).message(body) is None
    assert not compile_schema(schema, strict_one_of=True).is_valid(body)


def test_object_error_order_properties_then_required_then_additional() -> None:
    schema = {
        "type": "object",
        "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
        "required": ["c"],
        "additionalProperties": False,
    }
    assert compile_schema(schema).errors({"a": "x", "b": 1, "z": 0}) == [
        "Type mismatch of '/b', 'string' not in 'integer'",
        "Type mismatch of '/a', 'integer' not in 'string'",
        "required properties at '/' are 'c'",
        "Additional or unevaluated properties '/z' at '/' not allowed",
    ]


def test_type_mismatch_stops_that_location() -> None:
    schema = {"type": "string", "minLength": 5, "enum": ["abcdef"]}
    assert compile_schema(schema).errors(3) == ["Type mismatch of '/', 'string' not in 'integer'"]


def test_prefix_rule() -> None:
    assert format_message(["Additional or unevaluated properties '/x' at '/' not allowed"]).startswith(
        "Additional"
    )
    assert format_message(
        ["required properties at '/' are 'a'", "Additional or unevaluated properties '/x' at '/' not allowed"]
    ).startswith("Error: required")


def test_binary_format_accepts_bytes_and_strings_only() -> None:
    compiled = compile_schema({"type": "string", "format": "binary"})
    assert compiled.is_valid(b"\x00\x01")
    assert compiled.is_valid(bytearray(b"x"))
    assert compiled.is_valid("base64==")
    assert not compiled.is_valid({"a": 1})
    assert not compiled.is_valid([1, 2])


def test_empty_schema_accepts_everything() -> None:
    for schema in (None, {}):
        compiled = compile_schema(schema)
        for value in (None, 1, "x", [1], {"a": 1}, b"x"):
            assert compiled.is_valid(value)
            assert compiled.errors(value) == []
            assert compiled.message(value) is None


def test_json_type_names() -> None:
    assert [json_type(v) for v in (None, True, 1, 1.5, "s", [], {}, b"")] == [
        "null",
        "boolean",
        "integer",
        "number",
        "string",
        "array",
        "object",
        "binary",
    ]


def test_valid_llama_bodies() -> None:
    compiled = compile_schema(catalog_schema("llama-3-8b-instruct"))
    assert compiled.message({"prompt": "hello", "max_tokens": 10, "temperature": 0.5}) is None
    assert compiled.is_valid({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert compiled.message({"prompt": "hello", "temperature": 9}) == (
        "Error: oneOf at '/' not met, 0 matches: maximum at '/temperature' not met, 9 > 5, "
        "maximum at '/temperature' not met, 9 > 5, required properties at '/' are 'messages'"
    )


# ------------------------------------------------------------ catalog and parity


@pytest.mark.parametrize(("model", "part", "schema"), catalog_schemas())
def test_every_catalog_schema_compiles(model: str, part: str, schema: Any) -> None:
    compiled = compile_schema(schema)
    assert isinstance(compiled.is_valid({}), bool)
    assert isinstance(compiled.errors([1, "x"]), list)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**11),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.text(max_size=6),
)

PARITY_SCHEMAS: list[dict[str, Any]] = [
    catalog_schema("llama-3-8b-instruct"),
    catalog_schema("flux-1-schnell"),
    catalog_schema("moondream3.1-9B-A2B"),
    catalog_schema("bge-m3"),
    catalog_schema("llama-3-8b-instruct", "output"),
    {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "minLength": 2},
            "b": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
            "c": {"enum": ["x", 1, None]},
        },
        "required": ["a"],
        "additionalProperties": {"type": "boolean"},
    },
]


def _keys(schema: dict[str, Any]) -> list[str]:
    names = ["zz"]
    for branch in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
        names.extend((branch.get("properties") or {}).keys())
    return names


@settings(max_examples=property_examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), index=st.integers(min_value=0, max_value=len(PARITY_SCHEMAS) - 1))
def test_validity_agrees_with_jsonschema(data: st.DataObject, index: int) -> None:
    schema = PARITY_SCHEMAS[index]
    values = st.recursive(
        json_scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(["role", "content", "text", "x"]), inner, max_size=3),
        ),
        max_leaves=6,
    )
    instance = data.draw(st.dictionaries(st.sampled_from(_keys(schema)), values, max_size=4))
    expected = jsonschema.Draft7Validator(schema).is_valid(instance)
    assert compile_schema(schema, strict_one_of=True).is_valid(instance) == expected
    if expected:
        assert compile_schema(schema).is_valid(instance)


# ---------------------------------------------------------------- bounds on huge instances


def test_errors_on_a_huge_array_stop_after_a_bounded_message() -> None:
    from emulator.validation.schema import MAX_COLLECTED_ERRORS, MAX_MESSAGE_CHARS

    texts = {"type": "array", "items": {"type": "string"}}
    schema = compile_schema({"type": "object", "properties": {"text": texts}})
    message = schema.message({"text": list(range(1_000_000))})
    assert message is not None and len(message) <= MAX_MESSAGE_CHARS + len("Error: …")
    assert message.startswith("Error: Type mismatch of '/text/0', 'string' not in 'integer', ")
    assert message.endswith("…") and "'/text/999999'" not in message
    assert message.count("Type mismatch") <= MAX_COLLECTED_ERRORS


def test_a_few_errors_are_worded_in_full() -> None:
    schema = compile_schema({"type": "array", "items": {"type": "string"}})
    expected = ", ".join(f"Type mismatch of '/{i}', 'string' not in 'integer'" for i in range(200))
    assert schema.message(list(range(200))) == "Error: " + expected


def test_huge_extra_keys_and_shown_values_are_cut() -> None:
    from emulator.validation.schema import MAX_MESSAGE_CHARS

    closed = compile_schema({"type": "object", "properties": {}, "additionalProperties": False})
    message = closed.message({f"k{i}": 1 for i in range(200_000)})
    assert message is not None and len(message) <= MAX_MESSAGE_CHARS + 1 and "/k0, /k1" in message
    enum = compile_schema({"enum": ["a", "b"]})
    shown = enum.message("x" * 10_000_000)
    assert shown is not None and len(shown) < 2 * MAX_MESSAGE_CHARS and shown.startswith("Error: enum xxx")
    listed = enum.message(list(range(2_000_000)))
    assert listed is not None and len(listed) < 2 * MAX_MESSAGE_CHARS
    assert listed.startswith("Error: enum [0,1,2")
