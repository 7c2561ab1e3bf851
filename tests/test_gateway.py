"""AI Gateway URL forms served by the same server: provider paths, /compat, 2008 errors, cf-aig-* headers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from emulator.accounting.ledger import FixedClock
from tests.conftest import ACCOUNT, AUTH, TOKEN, Emulator, parse_sse

LLAMA31 = "@cf/meta/llama-3.1-8b-instruct"
HELLO = [
    {"role": "system", "content": "You are concise."},
    {"role": "user", "content": "Reply exactly with: Hello!"},
]
AIG_HEADERS = ("cf-aig-log-id", "cf-aig-event-id", "cf-aig-request-id", "cf-aig-step")


def gw(emulator: Emulator, tail: str) -> str:
    return f"{emulator.base}/v1/{ACCOUNT}/my-gateway/{tail}"


async def post(
    url: str, emulator: Emulator, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with emulator.session.post(url, json=body, headers=AUTH if headers is None else headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def assert_gateway_headers(headers: dict[str, str]) -> None:
    for name in AIG_HEADERS:
        assert headers.get(name), name
    assert len(headers["cf-aig-log-id"]) == 26 and headers["cf-aig-step"] == "0"


@pytest.mark.parametrize("tail", [f"workers-ai/{LLAMA31}", f"workers-ai/run/{LLAMA31}"])
async def test_native_run_via_gateway(emulator: Emulator, tail: str) -> None:
    body = {"messages": HELLO, "max_tokens": 20}
    status, raw, headers = await post(gw(emulator, tail), emulator, body)
    assert status == 200
    assert_gateway_headers(headers)
    direct = await (await emulator.run(LLAMA31, body)).json()
    assert orjson.loads(raw) == direct
    # Direct answers carry no gateway headers.
    assert "cf-aig-log-id" not in (await emulator.run(LLAMA31, body)).headers


async def test_provider_openai_paths_via_gateway(emulator: Emulator) -> None:
    emulator.state.clock = FixedClock()  # both answers get the same per-call id and time
    body = {"model": LLAMA31, "messages": HELLO, "max_tokens": 20}
    status, raw, headers = await post(gw(emulator, "workers-ai/v1/chat/completions"), emulator, body)
    assert status == 200
    assert_gateway_headers(headers)
    async with emulator.session.post(f"{emulator.ai}/v1/chat/completions", json=body, headers=AUTH) as resp:
        assert orjson.loads(raw) == await resp.json()
    status, raw, headers = await post(
        gw(emulator, "workers-ai/v1/embeddings"),
        emulator,
        {"model": "@cf/baai/bge-small-en-v1.5", "input": "hi"},
    )
    assert status == 200 and len(orjson.loads(raw)["data"][0]["embedding"]) == 384
    assert_gateway_headers(headers)


async def test_compat_chat_stream_like_the_recording(emulator: Emulator) -> None:
    emulator.state.clock = FixedClock()  # both answers get the same per-call id and time
    # The body of fixtures/observations/gateway-compat-stream-llama31-8b.cassette.json.
    body = {
        "model": f"workers-ai/{LLAMA31}",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 40,
        "temperature": 0,
    }
    status, raw, headers = await post(
        gw(emulator, "compat/chat/completions"),
        emulator,
        body,
        headers={"cf-aig-authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert_gateway_headers(headers)
    data = parse_sse(raw.decode())
    assert data[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in data[:-1]]
    assert {c["model"] for c in chunks} == {LLAMA31}
    assert chunks[-2]["usage"]["total_tokens"] > 0 and chunks[-1]["usage"]["total_tokens"] == 0
    direct = {**body, "model": LLAMA31}
    async with emulator.session.post(f"{emulator.ai}/v1/chat/completions", json=direct, headers=AUTH) as resp:
        assert await resp.read() == raw  # same frames as the direct endpoint


async def test_compat_non_stream_and_embeddings(emulator: Emulator) -> None:
    status, raw, _ = await post(
        gw(emulator, "compat/chat/completions"),
        emulator,
        {"model": f"workers-ai/{LLAMA31}", "messages": HELLO},
    )
    body = orjson.loads(raw)
    assert status == 200 and body["model"] == LLAMA31 and body["object"] == "chat.completion"
    status, raw, headers = await post(
        gw(emulator, "compat/embeddings"),
        emulator,
        {"model": "workers-ai/@cf/baai/bge-m3", "input": "hello world"},
    )
    assert status == 200, raw
    body = orjson.loads(raw)
    assert body["model"] == "@cf/baai/bge-m3" and len(body["data"][0]["embedding"]) == 1024
    assert_gateway_headers(headers)


@pytest.mark.parametrize("model", ["openai/gpt-4o", LLAMA31, "workers-ai/", "anthropic/claude-haiku-4-5"])
async def test_compat_invalid_provider(emulator: Emulator, model: str) -> None:
    for tail in ("compat/chat/completions", "compat/embeddings"):
        status, raw, headers = await post(
            gw(emulator, tail), emulator, {"model": model, "messages": HELLO, "input": "x"}
        )
        assert status == 400
        # Byte-exact body of fixtures/observations/err-aigateway-2005-2008-compat.json.
        assert raw == (
            b'{"success":false,"result":[],"messages":[],"error":[{"code":2008,"message":"Invalid '
            b'provider"}],"name":"AiGatewayError","httpCode":400,"internalCode":2008,"message":"Invalid '
            b'provider","description":"Invalid provider"}'
        )
        assert_gateway_headers(headers)


async def test_gateway_errors_carry_gateway_headers(emulator: Emulator) -> None:
    status, raw, headers = await post(
        gw(emulator, "workers-ai/v1/chat/completions"),
        emulator,
        {"model": "@cf/nope/none", "messages": HELLO},
    )
    assert status == 400 and orjson.loads(raw)["errors"][0]["code"] == 5007
    assert_gateway_headers(headers)
    status, raw, headers = await post(
        gw(emulator, f"workers-ai/{LLAMA31}"), emulator, {"messages": HELLO}, headers={}
    )
    assert status in (401, 403)
    assert_gateway_headers(headers)


async def test_openai_sdk_through_the_gateway(emulator: Emulator) -> None:
    from openai import OpenAI

    def session() -> tuple[str, str, int]:
        provider = OpenAI(base_url=gw(emulator, "workers-ai/v1"), api_key=TOKEN, max_retries=0)
        compat = OpenAI(base_url=gw(emulator, "compat"), api_key=TOKEN, max_retries=0)
        a = provider.chat.completions.create(model=LLAMA31, messages=HELLO)  # type: ignore[arg-type]
        b = compat.chat.completions.create(model=f"workers-ai/{LLAMA31}", messages=HELLO)  # type: ignore[arg-type]
        e = compat.embeddings.create(model="workers-ai/@cf/baai/bge-small-en-v1.5", input="hi")
        return (
            a.choices[0].message.content or "",
            b.choices[0].message.content or "",
            len(e.data[0].embedding),
        )

    via_provider, via_compat, dims = await asyncio.to_thread(session)
    assert via_provider and via_provider == via_compat and dims == 384
