"""Tests for emulator.cassettes: format round-trips, redaction, matching, and the concurrent atomic store."""

from __future__ import annotations

import base64
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from emulator.cassettes import (
    Body,
    Cassette,
    CassetteFormatError,
    CassetteIndex,
    CassetteStore,
    Interaction,
    InvalidCassetteName,
    Matchers,
    NoMatch,
    RecordedRequest,
    RecordedResponse,
    Redactor,
    SSEEvent,
    SSESplitter,
    dump_cassette,
    load_cassette,
    normalise_path,
    request_key,
)
from emulator.cassettes.format import is_lines_format, sse_data
from emulator.cassettes.match import normalise_request
from tests.conftest import ACCOUNT

REPO = Path(__file__).resolve().parents[1]
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-Ab"  # 40 chars, Cloudflare API token shape
GLOBAL_KEY = "0123456789abcdef0123456789abcdef01234"  # 37 hex chars
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) + b"\xff\xfe\x00IEND\xaeB`\x82"
RUN = "/client/v4/accounts/{account_id}/ai/run/@cf/meta/llama-3.1-8b-instruct"
assert len(TOKEN) == 40 and len(GLOBAL_KEY) == 37


def make_interaction(
    path: str = RUN, body: Any = None, answer: str = "ok", query: dict[str, str] | None = None
) -> Interaction:
    return Interaction(
        request=RecordedRequest(
            method="POST",
            path=path,
            query=query or {},
            headers={"content-type": "application/json"},
            body=Body.from_json({"prompt": "hi"} if body is None else body),
        ),
        response=RecordedResponse(
            status=200,
            headers={"content-type": "application/json"},
            body=Body.from_json({"result": {"response": answer}, "success": True}),
        ),
    )


def roundtrip(cassette: Cassette) -> Cassette:
    return load_cassette(dump_cassette(cassette))


# --- format -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "encoding"),
    [
        (b'{"b": 1, "a": [1, 2.5, null, "\xc3\xa9"]}', "application/json", "json"),
        (b'{"a":1}', "application/vnd.api+json; charset=utf-8", "json"),
        (b"not json {", "application/json", "text"),
        (b"hello\r\nworld \xe2\x9c\x93", "text/plain; charset=utf-8", "text"),
        (PNG, "image/png", "base64"),
        (b"\x00\x01binary", "application/octet-stream", "base64"),
        (b"\xff\xfe not utf-8", "text/plain", "base64"),
        (b"", "application/json", "empty"),
    ],
)
def test_body_kinds_round_trip(data: bytes, content_type: str, encoding: str) -> None:
    body = Body.from_bytes(data, content_type)
    assert body.encoding == encoding
    reloaded = Body.model_validate_json(body.model_dump_json())
    if encoding == "json":
        assert orjson.loads(reloaded.to_bytes()) == orjson.loads(data)
    else:
        assert reloaded.to_bytes() == data


def test_png_response_survives_a_file_round_trip_byte_exact() -> None:
    response = RecordedResponse.build(200, {"Content-Type": "image/png"}, PNG)
    assert response.body is not None and response.body.encoding == "base64"
    cassette = Cassette(
        name="png", interactions=[Interaction(request=make_interaction().request, response=response)]
    )
    assert roundtrip(cassette).interactions[0].response.body_bytes() == PNG


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,  "b":2}',
        b'{"a": 1, "b": 2}\n',
        b'{"e":"\\u00e9","slash":"\\/"}',
        b'{"n":1.0e5,"m":-0.0}',
        b'{"dup":1,"dup":2}',
        b'{"big":123456789012345678901234567890}',
        b'{"result":{"response":"Hello!"},"success":true,"errors":[],"messages":[]}',
        b'{"embedding":[0.1,-0.000123,3.14159265358979,1e-7]}',
    ],
)
def test_response_json_bodies_are_byte_exact(data: bytes) -> None:
    response = RecordedResponse.build(200, {"content-type": "application/json"}, data)
    cassette = Cassette(
        name="exact", interactions=[Interaction(request=make_interaction().request, response=response)]
    )
    assert roundtrip(cassette).interactions[0].response.body_bytes() == data


def test_compact_json_response_is_stored_readably_as_json() -> None:
    response = RecordedResponse.build(
        200, {"content-type": "application/json"}, b'{"result":{"x":1},"success":true}'
    )
    assert response.body is not None and response.body.encoding == "json"
    odd = RecordedResponse.build(200, {"content-type": "application/json"}, b'{"a":1,  "b":2}')
    assert odd.body is not None and odd.body.encoding == "text"


SSE_STREAM = (
    'data: {"response":"Hé"}\n\n'
    'data: {"response":"llo"}\n\n'
    ": keep-alive comment\n\n"
    'event: usage\ndata: {"a":1}\ndata: {"b":2}\n\n'
    "data: [DONE]\n\n"
).encode()


def _regex_sse_data(raw: str) -> str:
    """The SSE spec's `data` of an event, by one regex split of its lines."""
    lines = [line for line in re.split(r"\r\n|\r|\n", raw) if line == "data" or line.startswith("data:")]
    return "\n".join(line[6:] if line.startswith("data: ") else line[5:] for line in lines)


def test_sse_splitting_does_not_depend_on_chunking_and_reads_data_as_the_spec_does() -> None:
    """Any chunking splits a stream into the events one chunk gives (an event's end found once,
    across chunk boundaries: CRLF CRLF, LF LF, CR CR), each event's `data` the regex split's; an
    event of a MiB or more is read a slice at a time (`SSEEvent.from_wire`) to the same event."""
    rng = random.Random(7)
    alphabet = ["data", ":", " ", "\r", "\n", "\r\n", "x", "é", "event", "\n\n"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert sse_data(text) == _regex_sse_data(text), repr(text)
        whole = SSESplitter()
        whole.feed(text.encode(), 0.0)
        pieces = SSESplitter()
        data, at = text.encode(), 0
        while at < len(data):
            step = rng.randint(1, 4)
            pieces.feed(data[at:at + step], 0.0)
            at += step
        assert [e.raw for e in pieces.finish()] == [e.raw for e in whole.finish()], repr(text)
    long = ("event: x\r\ndata: " + "é" * (1 << 20) + "\ndata:z\r\n\r\n").encode()
    assert SSEEvent.from_wire(long, 2.0) == SSEEvent.from_raw(long.decode(), 2.0)
    assert SSEEvent.from_wire(long, 2.0).data == "é" * (1 << 20) + "\nz"


def test_sse_events_keep_raw_chunks_data_and_timing_through_a_round_trip() -> None:
    splitter = SSESplitter()
    # Cut the stream mid-event and in the middle of the two-byte "é".
    cut = SSE_STREAM.index("é".encode()) + 1
    splitter.feed(SSE_STREAM[:cut], 5.0)
    splitter.feed(SSE_STREAM[cut:40], 12.5)
    splitter.feed(SSE_STREAM[40:], 30.0)
    events = splitter.finish()
    assert [e.data for e in events] == [
        '{"response":"Hé"}',
        '{"response":"llo"}',
        "",
        '{"a":1}\n{"b":2}',
        "[DONE]",
    ]
    assert events[0].offset_ms == 12.5 and events[-1].offset_ms == 30.0
    response = RecordedResponse.build(200, {"content-type": "text/event-stream"}, SSE_STREAM, events=events)
    reloaded = roundtrip(
        Cassette(
            name="sse", interactions=[Interaction(request=make_interaction().request, response=response)]
        )
    ).interactions[0]
    assert reloaded.response.events == events
    assert reloaded.response.events is not None
    assert reloaded.response.events[0].raw == 'data: {"response":"Hé"}\n\n'
    assert reloaded.response.body_bytes() == SSE_STREAM


def test_sse_without_timings_and_unterminated_tail_is_byte_exact() -> None:
    data = b"data: one\r\n\r\ndata: two\n\ndata: tail-without-blank-line"
    response = RecordedResponse.build(200, {"content-type": "text/event-stream; charset=utf-8"}, data)
    assert response.events is not None and [e.data for e in response.events] == [
        "one",
        "two",
        "tail-without-blank-line",
    ]
    assert response.body_bytes() == data
    assert SSEEvent.from_raw("data:x\n\n").data == "x"


def test_on_disk_json_is_pretty_stable_utf8_and_without_nulls() -> None:
    interaction = make_interaction(body={"prompt": "café", "z": 1, "a": None})
    interaction.response.headers = {"Content-Type": "application/json", "CF-AI-REQ-ID": "r1"}
    cassette = Cassette(name="pretty", source="recorded", interactions=[interaction])
    cassette = Cassette.model_validate(cassette.model_dump())
    raw = dump_cassette(cassette)
    text = raw.decode("utf-8")
    assert "café" in text and '\n  "interactions": [' in text
    assert list(orjson.loads(raw)) == ["format_version", "name", "created_at", "source", "interactions"]
    assert list(orjson.loads(raw)["interactions"][0]["response"]["headers"]) == [
        "cf-ai-req-id",
        "content-type",
    ]
    assert '"a": null' in text  # nulls inside bodies are data and stay
    assert '"text"' not in text and '"events"' not in text  # unused model fields are omitted
    assert dump_cassette(load_cassette(raw)) == raw


def test_unknown_format_version_is_rejected() -> None:
    raw = orjson.loads(dump_cassette(Cassette(name="v")))
    raw["format_version"] = 3
    with pytest.raises(CassetteFormatError, match="format_version"):
        load_cassette(orjson.dumps(raw))
    raw["format_version"] = 2  # version 2 is JSON Lines, never one document
    with pytest.raises(CassetteFormatError, match="JSON Lines"):
        load_cassette(orjson.dumps(raw))


def test_recorded_request_build_normalises_and_allow_lists() -> None:
    request = RecordedRequest.build(
        "post",
        f"/client/v4/accounts/{ACCOUNT}//ai/run/%40cf%2Fmeta%2Fllama-3.1-8b-instruct?b=2",
        {"a": "1"},
        {
            "Content-Type": "application/json",
            "Authorization": "Bearer x",
            "cf-aig-cache-ttl": "60",
            "User-Agent": "u",
        },
        b'{"prompt":"hi"}',
    )
    assert request.method == "POST" and request.path == RUN
    assert request.query == {"a": "1", "b": "2"}
    assert request.headers == {"cf-aig-cache-ttl": "60", "content-type": "application/json"}
    assert request.body.json_ == {"prompt": "hi"}


# --- redaction ----------------------------------------------------------------------------------


def test_redacts_text_tokens_ids_and_emails() -> None:
    r = Redactor(secrets=["explicit-secret-1"], account_ids=[ACCOUNT])
    text = (
        f"Authorization: Bearer {TOKEN}; key {GLOBAL_KEY}; explicit-secret-1; "
        f"url /accounts/{'f' * 32}/ai and {ACCOUNT}; mail jane.doe+x@corp.example.co.uk; api_key={'k' * 20}"
    )
    out = r.redact_text(text)
    for leaked in (TOKEN, GLOBAL_KEY, "explicit-secret-1", "f" * 32, ACCOUNT, "jane.doe", "k" * 20):
        assert leaked not in out
    assert "/accounts/{account_id}/ai" in out and "redacted@example.com" in out


def test_redaction_leaves_ids_models_and_token_counts_alone() -> None:
    r = Redactor()
    body = {
        "id": "chatcmpl-tool-b975da5af1f843e095ba7062d8e108ba",
        "model": "@cf/meta/llama-3.1-8b-instruct",
        "max_tokens": 40,
        "usage": {"prompt_tokens": 5},
        "text": "each token = word",
    }
    assert r.redact_json(body) == body
    assert r.redact_text('{"max_tokens":40,"stop":"token"}') == '{"max_tokens":40,"stop":"token"}'


def test_redacts_headers_json_fields_and_query() -> None:
    r = Redactor(account_ids=[ACCOUNT])
    headers = r.redact_headers(
        {
            "Authorization": f"Bearer {TOKEN}",
            "X-Auth-Key": GLOBAL_KEY,
            "X-Auth-Email": "me@example.org",
            "X-Auth-User-Service-Key": "v1.0-xyz",
            "cf-aig-authorization": f"Bearer {TOKEN}",
            "Cookie": "a=b",
            "Content-Type": "application/json",
            "cf-aig-metadata": f'{{"owner":"me@corp.io","note":"Bearer {TOKEN}"}}',
        }
    )
    assert set(headers) == {"Content-Type", "cf-aig-metadata"}
    assert TOKEN not in headers["cf-aig-metadata"] and "me@corp.io" not in headers["cf-aig-metadata"]
    body = r.redact_json(
        {"auth": {"apiKey": "short", "token": TOKEN, "password": "pw"}, "list": [f"id {ACCOUNT}"]}
    )
    assert body == {
        "auth": {"apiKey": "REDACTED", "token": "REDACTED", "password": "REDACTED"},
        "list": ["id {account_id}"],
    }
    assert r.redact_query({"token": "abc", "x": f"Bearer {TOKEN}"}) == {
        "token": "REDACTED",
        "x": "Bearer REDACTED",
    }
    assert r.redact_path(f"/v1/{'a' * 32}/gw/workers-ai/@cf/m") == "/v1/{account_id}/gw/workers-ai/@cf/m"


def test_written_cassette_contains_no_secret(tmp_path: Path) -> None:
    r = Redactor(secrets=["sk-explicit-abcdef"], account_ids=[ACCOUNT])
    request = RecordedRequest.build(
        "POST",
        f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct?token={TOKEN}&k=sk-explicit-abcdef",
        None,
        {
            "content-type": "application/json",
            "authorization": f"Bearer {TOKEN}",
            "cf-aig-metadata": "ops@corp.io",
        },
        orjson.dumps(
            {"prompt": f"mail bob@corp.io key {GLOBAL_KEY}", "api_key": TOKEN, "x": "sk-explicit-abcdef"}
        ),
    )
    events = [SSEEvent.from_raw(f'data: {{"response":"acct {ACCOUNT} bob@corp.io"}}\n\n', 1.0)]
    response = RecordedResponse.build(
        200,
        {"content-type": "text/event-stream", "cf-aig-log-id": f"Bearer {TOKEN}", "set-cookie": "s=1"},
        b"",
        events=events,
        allow=("content-type", "cf-aig-*", "set-cookie"),
    )
    interaction = r.redact_interaction(Interaction(request=request, response=response))
    store = CassetteStore(tmp_path)
    store.append("secrets/scan", interaction)
    text = (tmp_path / "secrets" / "scan.json").read_text("utf-8")
    for leaked in (
        TOKEN,
        GLOBAL_KEY,
        ACCOUNT,
        "sk-explicit-abcdef",
        "bob@corp.io",
        "ops@corp.io",
        "set-cookie",
    ):
        assert leaked not in text
    stored = store.load("secrets/scan").interactions[0]
    assert stored.request.path == RUN
    assert stored.request.query["token"] == "REDACTED"
    assert stored.response.events is not None
    assert stored.response.events[0].data == '{"response":"acct {account_id} redacted@example.com"}'


# --- matching -----------------------------------------------------------------------------------


def test_path_normalisation() -> None:
    assert normalise_path(f"/client/v4/accounts/{ACCOUNT}/ai/run/%40cf%2Fmeta%2Fllama-3.1-8b-instruct") == RUN
    assert normalise_path("//client/v4//accounts/other/ai//run/@cf/meta/llama-3.1-8b-instruct?x=1") == RUN


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (RUN, b'{"b": [1, {"y": 2, "x": 1}], "a": "x"}'),
        (
            "/client/v4/accounts/{account_id}/ai/run/%40cf%2Fmeta%2Fllama-3.1-8b-instruct",
            b'{"a":"x","b":[1,{"x":1,"y":2}]}',
        ),
        (
            "//client/v4/accounts/{account_id}//ai/run/@cf/meta/llama-3.1-8b-instruct",
            {"a": "x", "b": [1, {"x": 1, "y": 2}]},
        ),
        (
            f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf%2Fmeta/llama-3.1-8b-instruct",
            '{"b":[1,{"x":1,"y":2}],"a":"x"}',
        ),
    ],
)
def test_equivalent_requests_share_a_key(path: str, body: Any) -> None:
    expected = request_key(
        "POST", RUN, {}, {"a": "x", "b": [1, {"x": 1, "y": 2}]}, None, volatile=frozenset()
    )
    assert request_key("post", path, None, body, "application/json", volatile=frozenset()) == expected


def test_query_is_order_insensitive_and_volatile_keys_are_ignored() -> None:
    a = request_key(
        "GET", "/m", "b=2&a=1&ts=9", None, None, volatile=frozenset(), volatile_query=frozenset({"ts"})
    )
    b = request_key("GET", "/m", {"a": "1", "b": "2"}, None, None, volatile=frozenset())
    assert a == b
    assert request_key("GET", "/m", {"a": "2"}, None, None, volatile=frozenset()) != b


def test_volatile_body_fields_top_level_nested_and_wildcard() -> None:
    volatile = frozenset({"seed", "options.rejectIfBusy", "messages.*.id"})
    base = {"messages": [{"role": "user", "content": "hi"}], "options": {"keep": 1}}
    noisy = {
        "seed": 42,
        "messages": [{"role": "user", "content": "hi", "id": "m-123"}],
        "options": {"keep": 1, "rejectIfBusy": True},
    }
    assert request_key("POST", RUN, {}, noisy, None, volatile=volatile) == request_key(
        "POST", RUN, {}, base, None, volatile=volatile
    )
    assert request_key("POST", RUN, {}, noisy, None, volatile=frozenset()) != request_key(
        "POST", RUN, {}, base, None, volatile=frozenset()
    )
    assert noisy["seed"] == 42 and "id" in noisy["messages"][0]  # inputs are not mutated


def test_binary_bodies_match_byte_for_byte() -> None:
    cassette = Cassette(name="bin", interactions=[make_interaction()])
    cassette.interactions[0].request.body = Body.from_bytes(PNG, "image/png")
    index = CassetteIndex(cassette)
    assert index.next("POST", RUN, None, PNG, "image/png") is cassette.interactions[0]
    assert index.find("POST", RUN, None, PNG + b"x", "image/png") is None


def test_repeated_identical_requests_replay_in_recorded_order_then_repeat_the_last() -> None:
    cassette = Cassette(
        name="order",
        interactions=[
            make_interaction(answer="first"),
            make_interaction(body={"prompt": "other"}, answer="other"),
            make_interaction(answer="second"),
            make_interaction(answer="third"),
        ],
    )
    index = CassetteIndex(cassette)
    answers = [index.next("POST", RUN, None, b'{"prompt":"hi"}', "application/json") for _ in range(5)]
    assert [a.response.body.json_["result"]["response"] for a in answers if a.response.body] == [
        "first",
        "second",
        "third",
        "third",
        "third",
    ]
    assert index.unplayed() == [cassette.interactions[1]]
    index.rewind()
    first = index.next("POST", RUN, None, {"prompt": "hi"}, None)
    assert first.response.body is not None and first.response.body.json_["result"]["response"] == "first"


def test_index_applies_the_redactor_to_incoming_requests() -> None:
    r = Redactor(account_ids=[ACCOUNT])
    recorded = r.redact_request(
        RecordedRequest.build(
            "POST", f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/m", None, {}, b'{"to":"bob@corp.io"}'
        )
    )
    cassette = Cassette(
        name="r", interactions=[Interaction(request=recorded, response=make_interaction().response)]
    )
    assert (
        CassetteIndex(cassette).find(
            "POST", f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/m", None, b'{"to":"bob@corp.io"}', None
        )
        is None
    )
    index = CassetteIndex(cassette, redactor=r)
    assert index.next(
        "POST", f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/m", None, b'{"to":"bob@corp.io"}', None
    )


def test_no_match_names_cassette_closest_request_and_failing_matcher() -> None:
    cassette = Cassette(
        name="chat/hello",
        interactions=[
            make_interaction(
                path="/client/v4/accounts/{account_id}/ai/run/@cf/other/model", body={"prompt": "hi"}
            ),
            make_interaction(body={"prompt": "hello", "max_tokens": 10}),
            make_interaction(body={"prompt": "hi there", "max_tokens": 10}),
        ],
    )
    index = CassetteIndex(cassette)
    with pytest.raises(NoMatch) as caught:
        index.next("POST", RUN, None, {"prompt": "hi", "max_tokens": 10}, "application/json")
    err = caught.value
    message = str(err)
    assert "cassette 'chat/hello'" in message
    assert f"Closest recorded request: #1 POST {RUN}" in message
    assert "matchers passed: method, path, query" in message
    assert "matchers failed: body" in message
    assert "body: prompt: 'hi' != 'hello'" in message
    assert err.closest == cassette.interactions[1].request and err.failed == ["body"]
    assert err.diffs == ["body: prompt: 'hi' != 'hello'"]


def test_no_match_on_an_empty_cassette() -> None:
    with pytest.raises(NoMatch, match=r"'empty'.*no recorded requests"):
        CassetteIndex(Cassette(name="empty")).next("GET", "/x", None, None, None)


def test_matchers_report_one_line_diffs() -> None:
    a = normalise_request("GET", "/a", {"q": "1"}, {"x": [1, 2]}, None)
    b = normalise_request("POST", "/b", {}, {"x": [1, 3]}, None)
    assert Matchers.method(a, b) == "method: GET != POST"
    assert Matchers.path(a, b) == "path: /a != /b"
    assert Matchers.query(a, b) == "query: q=1 != (none)"
    assert Matchers.body(a, b) == "body: x[1]: 2 != 3"
    assert Matchers.body(a, normalise_request("GET", "/a", None, PNG, "image/png")).startswith("body: json ")
    assert Matchers.compare(a, a) == (["method", "path", "query", "body"], [])


def _lookup_seconds(size: int, lookups: int, rounds: int = 2) -> float:
    interactions = [make_interaction(body={"prompt": f"p{i}", "n": i}) for i in range(size)]
    index = CassetteIndex(Cassette(name="big", interactions=interactions))
    bodies = [orjson.dumps({"n": i, "prompt": f"p{i}"}) for i in range(size)]
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for j in range(lookups):
            i = j % size
            assert index.next("POST", RUN, None, bodies[i], "application/json") is interactions[i]
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.exclusive  # times the loop/answers: alone under xdist
def test_lookup_cost_does_not_grow_with_cassette_size() -> None:
    # A relative measure, not a timed target: a scan over 10,000 recordings would be ~100x slower
    # per lookup than over 100; an O(1) index costs the same. (Absolute figures live in bench/.)
    small = _lookup_seconds(100, 3000)
    large = _lookup_seconds(10_000, 3000)
    assert large < 5 * small, f"100 recordings: {small:.3f}s, 10,000 recordings: {large:.3f}s"


# --- store --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "../x", "a/../b", "/abs", "a//b", "./a", "a\\b"])
def test_store_rejects_escaping_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidCassetteName):
        CassetteStore(tmp_path).path(name)


def test_store_save_load_names_and_reload_on_change(tmp_path: Path) -> None:
    store = CassetteStore(tmp_path)
    assert store.names() == [] and not store.exists("a/b")
    store.save(Cassette(name="a/b", interactions=[make_interaction()]))
    store.append("top", make_interaction())
    assert store.names() == ["a/b", "top"] and store.exists("a/b")
    first = store.load("a/b")
    assert store.load("a/b") is first  # cached while unchanged
    other = CassetteStore(tmp_path)
    other.append("a/b", make_interaction(answer="new"))
    reloaded = store.load("a/b")
    assert reloaded is not first and len(reloaded.interactions) == 2
    assert oct((tmp_path / "a" / "b.json").stat().st_mode & 0o777) == "0o644"


def _append_many(directory: str, name: str, worker: int, count: int) -> None:
    store = CassetteStore(directory)
    for i in range(count):
        store.append(name, make_interaction(body={"worker": worker, "i": i}))


def _assert_complete(store: CassetteStore, name: str, workers: int, count: int) -> None:
    cassette = store.load(name)
    seen = {(i.request.body.json_["worker"], i.request.body.json_["i"]) for i in cassette.interactions}
    assert len(cassette.interactions) == workers * count
    assert seen == {(w, i) for w in range(workers) for i in range(count)}


def _watch_parses(path: Path, stop: threading.Event, failures: list[str]) -> None:
    while not stop.is_set():
        if path.exists():
            try:
                load_cassette(path.read_bytes())
            except CassetteFormatError as exc:
                failures.append(str(exc))


def test_concurrent_appends_from_threads_lose_nothing(tmp_path: Path) -> None:
    stop, failures = threading.Event(), list[str]()
    watcher = threading.Thread(target=_watch_parses, args=(tmp_path / "t.json", stop, failures))
    watcher.start()
    threads = [threading.Thread(target=_append_many, args=(str(tmp_path), "t", w, 15)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert failures == []
    _assert_complete(CassetteStore(tmp_path), "t", 8, 15)


def test_concurrent_appends_from_processes_lose_nothing(tmp_path: Path) -> None:
    stop, failures = threading.Event(), list[str]()
    watcher = threading.Thread(target=_watch_parses, args=(tmp_path / "sub" / "p.json", stop, failures))
    watcher.start()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), "sub/p", w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    stop.set()
    watcher.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert failures == []
    _assert_complete(CassetteStore(tmp_path), "sub/p", 4, 15)
    # The lock is the folder itself: nothing but the cassette lands in a committed cassettes folder.
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["p.json"]


def test_processes_appending_while_one_converts_a_version_1_cassette_lose_nothing(tmp_path: Path) -> None:
    """The first append rewrites a version-1 file as version 2 (a new inode, through a temporary file);
    writers in other processes wait on the same lock, so none appends to the file being replaced."""
    folder = tmp_path / "cassettes" / "test_module"
    folder.mkdir(parents=True)
    (folder / "test_x.json").write_bytes(dump_cassette(Cassette(name="test_module/test_x")))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path / "cassettes"), "test_module/test_x", w, 10))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    _assert_complete(CassetteStore(tmp_path / "cassettes"), "test_module/test_x", 4, 10)
    assert is_lines_format((folder / "test_x.json").read_bytes()[:4096])
    assert sorted(p.name for p in folder.iterdir()) == ["test_x.json"]
    assert sorted(p.name for p in (tmp_path / "cassettes").iterdir()) == ["test_module"]


KILLED_WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.test_cassettes import make_interaction
from emulator.cassettes import CassetteStore
store = CassetteStore(sys.argv[1])
i = 0
while True:
    store.append("killed", make_interaction(body={"i": i, "pad": "x" * 2000}))
    i += 1
"""


def test_writer_killed_with_sigkill_leaves_a_parseable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.json"
    previous = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(REPO)], cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05 + 0.07 * round_)  # land the kill at different points of the write cycle
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        cassette = load_cassette(path.read_bytes())
        count = len(cassette.interactions)
        assert count >= previous and count > 0
        assert [i.request.body.json_["i"] for i in cassette.interactions][previous:] == list(
            range(count - previous)
        )
        previous = count
    # Leftover temp files from killed writers must not show up as cassettes.
    assert CassetteStore(tmp_path).names() == ["killed"]


def test_base64_body_validation() -> None:
    with pytest.raises(ValueError, match="base64"):
        Body(encoding="base64", base64="@@not base64@@")
    assert Body(encoding="base64", base64=base64.b64encode(PNG).decode()).to_bytes() == PNG


def test_redaction_prefilter_never_skips_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    # Text without '@', ':', '=', '/', 37 hex digits or "bearer" skips the substitutions; the answer
    # must be what running them all gives, on text built from the pieces the patterns look for.
    from emulator.cassettes import redact, shapes

    pieces = ["Bearer abcdefgh12345678", "bearer", "api_key", "token", " = ", ": ", "'", '"', "a" * 9,
              "user@example.com", "@", "accounts/", "0123456789abcdef" * 2, "f" * 37, "/", " ", "prompt",
              "x-auth-key", "PASSWORD", "Hello world", "é", "12345678"]
    gen = random.Random(7)
    texts = ["".join(gen.choice(pieces) for _ in range(gen.randrange(1, 8))) for _ in range(3000)]
    redactor = redact.Redactor(secrets=["s3cr3t"], account_ids=["0123456789abcdef0123456789abcdef"])
    filtered = [redactor.redact_text(t) for t in texts]
    monkeypatch.setattr(shapes, "_MAYBE_CREDENTIAL", re.compile(""))
    assert filtered == [redactor.redact_text(t) for t in texts]


def test_replay_normalises_a_json_body_as_recording_stores_it() -> None:
    # Replay parses and redacts an incoming JSON body directly; the key must be the one of the body
    # recording stores (Body.from_request_bytes, then redact_body), whatever the body and its type.
    from emulator.cassettes.format import Body
    from emulator.cassettes.match import normalise_request
    from emulator.cassettes.redact import Redactor

    redactor = Redactor(secrets=["s3cr3t"], account_ids=["0123456789abcdef0123456789abcdef"])
    path = "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai/run/@cf/meta/llama-3-8b-instruct"
    bodies = [b'{"a":1}', b"null", b'"s3cr3t"', b"[1,2]",
              b'{"api_key":"abcdefghijk","t":"Bearer abcdefghijkl"}', b"not json", b"\xff\xfe",
              b'{"x": "a@b.com", "seed": 4}']
    for body in bodies:
        for content_type in ("application/json", "application/json; charset=utf-8", "text/plain", None,
                             "audio/wav", "application/vnd.api+json"):
            incoming = normalise_request("POST", path, "", body, content_type, redactor=redactor,
                                         volatile=frozenset({"seed"}))
            stored = redactor.redact_body(Body.from_request_bytes(body, content_type))
            recorded = normalise_request("POST", redactor.redact_path(path), "", stored, content_type,
                                         volatile=frozenset({"seed"}))
            assert (incoming.key, incoming.body_kind) == (recorded.key, recorded.body_kind), body
