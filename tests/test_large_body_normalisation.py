"""Replay normalises a large JSON body in slices (`backends/large_bodies.normalise_large_json`): parsed by
the server's sliced parser, redacted and stripped on a thread, dumped with sorted keys a slice at a
time. Its match key must be the one `normalise_request` gives the same body in one go, or a recording
would stop matching once its body crosses 1 MiB. The size thresholds and slice sizes are shrunk here,
so that generated bodies of a few hundred bytes take the sliced path and are cut into many slices.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from emulator.backends import large_bodies
from emulator.backends.large_bodies import normalise_large_json
from emulator.backends.upstream import Exchange
from emulator.cassettes import Cassette, CassetteIndex, Redactor
from emulator.server import inputs
from emulator.server.inputs import parse_json_body
from tests.examples import property_examples
from tests.slicing import shrink_slices

SETTINGS = settings(max_examples=property_examples(30), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TOKEN = "tok-" + "s3cr3t" * 4
ACCOUNT = "0123456789abcdef0123456789abcdef"
VOLATILE = frozenset({"seed", "options.rejectIfBusy", "messages.*.id"})


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(large_bodies, "INCREMENTAL_JSON_BYTES", 1)
    monkeypatch.setattr(inputs, "INCREMENTAL_JSON_BYTES", 1)
    monkeypatch.setattr(inputs, "JSON_CHUNK_BYTES", 7)
    shrink_slices(monkeypatch)
    yield


# Integers past 64 bits included: orjson reads them as floats, and so must the sliced path.
NUMBER = (st.integers(min_value=-(2**80), max_value=2**80)
          | st.floats(allow_nan=False, allow_infinity=False))
TEXT = st.text(max_size=10) | st.sampled_from([TOKEN, f"Bearer {TOKEN}", f"key={TOKEN}&x=1", ACCOUNT,
                                               f"/accounts/{ACCOUNT}/ai", "me@example.com", "seed"])
KEY = st.text(max_size=6) | st.sampled_from(["seed", "options", "rejectIfBusy", "messages", "id",
                                             "api_key", "authorization", "password", "b", "a"])
SCALAR = st.none() | st.booleans() | NUMBER | TEXT
JSON = st.recursive(
    SCALAR | st.lists(NUMBER, min_size=3, max_size=30),  # arrays of numbers: sliced when dumped
    lambda children: st.lists(children, max_size=6) | st.dictionaries(KEY, children, max_size=6),
    max_leaves=40,
)
BODY = st.fixed_dictionaries(
    {},
    optional={
        "seed": NUMBER,
        "options": st.fixed_dictionaries({}, optional={"rejectIfBusy": st.booleans(), "z": JSON, "a": JSON}),
        "messages": st.lists(st.fixed_dictionaries({"role": TEXT}, optional={"id": TEXT, "content": JSON}),
                             max_size=4),
        "image": st.lists(st.integers(0, 255), min_size=3, max_size=60),
        "prompt": TEXT,
        "zeta": JSON,
        "alpha": JSON,
    },
) | JSON


def _wire(value: Any, spaced: bool) -> bytes:
    """The body as a client sends it: compact, or with spaces and newlines."""
    return json.dumps(value, indent=1 if spaced else None, separators=None if spaced else (",", ":")).encode()


def _both(body: bytes, content_type: str = "application/json") -> tuple[Any, Any]:
    index = CassetteIndex(Cassette(name="t"), volatile=VOLATILE, redactor=Redactor(account_ids=[ACCOUNT]))
    redactor = Redactor(secrets=[TOKEN], account_ids=[ACCOUNT])
    path = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
    query = {"b": "2", "a": TOKEN}
    exchange = Exchange("post", path, query, CIMultiDict({"Content-Type": content_type}), body, ACCOUNT)
    large = asyncio.run(normalise_large_json(index, exchange, redactor, parse_json_body))
    whole = index.normalise("post", path, query, body, content_type, redactor=redactor)
    # With the body the route parsed already (`Call.raw_json`, an object): the same request.
    parsed = orjson.loads(body) if body.strip()[:1] == b"{" and large is not None else None
    if isinstance(parsed, dict):
        exchange.parsed = asyncio.run(parse_json_body(body))
        assert asyncio.run(normalise_large_json(index, exchange, redactor, _never)) == large
    return large, whole


async def _never(raw: bytes) -> Any:
    raise AssertionError("a body the route parsed is not parsed again")


@pytest.fixture(params=["dense", "push"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's two sliced parsers: dense_json for bodies of many small values (every small
    body), the push parser (ijson) when the body's values are taken to be long."""
    if request.param == "push":
        monkeypatch.setattr(inputs, "INCREMENTAL_JSON_BYTES_PER_VALUE", 0)
    return str(request.param)


@SETTINGS
@given(value=BODY, spaced=st.booleans())
def test_a_large_body_normalises_to_the_key_normalise_request_gives(small_slices: None, parser: str,
                                                                    value: Any, spaced: bool) -> None:
    large, whole = _both(_wire(value, spaced))
    assert large is not None
    assert large.body_canonical == whole.body_canonical
    assert large.body_json == whole.body_json
    assert (large.method, large.path, large.query) == (whole.method, whole.path, whole.query)
    assert large.key == whole.key


def test_secrets_and_volatile_fields_leave_the_sliced_canonical_body(small_slices: None) -> None:
    body = {"seed": 7, "prompt": f"use {TOKEN}", "image": list(range(10)),
            "options": {"rejectIfBusy": True, "keep": 1}, "messages": [{"id": "x", "role": "user"}]}
    large, whole = _both(orjson.dumps(body))
    assert large is not None and large.key == whole.key
    assert TOKEN.encode() not in large.body_canonical
    assert large.body_canonical.startswith(b'{"image":[0,1,2,3,4,5,6,7,8,9],"messages":[{"role":"user"}]')
    assert b"seed" not in large.body_canonical and b"rejectIfBusy" not in large.body_canonical


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"not json": ', "application/json"),
    (b'{"a": [1, 2, 3]}', "text/plain"),  # compared as the ordinary path reads a non-JSON type
    (b"", "application/json"),
])
def test_bodies_the_sliced_path_does_not_take_go_the_ordinary_way(small_slices: None, body: bytes,
                                                                  content_type: str) -> None:
    large, _whole = _both(body, content_type)
    assert large is None


LARGE_REQUEST = {"prompt": "hi", "notes": ["some words here " * 4] * 20_000}  # 1.3 MB


@pytest.mark.parametrize("route", ["native", "openai", "binding"])
async def test_replay_matches_a_large_body_on_the_routes_own_parse(make_emulator: Any, tmp_path: Path,
                                                                   route: str) -> None:
    """Over HTTP, in replay: the route parses a large body once (in slices), and the cassette
    backend matches on that value: its sliced parser never gets the body a second time (it did,
    ~0.7 s of 3 ms steps for 20 MB of strings)."""
    from emulator.cassettes import Interaction, RecordedRequest, RecordedResponse
    from emulator.cassettes.format import dump_cassette
    from tests.conftest import ACCOUNT as LOCAL
    from tests.conftest import AUTH

    llama = "@cf/meta/llama-3.1-8b-instruct"
    native_path = f"/client/v4/accounts/{LOCAL}/ai/run/{llama}"
    rest = orjson.dumps(LARGE_REQUEST)
    sent, path, headers = {
        "native": (rest, native_path, {**AUTH, "Content-Type": "application/json"}),
        "openai": (orjson.dumps({"model": llama, "messages": [{"role": "user", "content": "hi"}],
                                 "notes": LARGE_REQUEST["notes"]}),
                   f"/client/v4/accounts/{LOCAL}/ai/v1/chat/completions",
                   {**AUTH, "Content-Type": "application/json"}),
        "binding": (orjson.dumps({"inputs": LARGE_REQUEST, "options": {}}), f"/binding/{LOCAL}",
                    {"MF-URL": "https://workers-binding.ai/run?version=3", "MF-Binding": "AI",
                     "MF-Header-content-type": "application/json", "MF-Header-cf-consn-model-id": llama}),
    }[route]
    recorded_path, recorded_body = (native_path, rest) if route == "binding" else (path, sent)
    answer = (b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"replayed"},"finish_reason":"stop"}]}'
              if route == "openai"
              else b'{"result":{"response":"replayed"},"success":true,"errors":[],"messages":[]}')
    interaction = Interaction(
        request=RecordedRequest.build("POST", recorded_path, {}, {"content-type": "application/json"},
                                      recorded_body),
        response=RecordedResponse.build(200, {"content-type": "application/json"}, answer),
    )
    (tmp_path / "cassettes").mkdir()
    (tmp_path / "cassettes" / "large.json").write_bytes(
        dump_cassette(Cassette(name="large", interactions=[interaction])))
    emulator = await make_emulator(mode="replay", cassette="large", cassette_dir=tmp_path / "cassettes")
    backend = emulator.state.backend
    parsed: list[int] = []
    sliced = backend.parse_json

    async def counted(raw: bytes) -> Any:
        parsed.append(len(raw))
        return await sliced(raw)

    backend.parse_json = counted
    reply = await emulator.session.post(emulator.base + path, data=sent, headers=headers)
    assert reply.status == 200, (await reply.text())[:300]
    assert b"replayed" in await reply.read()
    assert len(sent) > 1024 * 1024 and len(sent) not in parsed and len(rest) not in parsed, parsed
