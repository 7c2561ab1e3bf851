"""Fine-tunes, LoRA, toMarkdown and the realtime WebSocket models: shapes and documented errors.

Only reads and refusals are sent (nothing here creates a fine-tune), so the checks are safe against the
real API; toMarkdown converts documents, which Cloudflare does not bill.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from typing import Any

import aiohttp
import httpx
import pytest

from contract import checks
from contract.targets import Target

pytestmark = pytest.mark.live

LORA_MODEL = "@cf/mistral/mistral-7b-instruct-v0.2-lora"
FINETUNE_KEYS = {"id", "name", "model", "created_at", "modified_at"}


def test_finetunes_list_and_public(http: httpx.Client, target: Target) -> None:
    mine = checks.envelope(http.get(f"{target.ai}/finetunes", headers=target.auth()))
    assert isinstance(mine, list) and all(set(row) >= FINETUNE_KEYS for row in mine)
    public = checks.envelope(http.get(f"{target.ai}/finetunes/public", headers=target.auth()))
    assert public
    assert all(set(row) >= FINETUNE_KEYS and row["name"].startswith("cf-public-") for row in public)


def test_lora_on_a_model_without_lora_support(http: httpx.Client, target: Target) -> None:
    model = "@cf/meta/llama-3.1-8b-instruct"
    r = http.post(target.run_url(model), headers=target.auth(), json={"prompt": "hi", "lora": "any-adapter"})
    body = checks.cf_error(r, 405, 5005, f"The model {model} does not support LoRa inference")
    checks.model_error_keys(body)


def test_lora_unknown_finetune(http: httpx.Client, target: Target) -> None:
    r = http.post(target.run_url(LORA_MODEL), headers=target.auth(),
                  json={"prompt": "hi", "lora": "contract-no-such-finetune"})
    assert r.status_code >= 400
    body = checks.cf_error(r, r.status_code, 3037)
    message = body["errors"][0]["message"]
    assert message.startswith("AiError: AiError: Finetune contract-no-such-finetune not found")


def test_tomarkdown_supported_and_transform(http: httpx.Client, target: Target) -> None:
    supported = checks.envelope(http.get(f"{target.ai}/tomarkdown/supported", headers=target.auth()))
    assert all(set(row) == {"extension", "mimeType"} for row in supported)
    assert {".pdf", ".html", ".csv", ".xlsx"} <= {row["extension"] for row in supported}
    files = [("files", ("page.html", b"<h1>Contract</h1><p>checked</p>", "text/html")),
             ("files", ("t.csv", b"a,b\n1,2\n", "text/csv"))]
    results = checks.envelope(http.post(f"{target.ai}/tomarkdown", headers=target.auth(), files=files))
    assert [r["name"] for r in results] == ["page.html", "t.csv"]
    for result in results:
        assert result["format"] == "markdown" and {"name", "mimeType", "tokens", "data"} <= set(result)
        assert float(result["tokens"]) >= 0
    assert "Contract" in results[0]["data"] and results[0]["mimeType"] == "text/html"


def _tone(seconds: float, rate: int = 16000) -> bytes:
    count = round(seconds * rate)
    return struct.pack(f"<{count}h",
                       *(int(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(count)))


async def _session(target: Target, model: str, query: str, sends: list[bytes | dict[str, Any]]) -> list[Any]:
    url = target.run_url(model).replace("https://", "wss://").replace("http://", "ws://") + query
    received: list[Any] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=target.auth()) as ws:
        for item in sends:
            if isinstance(item, dict):
                await ws.send_str(json.dumps(item))
            else:
                await ws.send_bytes(item)
        async with asyncio.timeout(30):
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(message.data))
                elif message.type is aiohttp.WSMsgType.BINARY:
                    received.append(message.data)
                if len(received) > 500:
                    break
    return received


def test_flux_websocket_messages_match_the_catalog(target: Target) -> None:
    got = asyncio.run(_session(target, "@cf/deepgram/flux", "?encoding=linear16&sample_rate=16000",
                               [_tone(1.5), bytes(48000), {"type": "CloseStream"}]))
    turns = [m for m in got if isinstance(m, dict) and "event" in m]
    assert turns, got[:3]
    for message in turns:
        checks.valid_output("@cf/deepgram/flux", message)
    assert {"StartOfTurn", "EndOfTurn"} <= {m["event"] for m in turns}


def test_aura_websocket_speaks(target: Target) -> None:
    got = asyncio.run(_session(target, "@cf/deepgram/aura-1", "",
                               [{"type": "Speak", "text": "Hello from the contract suite."},
                                {"type": "Flush"}, {"type": "Close"}]))
    assert sum(len(m) for m in got if isinstance(m, bytes)) > 0
