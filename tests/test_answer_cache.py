"""The rendered-answer cache: a repeated mock request gets the same bytes, and is still admitted,
charged and logged like the first one."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import web

from emulator.server.answer_cache import AnswerCache
from tests.conftest import ACCOUNT, AUTH, Emulator, ServerFactory

LLAMA = "@cf/meta/llama-3-8b-instruct"
# Headers that differ between any two answers, cached or not.
PER_CALL = {"cf-ai-req-id", "Date", "cf-ray"}
# A chat answer's own id and time (server/stamps.py) differ between calls too.
STAMPS = re.compile(rb'"id":"id-\d+"|"created":\d+')


async def _answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, str], bytes]:
    body = STAMPS.sub(b"", await resp.read())
    return resp.status, {k: v for k, v in resp.headers.items() if k not in PER_CALL}, body


def _cache(emulator: Emulator) -> AnswerCache:
    return emulator.state.answers


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"run/{LLAMA}", {"prompt": "the same question"}),
        ("run/@cf/baai/bge-base-en-v1.5", {"text": ["one", "two"]}),
        ("run/@cf/stabilityai/stable-diffusion-xl-base-1.0", {"prompt": "a lighthouse", "width": 256,
                                                               "height": 256}),
        ("v1/chat/completions", {"model": LLAMA, "messages": [{"role": "user", "content": "hi"}]}),
        ("v1/embeddings", {"model": "@cf/baai/bge-base-en-v1.5", "input": "x"}),
    ],
)
async def test_a_repeated_request_gets_the_same_wire_answer_and_is_charged_again(
    emulator: Emulator, path: str, body: dict
) -> None:
    url = f"{emulator.ai}/{path}"
    answers = [await emulator.session.post(url, json=body, headers=AUTH) for _ in range(3)]
    first, *again = [await _answer(r) for r in answers]
    assert first[0] == 200
    assert all(a == first for a in again)
    assert _cache(emulator).hits == 2
    ids = {r.headers["cf-ai-req-id"] for r in answers}
    assert len(ids) == 3  # a fresh request id on every answer
    usage = emulator.state.ledger.usage(account=ACCOUNT)
    assert usage.requests == 3
    assert usage.neurons == pytest.approx(3 * float(first[1]["cf-ai-neurons"]))
    log = emulator.state.request_log
    assert log is not None
    entries = log.select()
    assert [e.request_id for e in entries] == [r.headers["cf-ai-req-id"] for r in answers]
    assert {(e.model, e.surface, e.neurons, e.source) for e in entries} == {
        (entries[0].model, entries[0].surface, entries[0].neurons, "mock")}
    assert entries[-1].to_json()["response"] == entries[0].to_json()["response"]


async def test_the_free_wall_still_refuses_a_cached_answer(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(daily_neurons=1.0)
    statuses = []
    for _ in range(40):
        resp = await emulator.run(LLAMA, {"prompt": "the same question"})
        statuses.append(resp.status)
        await resp.read()
        if resp.status == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
    assert _cache(emulator).hits == len(statuses) - 1  # the refused call too was found, then refused


async def test_stubs_and_faults_bypass_the_cache(emulator: Emulator) -> None:
    prompt = {"prompt": "stub me"}
    plain = await (await emulator.run(LLAMA, prompt)).json()
    async with emulator.session.post(f"{emulator.base}/__emulator__/stubs",
                                     json={"text": "from a stub", "times": 1}) as r:
        assert r.status == 201
    stubbed = await (await emulator.run(LLAMA, prompt)).json()
    assert stubbed["result"]["response"] == "from a stub"
    assert await (await emulator.run(LLAMA, prompt)).json() == plain  # the stub is used up
    async with emulator.session.post(f"{emulator.base}/__emulator__/faults",
                                     json={"kind": "server_error"}) as r:
        assert r.status == 201
    assert (await emulator.run(LLAMA, prompt)).status == 500


async def test_different_bytes_are_different_requests(emulator: Emulator) -> None:
    a = await (await emulator.run(LLAMA, {"prompt": "one"})).json()
    b = await (await emulator.run(LLAMA, {"prompt": "two"})).json()
    assert a != b
    assert _cache(emulator).hits == 0
    assert len(_cache(emulator)) == 2


async def test_a_mode_switch_starts_a_new_cache(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator()
    await (await emulator.run(LLAMA, {"prompt": "kept"})).read()
    assert len(_cache(emulator)) == 1
    async with emulator.session.post(f"{emulator.base}/__emulator__/mode", json={"mode": "mock"}) as r:
        assert r.status == 200
    assert len(_cache(emulator)) == 0


def test_the_cache_is_bounded() -> None:
    cache = AnswerCache(max_entries=3, max_bytes=10_000)
    model = object()
    for i in range(10):
        key = ("POST", f"/p{i}", "application/json", "", b"x" * 100)
        cache.remember(key, web.Response(body=b"y" * 1000), model=model,  # type: ignore[arg-type]
                       surface="native", neurons=1.0, estimated=False, token=model)
    assert len(cache) == 3
    for _ in range(2):  # the cache is full: a new key is kept on its second use
        cache.remember(("POST", "/big", "", "", b""), web.Response(body=b"z" * 9_500),
                       model=model, surface="native", neurons=1.0, estimated=False,  # type: ignore[arg-type]
                       token=model)
    assert len(cache) == 1
    assert cache.get(("POST", "/p9", "application/json", "", b"x" * 100), model) is None
    assert cache.get(("POST", "/big", "", "", b""), model) is not None
    assert cache.get(("POST", "/big", "", "", b""), object()) is None  # another backend or cassette


async def test_health_reports_the_cache(emulator: Emulator) -> None:
    for _ in range(3):
        await (await emulator.run(LLAMA, {"prompt": "counted"})).read()
    async with emulator.session.get(f"{emulator.base}/__emulator__/health") as r:
        assert (await r.json())["answer_cache"] == {"answers": 1, "reused": 2}


async def test_credentials_are_checked_before_the_cache(make_emulator: ServerFactory) -> None:
    emulator = await make_emulator(token="the-token")
    good = {"Authorization": "Bearer the-token"}
    first = await emulator.run(LLAMA, {"prompt": "secret"}, headers=good)
    assert first.status == 200
    refused = await emulator.run(LLAMA, {"prompt": "secret"}, headers={"Authorization": "Bearer wrong"})
    assert refused.status in (401, 403) and (await refused.json())["success"] is False
    assert _cache(emulator).hits == 0
    assert (await emulator.run(LLAMA, {"prompt": "secret"}, headers=good)).status == 200
    assert _cache(emulator).hits == 1


async def test_streams_are_not_kept(emulator: Emulator) -> None:
    for _ in range(2):
        resp = await emulator.run(LLAMA, {"prompt": "flowing", "stream": True})
        assert resp.status == 200 and (await resp.text()).endswith("data: [DONE]\n\n")
    assert _cache(emulator).hits == 0 and len(_cache(emulator)) == 0


def test_a_full_cache_keeps_a_new_key_on_its_second_use_only() -> None:
    cache = AnswerCache(max_entries=4, max_bytes=10_000)
    model = object()

    def offer(i: int) -> None:
        cache.remember(("POST", f"/p{i}", "", "", b""), web.Response(body=b"y"), model=model,  # type: ignore[arg-type]
                       surface="native", neurons=1.0, estimated=False, token=model)

    for i in range(4):
        offer(i)
    assert len(cache) == 4  # room: kept on first use
    offer(4)
    assert cache.get(("POST", "/p4", "", "", b""), model) is None  # full: noted, not built
    assert cache.get(("POST", "/p0", "", "", b""), model) is not None  # and nothing evicted
    offer(4)
    assert cache.get(("POST", "/p4", "", "", b""), model) is not None  # its second use
    assert len(cache) == 4  # the least recently used went
