"""Hypothesis fuzzing of what test_fuzz.py leaves out: header bytes (credentials, content types,
encodings, cookies, Expect), body encodings (gzip/deflate that lie, truncate or expand), and the
control plane's query parameters, ids and clock. Sent as raw HTTP against a server with `--token`;
every answer must be below 500 and, on a stale clock or a fuzzed day, usage and the dashboard must
keep answering. `WORKERS_AI_FUZZ_EXAMPLES` sets the example count; `pytest -m slow` runs 500."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.launch.background import BackgroundServer
from tests.conftest import ACCOUNT
from tests.live_server import live_server
from tests.rawhttp import request

TOKEN = "fuzz-header-token-42"
AI = f"/client/v4/accounts/{ACCOUNT}/ai"
EXAMPLES = int(os.environ.get("WORKERS_AI_FUZZ_EXAMPLES", "10"))
ROUTES = [
    ("POST", f"{AI}/run/@cf/meta/llama-3.1-8b-instruct", b'{"prompt": "hi", "max_tokens": 8}'),
    ("POST", f"{AI}/run/@cf/baai/bge-small-en-v1.5", b'{"text": ["a"]}'),
    ("POST", f"{AI}/v1/chat/completions",
     b'{"model": "@cf/meta/llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}'),
    ("GET", f"{AI}/models/search", b""),
    ("POST", "/client/v4/graphql", b'{"query": "{ viewer { accounts { x } } }"}'),
    ("POST", f"/v1/{ACCOUNT}/gw/workers-ai/@cf/meta/llama-3.1-8b-instruct", b'{"prompt": "hi"}'),
    ("GET", "/__emulator__/requests", b""),
    ("POST", "/__emulator__/stubs", b'{"prompt": "x", "text": "y"}'),
]
HEADER_NAMES = [b"Authorization", b"X-Auth-Key", b"X-Auth-Email", b"cf-aig-authorization", b"Content-Type",
                b"Content-Encoding", b"Accept", b"Cookie", b"Expect", b"Accept-Encoding", b"User-Agent",
                b"X-Session-Affinity", b"cf-aig-cache-ttl"]
# Any byte a header value can carry on the wire (CR and LF would end it).
HEADER_BYTES = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
INTERESTING_VALUES = st.sampled_from([
    b"Bearer " + TOKEN.encode(), b"Bearer \xff", b"Bearer", b"bearer  x y", b"Basic dXNlcg==", b"\xc3\x28",
    b"gzip", b"deflate", b"br", b"gzip, gzip", b"identity", b"application/json; charset=\xff",
    b"multipart/form-data; boundary=", b"100-continue", b"200-ok", b"\x00", b"a" * 4000, b"",
])
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Control-plane calls are cheap: more examples, so the sampled extremes (year 9999, 5,000 digits) come up.
CONTROL_FUZZ = settings(FUZZ, max_examples=EXAMPLES * 5)
LONG = settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-headers")
    with live_server(data_dir=data_dir, token=TOKEN) as live:
        yield live


def assert_no_server_error(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:300])
    assert b"Traceback" not in body


@st.composite
def header_sets(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    chosen = draw(st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=5, unique=True))
    headers = [(name, draw(HEADER_BYTES | INTERESTING_VALUES)) for name in chosen]
    if b"Authorization" not in chosen and draw(st.booleans()):
        headers.append((b"Authorization", b"Bearer " + TOKEN.encode()))
    return headers


@st.composite
def encoded_bodies(draw: st.DrawFn, plain: bytes) -> tuple[bytes, bytes]:
    encoding = draw(st.sampled_from([b"gzip", b"deflate", b"identity", b"GZIP", b"x-gzip"]))
    payload = draw(st.sampled_from([plain, b"{", b"", b"[" * 200, b'{"prompt": "' + b"z" * 50_000 + b'"}']))
    packed = {b"gzip": gzip.compress, b"x-gzip": gzip.compress, b"GZIP": gzip.compress,
              b"deflate": zlib.compress}.get(encoding, lambda b: b)(payload)
    damage = draw(st.sampled_from(["none", "truncate", "garbage", "flip"]))
    if damage == "truncate":
        packed = packed[: draw(st.integers(0, max(0, len(packed) - 1)))]
    elif damage == "garbage":
        packed = draw(st.binary(max_size=200))
    elif damage == "flip" and packed:
        i = draw(st.integers(0, len(packed) - 1))
        packed = packed[:i] + bytes([packed[i] ^ 0xFF]) + packed[i + 1:]
    return encoding, packed


Headers = list[tuple[bytes, bytes]]


def _send(server: BackgroundServer, method: str, path: str, headers: Headers, body: bytes) -> None:
    answer = request(server.base, method, path, headers, body)
    assert_no_server_error(answer.status, answer.body)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@FUZZ
@given(data=st.data())
def test_hostile_headers(
    server: BackgroundServer, method: str, path: str, body: bytes, data: st.DataObject
) -> None:
    headers = data.draw(header_sets())
    if not any(name == b"Content-Encoding" for name, _ in headers):
        headers.append((b"Content-Type", b"application/json"))
    _send(server, method, path, headers, body)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@FUZZ
@given(data=st.data())
def test_hostile_body_encodings(
    server: BackgroundServer, method: str, path: str, body: bytes, data: st.DataObject
) -> None:
    encoding, packed = data.draw(encoded_bodies(body))
    headers = [(b"Authorization", b"Bearer " + TOKEN.encode()), (b"Content-Type", b"application/json"),
               (b"Content-Encoding", encoding)]
    _send(server, method, path, headers, packed)


NUMBERISH = st.one_of(
    st.integers(-(10**30), 10**30).map(str), st.text(max_size=30),
    st.sampled_from(["9" * 5000, "-1", "0", "1e309", "NaN", "٣", "²", "0x10", "9999-12-31", "0001-01-01",
                     "2026-02-30", "9998-12-31", "1970-01-01"]),
)
CONTROL_GETS = ["/__emulator__/usage", "/__emulator__/usage/hourly", "/__emulator__/usage/hourly.svg",
                "/__emulator__/requests", "/__emulator__/", "/__emulator__/dashboard/parts",
                "/__emulator__/requests/{n}"]


def _control_still_answers(server: BackgroundServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/__emulator__/usage", "/__emulator__/usage/hourly", "/__emulator__/"):
        answer = requests.get(server.base + path, headers=auth, timeout=30)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])


@pytest.mark.parametrize("path", CONTROL_GETS)
@CONTROL_FUZZ
@given(params=st.dictionaries(st.sampled_from(["day", "limit", "account", "model", "status", "surface",
                                              "request"]),
                              NUMBERISH, max_size=4), ident=NUMBERISH)
def test_hostile_control_queries(
    server: BackgroundServer, path: str, params: dict[str, str], ident: str
) -> None:
    target = path.replace("{n}", requests.utils.quote(ident, safe="") or "0")
    answer = requests.get(server.base + target, params=params, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30)
    assert_no_server_error(answer.status_code, answer.content)


CLOCK_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**400), 10**400), st.text(max_size=40),
    st.sampled_from(["9999-12-31T23:00:00Z", "0001-01-01T00:00:00+14:00", "9998-12-31T23:59:59Z",
                     "2026-01-01T00:00:00", "2026-01-01T00:00:00-23:59", "now"]),
    st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
)


@CONTROL_FUZZ
@given(key=st.sampled_from(["now", "advance_seconds", "real"]), value=CLOCK_VALUES, twice=st.booleans())
def test_hostile_clock_moves_leave_usage_and_dashboard_working(
    server: BackgroundServer, key: str, value: object, twice: bool
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        for _ in range(2 if twice else 1):
            # The stdlib writes integers of any size (orjson stops at 64 bits).
            answer = requests.post(server.base + "/__emulator__/clock", data=json.dumps({key: value}),
                                   headers=auth, timeout=30)
            assert_no_server_error(answer.status_code, answer.content)
        _control_still_answers(server)
    finally:
        requests.post(server.base + "/__emulator__/clock", json={"real": True}, headers=auth, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@LONG
@given(data=st.data())
def test_hostile_headers_long(
    server: BackgroundServer, method: str, path: str, body: bytes, data: st.DataObject
) -> None:
    _send(server, method, path, data.draw(header_sets()), body)


@pytest.mark.slow
@LONG
@given(key=st.sampled_from(["now", "advance_seconds"]), value=CLOCK_VALUES)
def test_hostile_clock_moves_long(server: BackgroundServer, key: str, value: object) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        answer = requests.post(server.base + "/__emulator__/clock", data=json.dumps({key: value}),
                               headers=auth, timeout=30)
        assert_no_server_error(answer.status_code, answer.content)
        _control_still_answers(server)
    finally:
        requests.post(server.base + "/__emulator__/clock", json={"real": True}, headers=auth, timeout=30)
