"""Record, replay, passthrough and replay-or-record against a real local stand-in for Cloudflare."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from emulator.cassettes import load_cassette
from tests.conftest import ACCOUNT, Emulator, ServerFactory, wav_bytes
from tests.fake_upstream import (
    BROKEN_AFTER,
    LLAMA,
    REAL_ACCOUNT,
    REAL_TOKEN,
    SDXL,
    SSE_EVENTS,
    WHISPER,
    FakeUpstream,
    burst_then_kill_9,
    start_recording_server,
)
from tests.serving import free_port

CLIENT_TOKEN = "client-own-token-5e4d3c2b1a"
EMAIL = "alice.secret@example.org"
HEADERS = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
GATEWAY = "my-gateway"



def real_settings(upstream: FakeUpstream | None, tmp_path: Path, mode: str, **more: Any) -> dict[str, Any]:
    base = upstream.base if upstream is not None else "http://127.0.0.1:9"
    return {
        "mode": mode,
        "upstream": base,
        "upstream_gateway": base,
        "upstream_token": REAL_TOKEN,
        "upstream_account_id": REAL_ACCOUNT,
        "cassette_dir": tmp_path / "cassettes",
        "cassette": "suite",
        **more,
    }


@dataclass
class Answer:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def send(emu: Emulator, method: str, url: str, **kwargs: Any) -> Answer:
    kwargs.setdefault("headers", HEADERS)
    async with emu.session.request(method, url, **kwargs) as resp:
        body = await resp.read()
        keep = {
            k.lower(): v
            for k, v in resp.headers.items()
            if k.lower() in ("cf-ai-req-id", "cf-ai-neurons") or k.lower().startswith("cf-aig-")
        }
        return Answer(resp.status, resp.headers.get("Content-Type", ""), keep, body)


def suite(emu: Emulator) -> list[tuple[str, str, dict[str, Any]]]:
    """One request of every kind the issue lists: JSON, SSE, PNG, raw audio, errors, catalog, gateway, /v1."""
    gateway = f"{emu.base}/v1/{emu.account}/{GATEWAY}/workers-ai/{LLAMA}"
    return [
        ("json", emu.run_url(LLAMA), {"json": {"prompt": f"Hello, I am {EMAIL}"}}),
        ("stream", emu.run_url(LLAMA), {"json": {"prompt": "Hello", "stream": True}}),
        ("png", emu.run_url(SDXL), {"json": {"prompt": "a cat"}}),
        (
            "audio",
            emu.run_url(WHISPER),
            {"data": wav_bytes(0.1), "headers": {**HEADERS, "Content-Type": "application/octet-stream"}},
        ),
        ("5006", emu.run_url(LLAMA), {"json": {"prompt": "trigger-5006"}}),
        ("4006", emu.run_url(LLAMA), {"json": {"prompt": "trigger-4006"}}),
        ("catalog", f"{emu.ai}/models/search?per_page=50&search=llama", {"method": "GET"}),
        ("gateway", gateway, {"json": {"prompt": "via gateway"}}),
        (
            "v1chat",
            f"{emu.ai}/v1/chat/completions",
            {
                "json": {
                    "model": "@cf/meta/llama-3-8b-instruct",
                    "messages": [{"role": "user", "content": "Hi"}],
                }
            },
        ),
    ]


async def run_suite(emu: Emulator) -> dict[str, Answer]:
    answers = {}
    for name, url, kwargs in suite(emu):
        kwargs = dict(kwargs)
        method = kwargs.pop("method", "POST")
        answers[name] = await send(emu, method, url, **kwargs)
    return answers


def cassette_file(tmp_path: Path, name: str = "suite") -> Path:
    return tmp_path / "cassettes" / f"{name}.json"


async def test_record_then_replay_offline_gives_identical_answers(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    recorded = await run_suite(recorder)

    # The fake only answers 2xx to the real token on the real account: the mapping happened.
    assert {n: a.status for n, a in recorded.items()} == {
        "json": 200,
        "stream": 200,
        "png": 200,
        "audio": 200,
        "5006": 400,
        "4006": 429,
        "catalog": 200,
        "gateway": 200,
        "v1chat": 200,
    }
    assert all(s.headers["Authorization"] == f"Bearer {REAL_TOKEN}" for s in upstream.requests)
    assert all(
        REAL_ACCOUNT in s.path for s in upstream.requests if "/accounts/" in s.path or "/v1/" in s.path
    )
    assert recorded["png"].content_type == "image/png" and recorded["png"].body.startswith(b"\x89PNG")
    assert recorded["stream"].body == b"".join(f"data: {e}\n\n".encode() for e in SSE_EVENTS)
    assert recorded["json"].headers["cf-ai-neurons"] == "1.98"
    assert recorded["audio"].body.startswith(b'{\n "result"')  # pretty-printed upstream JSON kept as is
    sent = len(upstream.requests)
    assert sent == len(recorded)

    await upstream.stop()
    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    replayed = await run_suite(replayer)
    for name, answer in recorded.items():
        again = replayed[name]
        assert (again.status, again.content_type, again.body) == (
            answer.status,
            answer.content_type,
            answer.body,
        ), name
        assert again.headers == answer.headers, name
    assert len(upstream.requests) == sent

    interactions = load_cassette(cassette_file(tmp_path).read_bytes()).interactions
    stream = next(i for i in interactions if i.response.events)
    assert [e.data for e in stream.response.events or []] == SSE_EVENTS
    offsets = [e.offset_ms for e in stream.response.events or []]
    assert offsets == sorted(offsets) and offsets[-1] > offsets[0]
    assert interactions[0].neurons == 1.98  # from the real cf-ai-neurons header
    assert [i.neurons for i in interactions if i.response.status >= 400] == [None, None]


async def test_finetunes_and_tomarkdown_are_recorded_and_replayed(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    """Fine-tunes live on the real account in record mode, and toMarkdown is converted there: both are
    forwarded, recorded, and replayed offline byte for byte."""
    def requests(emu: Emulator) -> list[tuple[str, str, dict[str, Any]]]:
        form = {"files": ("page.html", b"<h1>x</h1>", "text/html")}
        return [("GET", f"{emu.ai}/finetunes", {}), ("POST", f"{emu.ai}/tomarkdown", {"files": form})]

    async def run(emu: Emulator) -> list[Answer]:
        out = []
        for method, url, kwargs in requests(emu):
            if "files" in kwargs:
                import aiohttp

                data = aiohttp.FormData()
                name, body, kind = kwargs["files"]["files"]
                data.add_field("files", body, filename=name, content_type=kind)
                out.append(await send(emu, method, url, data=data))
            else:
                out.append(await send(emu, method, url))
        return out

    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    recorded = await run(recorder)
    assert [a.status for a in recorded] == [200, 200]
    assert recorded[0].json()["result"][0]["name"] == "real-lora"  # the upstream's, not a local store's
    assert recorded[1].json()["result"][0]["data"] == "# converted upstream\n"
    await upstream.stop()
    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    replayed = await run(replayer)
    assert [(a.status, a.body) for a in replayed] == [(a.status, a.body) for a in recorded]


async def test_cassettes_hold_no_secret(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    await run_suite(emu)
    key_headers = {"X-Auth-Email": EMAIL, "X-Auth-Key": "0123456789abcdef0123456789abcdef01234"}
    await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "legacy auth"}, headers=key_headers)
    files = list((tmp_path / "cassettes").rglob("*.json"))
    assert files
    for path in files:
        text = path.read_text()
        for secret in (REAL_TOKEN, CLIENT_TOKEN, REAL_ACCOUNT, ACCOUNT, EMAIL, key_headers["X-Auth-Key"]):
            assert secret not in text, (path, secret)


async def test_no_match_names_cassette_closest_request_and_difference(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    assert (
        await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": "Hello", "seed": 1})
    ).status == 200

    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    miss = await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "Goodbye", "seed": 1})
    assert miss.status == 404
    error = miss.json()["errors"][0]
    assert error["code"] == 7404
    message = error["message"]
    assert "cassette 'suite'" in message
    assert f"Closest recorded request: #0 POST /client/v4/accounts/{{account_id}}/ai/run/{LLAMA}" in message
    assert "matchers failed: body" in message and "prompt: 'Goodbye' != 'Hello'" in message
    assert "--ignore-field" in message
    assert len(upstream.requests) == 1  # replay never reaches upstream

    other = await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "Hello", "seed": 2})
    assert other.status == 404 and "seed: 2 != 1" in other.json()["errors"][0]["message"]
    tolerant = await make_emulator(**real_settings(upstream, tmp_path, "replay", ignore_fields=["seed"]))
    assert (
        await send(tolerant, "POST", tolerant.run_url(LLAMA), json={"prompt": "Hello", "seed": 2})
    ).status == 200

    missing = await make_emulator(**real_settings(upstream, tmp_path, "replay", cassette="never-recorded"))
    answer = await send(missing, "POST", missing.run_url(LLAMA), json={"prompt": "Hello"})
    assert answer.status == 404 and "'never-recorded' does not exist" in answer.json()["errors"][0]["message"]


async def test_repeated_requests_replay_in_recorded_order(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    first = await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": "again"})
    second = await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": "again"})
    assert first.body != second.body
    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    replies = [
        await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "again"}) for _ in range(3)
    ]
    assert [r.body for r in replies] == [first.body, second.body, second.body]


async def test_replay_or_record_records_only_what_is_missing(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**real_settings(upstream, tmp_path, "replay-or-record"))
    a = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "one"})
    b = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "one"})
    c = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "two"})
    assert a.body == b.body and c.status == 200
    assert len(upstream.requests) == 2
    assert len(load_cassette(cassette_file(tmp_path).read_bytes()).interactions) == 2


async def test_record_mode_refreshes_the_cassette(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    for prompt in ("old", "new"):
        emu = await make_emulator(**real_settings(upstream, tmp_path, "record"))
        await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": prompt})
    interactions = load_cassette(cassette_file(tmp_path).read_bytes()).interactions
    assert [i.request.body.json_ for i in interactions] == [{"prompt": "new"}]


async def test_ledger_counts_replayed_neurons_and_not_errors(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    for prompt in ("a", "trigger-5006"):
        await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": prompt})
    assert recorder.state.ledger.day_total(ACCOUNT) == pytest.approx(1.98)

    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    ok = await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "a"})
    bad = await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "trigger-5006"})
    assert ok.headers["cf-ai-neurons"] == "1.98" and bad.status == 400
    assert replayer.state.ledger.day_total(ACCOUNT) == pytest.approx(1.98)


async def test_spending_cap_stops_real_calls(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**real_settings(upstream, tmp_path, "passthrough", max_upstream_neurons=3))
    statuses = [
        (await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": f"p{i}"})).status for i in range(2)
    ]
    assert statuses == [200, 200]  # 1.98, then 3.96 ≥ 3
    refused = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "p3"})
    assert refused.status == 429
    error = refused.json()["errors"][0]
    assert error["code"] == 7429 and "3.96 real neurons" in error["message"]
    assert "not sent" in error["message"]
    assert len(upstream.requests) == 2


async def test_stream_is_relayed_event_by_event(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    upstream.hold_last_event = asyncio.Event()
    emu = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    async with emu.session.post(
        emu.run_url(LLAMA), json={"prompt": "Hi", "stream": True}, headers=HEADERS
    ) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        # The upstream has not sent its last events yet: the first must already be here.
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout=5)
        assert first == f"data: {SSE_EVENTS[0]}\n\n".encode()
        assert not upstream.hold_last_event.is_set()
        upstream.hold_last_event.set()
        rest = await resp.read()
    assert first + rest == b"".join(f"data: {e}\n\n".encode() for e in SSE_EVENTS)
    # Recorded once complete, with the same events.
    events = load_cassette(cassette_file(tmp_path).read_bytes()).interactions[0].response.events or []
    assert [e.data for e in events] == SSE_EVENTS


async def read_stream(emu: Emulator, prompt: str) -> tuple[bytes, bool, float]:
    """The bytes of a streamed answer, whether the connection broke before its end, and how long it took."""
    received = b""
    start = time.monotonic()
    async with emu.session.post(emu.run_url(LLAMA), json={"prompt": prompt, "stream": True},
                                headers=HEADERS) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        try:
            async for chunk in resp.content.iter_any():
                received += chunk
        except aiohttp.ClientPayloadError:
            return received, True, time.monotonic() - start
    return received, False, time.monotonic() - start


@pytest.mark.parametrize(("prompt", "reason"),
                         [("cut-stream", "connection closed"), ("stall-stream", "timeout")])
async def test_a_broken_stream_is_recorded_cut_and_replays_broken(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path, prompt: str, reason: str
) -> None:
    upstream.slow_seconds = 5.0  # the stalled stream stays silent longer than the recorder waits
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record", upstream_timeout=0.4))
    received, broke, _ = await read_stream(recorder, prompt)
    whole_events = b"".join(f"data: {e}\n\n".encode() for e in SSE_EVENTS[:BROKEN_AFTER])
    assert broke and received == whole_events  # the client saw the same break, live
    [interaction] = load_cassette(cassette_file(tmp_path).read_bytes()).interactions
    response = interaction.response
    assert [e.data for e in response.events or []] == SSE_EVENTS[:BROKEN_AFTER]
    assert response.cut is not None and response.cut.reason == reason
    assert response.cut.offset_ms >= (response.events or [])[-1].offset_ms
    log = await recorder.session.get(f"{recorder.base}/__emulator__/requests")
    [entry] = (await log.json())["requests"]
    assert entry["cut"] and entry["status"] == 200
    # Offline: the same events, then the same abrupt end; with real timing, at the recorded moment.
    for timing in ("fast", "real"):
        replayer = await make_emulator(**real_settings(None, tmp_path, "replay", replay_timing=timing))
        replayed, broke, took = await read_stream(replayer, prompt)
        assert broke and replayed == received
        if timing == "real":
            assert took >= response.cut.offset_ms / 1000 * 0.9
    assert len(upstream.requests) == 1


async def test_replay_timing_real_and_fast(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    upstream.event_gap = 0.03
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": "Hi", "stream": True})
    durations = {}
    for timing in ("fast", "real"):
        emu = await make_emulator(**real_settings(upstream, tmp_path, "replay", replay_timing=timing))
        start = time.monotonic()
        await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "Hi", "stream": True})
        durations[timing] = time.monotonic() - start
    assert durations["real"] >= 0.25 > durations["fast"]


async def test_upstream_down_is_502(make_emulator: ServerFactory, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    emu = await make_emulator(**{**real_settings(None, tmp_path, "passthrough"), "upstream": dead})
    answer = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "Hi"})
    assert answer.status == 502
    error = answer.json()["errors"][0]
    assert (
        error["code"] == 7009
        and "Upstream service unavailable" in error["message"]
        and dead in error["message"]
    )


async def test_upstream_slow_is_504(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    emu = await make_emulator(**real_settings(upstream, tmp_path, "record", upstream_timeout=0.3))
    start = time.monotonic()
    answer = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "slow"})
    assert answer.status == 504 and time.monotonic() - start < 1.5
    error = answer.json()["errors"][0]
    assert error["code"] == 3007 and "within 0.3 s" in error["message"]
    assert not cassette_file(tmp_path).exists()  # failures are not recorded


async def test_client_credentials_are_forwarded_without_configured_token(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    settings = {
        **real_settings(upstream, tmp_path, "passthrough"),
        "upstream_token": None,
        "upstream_account_id": None,
    }
    emu = await make_emulator(**settings)
    emu.account = REAL_ACCOUNT
    answer = await send(
        emu,
        "POST",
        emu.run_url(LLAMA),
        json={"prompt": "Hi"},
        headers={"Authorization": f"Bearer {REAL_TOKEN}"},
    )
    assert answer.status == 200
    rejected = await send(emu, "POST", emu.run_url(LLAMA), json={"prompt": "Hi"})
    assert rejected.status == 401 and rejected.json()["errors"][0]["code"] == 10000  # relayed as is


async def test_record_survives_kill_9_mid_burst(upstream: FakeUpstream, tmp_path: Path) -> None:
    cassettes = tmp_path / "cassettes"
    completed: list[str] = []
    for round_ in range(2):
        port = free_port()
        proc = start_recording_server(port, upstream, cassettes, "burst", tmp_path / f"data{round_}")
        url = f"http://127.0.0.1:{port}/client/v4/accounts/{ACCOUNT}/ai/run/{LLAMA}"
        calls = await burst_then_kill_9(proc, url, HEADERS, [f"r{round_}-{i}" for i in range(60)],
                                        kill_after=10)
        completed += [prompt for prompt, _ in calls]
        cassette = load_cassette(cassettes.joinpath("burst.json").read_bytes())  # always parses
        stored = [i.request.body.json_["prompt"] for i in cassette.interactions]
        assert len(stored) == len(set(stored))
        # Every answer a client received was written before it was sent.
        assert set(completed) <= set(stored), set(completed) - set(stored)
        assert len(stored) < 60 * (round_ + 1)  # the kill did land mid-burst


@pytest.mark.slow
async def test_passthrough_overhead(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path
) -> None:
    # In-memory ledger: an on-disk ledger fsyncs every charge (~7 ms): the ledger's cost, not relaying's.
    emu = await make_emulator(**real_settings(upstream, tmp_path, "passthrough", ledger_path=":memory:"))
    direct_url = f"{upstream.base}/client/v4/accounts/{REAL_ACCOUNT}/ai/run/{LLAMA}"
    real = {"Authorization": f"Bearer {REAL_TOKEN}"}

    async def timed(url: str, headers: dict[str, str]) -> float:
        start = time.perf_counter()
        async with emu.session.post(url, json={"prompt": "Hi"}, headers=headers) as resp:
            await resp.read()
            assert resp.status == 200
        return time.perf_counter() - start

    for _ in range(50):
        await timed(direct_url, real)
        await timed(emu.run_url(LLAMA), HEADERS)
    direct, proxied = [], []
    for _ in range(400):
        direct.append(await timed(direct_url, real))
        proxied.append(await timed(emu.run_url(LLAMA), HEADERS))
    added_ms = (statistics.median(proxied) - statistics.median(direct)) * 1000
    print(
        f"\npassthrough p50 direct {statistics.median(direct) * 1000:.3f} ms, via emulator "
        f"{statistics.median(proxied) * 1000:.3f} ms, added {added_ms:.3f} ms"
    )
    assert added_ms < 3  # measured ≈ 0.8 ms; the margin absorbs CI noise


async def test_a_replayed_answer_is_kept_rendered_until_the_cassette_changes(
    upstream: FakeUpstream, make_emulator: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.backends import cassette as cassette_backend

    monkeypatch.setattr(cassette_backend, "FILE_CHECK_SECONDS", 0.0)
    recorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    recorded = await send(recorder, "POST", recorder.run_url(LLAMA), json={"prompt": "kept"})
    replayer = await make_emulator(**real_settings(upstream, tmp_path, "replay"))
    url = replayer.run_url(LLAMA)
    replies = [await send(replayer, "POST", url, json={"prompt": "kept"}) for _ in range(3)]
    assert all(r.body == recorded.body and r.headers == replies[0].headers for r in replies)
    # The first call loads the cassette (on a thread), the second is kept, the third reuses it.
    assert replayer.state.answers.hits == 1
    # The recorded headers (request id included) are sent as recorded, cached or not.
    assert replies[0].headers.get("cf-ai-req-id") == recorded.headers.get("cf-ai-req-id")
    assert replayer.state.ledger.usage().requests == 3
    # Re-recorded: the file changed, so the kept answer is not served again.
    rerecorder = await make_emulator(**real_settings(upstream, tmp_path, "record"))
    fresh = await send(rerecorder, "POST", rerecorder.run_url(LLAMA), json={"prompt": "kept"})
    assert fresh.body != recorded.body
    again = await send(replayer, "POST", replayer.run_url(LLAMA), json={"prompt": "kept"})
    assert again.body == fresh.body
