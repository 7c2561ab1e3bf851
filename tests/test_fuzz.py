"""Hypothesis fuzzing of every route with hostile bodies: each answer is a Cloudflare-shaped 4xx or a success.

Bodies: malformed and truncated JSON, wrong types, huge numbers, deep nesting, invalid UTF-8,
wrong content types, truncated multipart and binary garbage. The default run is CI-sized;
WORKERS_AI_FUZZ_EXAMPLES raises the example count per route (`pytest -m slow` runs 500).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from tempfile import TemporaryDirectory
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.launch.background import BackgroundServer
from tests.conftest import ACCOUNT
from tests.live_server import live_server

AI = f"/client/v4/accounts/{ACCOUNT}/ai"
GATEWAY = f"/v1/{ACCOUNT}/my-gateway"
AUTH = {"Authorization": "Bearer fuzz-token"}
EXAMPLES = int(os.environ.get("WORKERS_AI_FUZZ_EXAMPLES", "30"))
SUCCESS_TYPES = {
    "application/json",
    "text/event-stream",
    "image/png",
    "image/jpeg",
    "audio/mpeg",
    "audio/wav",
}

# (method, path, a valid body) per route; the fuzzer mutates the valid body or replaces it.
CHAT = {"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", f"{AI}/run/@cf/meta/llama-3.1-8b-instruct", {"prompt": "hello", "max_tokens": 16}),
    ("POST", f"{AI}/run/@cf/meta/llama-3.1-8b-instruct", {"messages": CHAT["messages"], "stream": True}),
    ("POST", f"{AI}/run/@cf/baai/bge-base-en-v1.5", {"text": ["a", "b"]}),
    ("POST", f"{AI}/run/@cf/baai/bge-m3", {"query": "q", "contexts": [{"text": "c"}]}),
    (
        "POST",
        f"{AI}/run/@cf/stabilityai/stable-diffusion-xl-base-1.0",
        {"prompt": "cat", "width": 256, "height": 256},
    ),
    ("POST", f"{AI}/run/@cf/black-forest-labs/flux-1-schnell", {"prompt": "cat", "steps": 1}),
    ("POST", f"{AI}/run/@cf/black-forest-labs/flux-2-klein-4b", None),
    ("POST", f"{AI}/run/@cf/openai/whisper", None),
    ("POST", f"{AI}/run/@cf/openai/whisper-large-v3-turbo", {"audio": "UklGRg=="}),
    ("POST", f"{AI}/run/@cf/meta/m2m100-1.2b", {"text": "hi", "target_lang": "fr"}),
    ("POST", f"{AI}/run/@cf/huggingface/distilbert-sst-2-int8", {"text": "good"}),
    ("POST", f"{AI}/run/@cf/microsoft/resnet-50", None),
    ("POST", f"{AI}/run/@cf/myshell-ai/melotts", {"prompt": "hi"}),
    ("POST", f"{AI}/run/@cf/no/such-model", {"prompt": "x"}),
    ("POST", f"{AI}/v1/chat/completions", CHAT),
    ("POST", f"{AI}/v1/embeddings", {"model": "@cf/baai/bge-base-en-v1.5", "input": ["a"]}),
    ("POST", f"{AI}/v1/responses", {"model": "@cf/openai/gpt-oss-20b", "input": "hi"}),
    ("GET", f"{AI}/models/search", None),
    ("GET", f"{AI}/models/schema", None),
    ("GET", f"{AI}/tasks/search", None),
    ("GET", f"{AI}/authors/search", None),
    (
        "POST",
        "/client/v4/graphql",
        {"query": "{ viewer { accounts { aiInferenceAdaptiveGroups { sum { neurons } } } } }"},
    ),
    ("POST", f"{GATEWAY}/workers-ai/@cf/meta/llama-3.1-8b-instruct", {"prompt": "hello"}),
    ("POST", f"{GATEWAY}/workers-ai/v1/chat/completions", CHAT),
    (
        "POST",
        f"{GATEWAY}/compat/chat/completions",
        {**CHAT, "model": "workers-ai/@cf/meta/llama-3.1-8b-instruct"},
    ),
    ("POST", f"{GATEWAY}/compat/embeddings", {"model": "workers-ai/@cf/baai/bge-base-en-v1.5", "input": "a"}),
    ("POST", f"{AI}/unknown/endpoint", {}),
    ("POST", "/client/v4/accounts/not-an-account/ai/run/@cf/meta/llama-3.1-8b-instruct", {}),
]
CONTROL_ROUTES = [
    ("POST", "/__emulator__/stubs"),
    ("POST", "/__emulator__/faults"),
    ("POST", "/__emulator__/clock"),
    ("POST", "/__emulator__/mode"),
    ("POST", "/__emulator__/reset"),
    ("GET", "/__emulator__/openapi.json"),
]

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "multipart/form-data",
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data; boundary=",
        "audio/wav",
        "image/png",
        "application/vnd.api+json",
        "text/json",
        "application/x-ndjson",
        "garbage",
        "application/json; charset=latin-1",
        "*/*",
    ]
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
HUGE_NUMBERS = st.sampled_from(
    [
        b"1" + b"0" * 400,
        b"-1" + b"0" * 400,
        b"1e308",
        b"1e309",
        b"-1e309",
        b"1e-400",
        b"9" * 5000,
        b"18446744073709551616",
        b"-9223372036854775809",
        b"0.0000000000000000000000000001",
        b"1E+2",
    ]
)


def _nest(depth: int, kind: bytes) -> bytes:
    if kind == b"[":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def hostile_bodies(draw: st.DrawFn, valid: Any) -> tuple[bytes, str | None]:
    """One hostile body and the Content-Type to send it with."""
    valid_bytes = orjson.dumps(valid) if valid is not None else b"{}"
    kind = draw(
        st.sampled_from(
            ["garbage", "truncated", "types", "mutated", "huge", "deep", "utf8", "multipart", "empty"]
        )
    )
    ctype = draw(CONTENT_TYPES)
    if kind == "garbage":
        return draw(st.binary(max_size=512)), ctype
    if kind == "truncated":
        return valid_bytes[: draw(st.integers(0, max(0, len(valid_bytes) - 1)))], ctype
    if kind == "types":
        return orjson.dumps(draw(JSON_VALUES)), ctype
    if kind == "mutated" and isinstance(valid, dict) and valid:
        key = draw(st.sampled_from(sorted(valid)))
        mutated = {**valid, key: draw(JSON_VALUES)}
        return orjson.dumps(mutated), ctype
    if kind == "huge" and isinstance(valid, dict) and valid:
        key = draw(st.sampled_from(sorted(valid)))
        text = orjson.dumps({**valid, key: "__NUMBER__"})
        return text.replace(b'"__NUMBER__"', draw(HUGE_NUMBERS)), ctype
    if kind == "deep":
        depth = draw(st.sampled_from([127, 128, 129, 254, 255, 300, 1023, 1024, 1025, 10_000]))
        inner = _nest(depth, draw(st.sampled_from([b"[", b"{"])))
        wrap = draw(st.booleans()) and isinstance(valid, dict) and valid
        if wrap:
            key = draw(st.sampled_from(sorted(valid)))
            return orjson.dumps({**valid, key: "__DEEP__"}).replace(b'"__DEEP__"', inner), ctype
        return inner, ctype
    if kind == "utf8":
        cut = draw(st.integers(0, len(valid_bytes)))
        bad = draw(
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\\ud800"])
        )
        return valid_bytes[:cut] + bad + valid_bytes[cut:], ctype
    if kind == "multipart":
        body = (
            b'--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\ncat\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="width"\r\n\r\n'
            + draw(st.sampled_from([b"256", b"99999999", b"-1", b"abc", b"1e9"]))
            + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
            + draw(st.binary(max_size=64))
            + b"\r\n--XyZ--\r\n"
        )
        return body[: draw(st.integers(0, len(body)))], "multipart/form-data; boundary=XyZ"
    return b"", ctype


def assert_cloudflare_shaped(response: requests.Response) -> None:
    """No 5xx; errors carry a Cloudflare (or AI Gateway) envelope; successes a documented content type."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    ctype = response.headers.get("Content-Type", "").split(";")[0]
    if response.status_code >= 400:
        assert ctype == "application/json", (response.status_code, ctype, response.text[:200])
        body = response.json()
        if response.url.split("?")[0].endswith("/graphql") and "data" in body:
            assert body["data"] is None and body["errors"], body  # GraphQL's own error shape
            return
        assert body["success"] is False, body
        errors = body.get("errors") or body.get("error")
        assert isinstance(errors, list) and errors, body
        assert all(isinstance(e["code"], int) and isinstance(e["message"], str) for e in errors), body
        assert "Traceback" not in response.text
    else:
        assert ctype in SUCCESS_TYPES, (response.status_code, ctype)


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with TemporaryDirectory() as data_dir, live_server(data_dir=data_dir, plan="paid") as live:
        yield live


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _send(
    http: requests.Session, server: BackgroundServer, method: str, path: str, body: bytes, ctype: str | None
) -> requests.Response:
    headers = dict(AUTH)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return http.request(method, server.base + path, data=body, headers=headers, timeout=60)


@pytest.mark.parametrize(("method", "path", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@FUZZ
@given(data=st.data())
def test_hostile_bodies(
    server: BackgroundServer, http: requests.Session, method: str, path: str, valid: Any, data: st.DataObject
) -> None:
    body, ctype = data.draw(hostile_bodies(valid))
    assert_cloudflare_shaped(_send(http, server, method, path, body, ctype))


@pytest.mark.parametrize(("method", "path"), CONTROL_ROUTES, ids=[f"{m} {p}" for m, p in CONTROL_ROUTES])
@FUZZ
@given(data=st.data())
def test_control_plane_survives_hostile_bodies(
    server: BackgroundServer, http: requests.Session, method: str, path: str, data: st.DataObject
) -> None:
    body, ctype = data.draw(hostile_bodies({"model": "x", "response": {"result": {}}}))
    if path.endswith(("/reset", "/mode")):
        return  # they change server-wide state the other fuzz tests rely on; covered by the control tests
    response = _send(http, server, method, path, body, ctype)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text


@pytest.mark.parametrize(("method", "path", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "page",
                "per_page",
                "task",
                "source",
                "search",
                "hide_experimental",
                "include_deprecated",
                "queueRequest",
                "format",
                "author",
            ]
        ),
        st.text(max_size=30) | st.sampled_from(["1e999", "-1", "NaN", "0", "true"]),
        max_size=4,
    )
)
def test_hostile_query_strings(
    server: BackgroundServer, http: requests.Session, method: str, path: str, valid: Any,
    query: dict[str, str],
) -> None:
    body = orjson.dumps(valid) if valid is not None else b""
    response = http.request(
        method,
        server.base + path,
        params=query,
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )
    assert_cloudflare_shaped(response)


@pytest.mark.parametrize("depth", [10_000, 1025, 300, 129])
@pytest.mark.parametrize(("method", "path", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_deep_nesting_is_a_clean_400(
    server: BackgroundServer, http: requests.Session, method: str, path: str, valid: Any, depth: int
) -> None:
    response = _send(http, server, method, path, _nest(depth, b"["), "application/json")
    assert_cloudflare_shaped(response)
    if method == "POST":  # GET routes ignore a body
        assert 400 <= response.status_code < 500


@pytest.mark.parametrize("value", [b"[" * 120 + b"]" * 120, b'{"a":' * 120 + b"1" + b"}" * 120])
def test_nesting_under_the_limit_reaches_the_validator(
    server: BackgroundServer, http: requests.Session, value: bytes
) -> None:
    """Regression: 1000-deep arrays used to crash request fingerprinting (orjson dumps only 254 levels)."""
    body = b'{"prompt": "hi", "x": ' + value + b"}"
    response = _send(
        http, server, "POST", f"{AI}/run/@cf/meta/llama-3.1-8b-instruct", body, "application/json"
    )
    assert_cloudflare_shaped(response)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_bodies_long(
    server: BackgroundServer, http: requests.Session, method: str, path: str, valid: Any, data: st.DataObject
) -> None:
    body, ctype = data.draw(hostile_bodies(valid))
    assert_cloudflare_shaped(_send(http, server, method, path, body, ctype))
