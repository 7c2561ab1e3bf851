"""A real local aiohttp server answering like api.cloudflare.com (bodies from fixtures/observations/)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REAL_TOKEN = "cfut_REALtoken_9f8e7d6c5b4a39281706aaaa"
REAL_ACCOUNT = "fedcba9876543210fedcba9876543210"
LLAMA = "@cf/meta/llama-3.1-8b-instruct"
SDXL = "@cf/stabilityai/stable-diffusion-xl-base-1.0"
WHISPER = "@cf/openai/whisper"
NEURONS = "1.98"

# run-stream-sse-secton-proxy-2025-06.sse, event for event.
SSE_EVENTS = [
    '{"response":"Hello","p":"abcdefghijklmnopqrstuvw"}',
    '{"response":"!","p":"abcdefghijklmnopqrstuvw"}',
    '{"response":" How","p":"abcdefgh"}',
    '{"response":" can","p":"abcdefghijklmnopqrstuvwxyz0123456789abcdefgh"}',
    '{"response":" I","p":"abcdefghijklmnopqrstuv"}',
    '{"response":" assist","p":"abcdefghij"}',
    '{"response":" you","p":"abcdefghijklmnopqrstuvwxyz012345"}',
    '{"response":" today","p":"abcdefghijklmnopqrstuvwxyz0"}',
    '{"response":"?","p":"abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"}',
    '{"response":""}',
    '{"response":"","usage":{"prompt_tokens":755,"completion_tokens":10,"total_tokens":765}}',
    "[DONE]",
]

# Prompts whose stream breaks off after BROKEN_AFTER events (tests of recorded broken streams).
BROKEN_STREAMS = ("cut-stream", "stall-stream")
BROKEN_AFTER = 4

# run-whisper-rest-envelope-2024-03.json (shortened), sent pretty-printed so byte-exact replay is tested.
WHISPER_RESULT = {
    "result": {
        "text": "Hello there, I'm making a recording.",
        "word_count": 6,
        "words": [
            {"word": "Hello", "start": 0.2800000011920929, "end": 0.7400000095367432},
            {"word": "there,", "start": 0.7400000095367432, "end": 1.2400000095367432},
        ],
    },
    "success": True,
    "errors": [],
    "messages": [],
}
ERR_5006 = (
    '{"errors":[{"message":"AiError: Bad input: Additional or unevaluated properties \'/width, /height\' '
    'at \'/\' not allowed","code":5006}],"success":false}'
)
ERR_4006 = (
    '{"errors":[{"message":"AiError: AiError: you have used up your daily free allocation of 10,000 '
    "neurons, please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage. "
    '(a0b1c2d3-0000-4000-8000-000000000000)","code":4006}],"success":false,"result":{},"messages":[]}'
)
ERR_10000 = (
    '{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[]}'
)


# Prompts answered with ~20 MB of JSON (a large embeddings result, many short strings; compact, so
# the cassette keeps them as parsed JSON), or the strings pretty-printed (kept as text).
LARGE_ANSWERS = ("large-answer-vectors", "large-answer-strings", "large-answer-pretty")


@functools.cache
def large_answer(prompt: str) -> bytes:
    """The ~20 MB answer to one of LARGE_ANSWERS (built once per process)."""
    if prompt == "large-answer-vectors":
        # Floats that print alike in json and orjson (no exponent): 3,250 rows of 1,024.
        rows = [[(1 + (r * 1024 + c) * 7919 % 997) / 1000 for c in range(1024)] for r in range(3250)]
        result: Any = {"shape": [len(rows), 1024], "data": rows, "pooling": "cls"}
    else:
        result = {"response": "many words", "notes": [f"note {i:07d} " + "some words here " * 3
                                                      for i in range(300_000)]}
    envelope = {"result": result, "success": True, "errors": [], "messages": []}
    if prompt == "large-answer-pretty":
        return json.dumps(envelope, indent=1).encode()
    return json.dumps(envelope, separators=(",", ":")).encode()


def pretty_answer_hiding(token: str) -> bytes:
    """~2 MB of indented JSON (a recording keeps it as text) quoting `token` with its first letter
    JSON-escaped, and holding a string that is exactly "t" (the README's short token, as a whole
    value)."""
    result = {"notes": [f"note {i:06d} some words here" for i in range(60_000)], "echo": "ECHO", "short": "t"}
    text = json.dumps({"result": result, "success": True, "errors": [], "messages": []}, indent=1)
    return text.replace('"ECHO"', '"you sent ' + f"\\u{ord(token[0]):04x}" + token[1:] + '"').encode()


# A prompt answered with an event stream of one event of LARGE_EVENT_MIB MiB (then `[DONE]`).
LARGE_EVENT_STREAM = "large-event-stream"
LARGE_EVENT_MIB = 20


def large_event_stream() -> bytes:
    return b'data: {"response":"' + b"z" * (LARGE_EVENT_MIB << 20) + b'"}\n\ndata: [DONE]\n\n'


# A prompt answered with 20 MB of image bytes (not UTF-8: the cassette keeps them as base64).
LARGE_BINARY_ANSWER = "large-answer-binary"


@functools.cache
def large_binary_answer() -> bytes:
    """The 20 MB answer to LARGE_BINARY_ANSWER: a PNG signature, then seeded random bytes."""
    return b"\x89PNG\r\n\x1a\n" + random.Random(20).randbytes(20_000_000 - 8)


# A prompt answered with ~20 MB of prose as `text/plain; charset=utf-8` (the cassette keeps it as
# text): a comma every few words, and now and then accented, CJK and emoji characters. Made one
# Python string, the emoji would make it 4 bytes a character, 77 MB that one step fills while holding
# the GIL (40-130 ms); the server holds such a text as its UTF-8 bytes (docs/reliability.md, "A large
# text/plain answer").
LARGE_TEXT_ANSWER = "large-answer-plain-text"


@functools.cache
def large_text_answer() -> bytes:
    """The ~20 MB answer to LARGE_TEXT_ANSWER."""
    lines = [f"word {i:07d}, some words here, more words;\n" if i % 1000 else
             f"word {i:07d}, café au lait, 日本の言葉, a star \U0001F31F here;\n" for i in range(450_000)]
    return "".join(lines).encode()


# A prompt answered with a gzip bomb: 96 MB of JSON packed into ~100 KB, sent with
# `Content-Encoding: gzip`, past the emulator's 64 MiB cap on upstream answers once unpacked.
GZIP_BOMB = "gzip-bomb"


@functools.cache
def gzip_bomb() -> bytes:
    """The packed answer to GZIP_BOMB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = b"0" * (1 << 20)
    parts = [packer.compress(b'{"result":"')]
    parts += [packer.compress(chunk) for _ in range(96)]
    parts += [packer.compress(b'"}'), packer.flush()]
    return b"".join(parts)


def tiny_png(width: int = 4, height: int = 4) -> bytes:
    """A valid RGB PNG made by hand (independent of the emulator's image fakes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 50 % 256, y * 50 % 256, 200))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


PNG = tiny_png()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeUpstream:
    """The stand-in for Cloudflare. `requests` lists everything it received, in order."""

    event_gap: float = 0.01  # seconds between SSE events
    slow_seconds: float = 2.0  # how long a prompt of "slow" makes it wait before answering
    requests: list[Seen] = field(default_factory=list)
    hold_last_event: asyncio.Event | None = None  # when set, the stream waits for it before its last events
    counter: int = 0
    runner: web.AppRunner | None = None
    base: str = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/client/v4/accounts/{account}/ai/run/{model:.+}", self.run)
        app.router.add_get("/client/v4/accounts/{account}/ai/run/{model:.+}", self.realtime)
        app.router.add_post("/v1/{account}/{gateway}/workers-ai/{model:.+}", self.run)
        app.router.add_post("/client/v4/accounts/{account}/ai/v1/chat/completions", self.chat)
        app.router.add_get("/client/v4/accounts/{account}/ai/models/search", self.models_search)
        app.router.add_get("/client/v4/accounts/{account}/ai/finetunes", self.finetunes)
        app.router.add_post("/client/v4/accounts/{account}/ai/tomarkdown", self.tomarkdown)
        return app

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.base

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # Helpers -----------------------------------------------------------------------------------
    async def _seen(self, request: web.Request) -> web.Response | None:
        """Log the request; answer like Cloudflare's edge when the token or account is not the real one."""
        body = await request.read()
        self.requests.append(
            Seen(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        if request.headers.get("Authorization") != f"Bearer {REAL_TOKEN}":
            return web.Response(status=401, body=ERR_10000, content_type="application/json")
        if request.match_info["account"] != REAL_ACCOUNT:
            return web.Response(
                status=404,
                content_type="application/json",
                body=json.dumps(
                    {
                        "result": None,
                        "success": False,
                        "errors": [{"code": 7003, "message": "Could not route"}],
                        "messages": [],
                    }
                ),
            )
        return None

    @staticmethod
    def _ids(neurons: str | None = NEURONS) -> dict[str, str]:
        headers = {
            "cf-ai-req-id": str(uuid.uuid4()),
            "cf-ray": "8f0e1d2c3b4a5968-AMS",
            "server": "cloudflare",
        }
        if neurons is not None:
            headers["cf-ai-neurons"] = neurons
        return headers

    # Routes ------------------------------------------------------------------------------------
    async def run(self, request: web.Request) -> web.StreamResponse:
        refused = await self._seen(request)
        if refused is not None:
            return refused
        model = request.match_info["model"]
        raw = self.requests[-1].body
        if request.path.startswith("/v1/"):  # the gateway adds its own ids (gateway-errors-2021-….json)
            gateway = {
                "cf-aig-log-id": "01M3YRNVFEX2F0PM3CE8T8F2FW",
                "cf-aig-event-id": str(uuid.uuid4()),
                "cf-aig-request-id": str(uuid.uuid4()),
                "cf-aig-step": "0",
            }
            envelope = {
                "result": {"response": "Hi from the gateway"},
                "success": True,
                "errors": [],
                "messages": [],
            }
            return web.Response(
                body=json.dumps(envelope), content_type="application/json", headers={**self._ids(), **gateway}
            )
        if model == SDXL:
            return web.Response(body=PNG, content_type="image/png", headers=self._ids("0.00"))
        if model == WHISPER:
            assert raw[:4] == b"RIFF", "whisper gets the raw audio bytes"
            return web.Response(
                body=json.dumps(WHISPER_RESULT, indent=1),
                content_type="application/json",
                headers=self._ids("0.52"),
            )
        body: dict[str, Any] = json.loads(raw)
        prompt = body.get("prompt")
        if prompt == "trigger-5006":
            return web.Response(
                status=400, body=ERR_5006, content_type="application/json", headers=self._ids(None)
            )
        if prompt == "trigger-4006":
            return web.Response(
                status=429, body=ERR_4006, content_type="application/json", headers=self._ids(None)
            )
        if prompt == "echo-token-escaped":
            # An upstream that quotes the credential it received, its first letter JSON-escaped.
            token = request.headers["Authorization"].removeprefix("Bearer ")
            escaped = f"\\u{ord(token[0]):04x}" + token[1:]
            body_text = ('{"result":{"response":"you sent ' + escaped
                         + '"},"success":true,"errors":[],"messages":[]}')
            return web.Response(body=body_text, content_type="application/json", headers=self._ids())
        if prompt == "pretty-answer-hiding-secrets":
            token = request.headers["Authorization"].removeprefix("Bearer ")
            return web.Response(body=pretty_answer_hiding(token), content_type="application/json",
                                headers=self._ids())
        if prompt == LARGE_TEXT_ANSWER:
            return web.Response(body=large_text_answer(), content_type="text/plain", charset="utf-8",
                                headers=self._ids())
        if prompt == LARGE_BINARY_ANSWER:
            return web.Response(body=large_binary_answer(), content_type="image/png", headers=self._ids())
        if prompt == GZIP_BOMB:
            return web.Response(body=gzip_bomb(), content_type="application/json",
                                headers={"Content-Encoding": "gzip", **self._ids()})
        if prompt in LARGE_ANSWERS:
            return web.Response(body=large_answer(str(prompt)), content_type="application/json",
                                headers=self._ids())
        if prompt == "slow":
            await asyncio.sleep(self.slow_seconds)
        if prompt == LARGE_EVENT_STREAM:
            return await self._large_event_stream(request)
        if body.get("stream") is True and prompt in BROKEN_STREAMS:
            return await self._broken_stream(request, str(prompt))
        if body.get("stream") is True:
            return await self._stream(request)
        self.counter += 1
        result = {
            "response": f"Hello! How can I assist you today? (answer {self.counter})",
            "usage": {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22},
        }
        envelope = {"result": result, "success": True, "errors": [], "messages": []}
        return web.Response(
            body=json.dumps(envelope, separators=(",", ":")),
            content_type="application/json",
            headers=self._ids(),
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._ids()})
        await response.prepare(request)
        for i, data in enumerate(SSE_EVENTS):
            if self.hold_last_event is not None and i == len(SSE_EVENTS) - 2:
                await self.hold_last_event.wait()
            await response.write(f"data: {data}\n\n".encode())
            await asyncio.sleep(self.event_gap)
        await response.write_eof()
        return response

    async def _large_event_stream(self, request: web.Request) -> web.StreamResponse:
        """An event stream of one ~20 MB event (LARGE_EVENT_MIB MiB of text in its one JSON string),
        written a MiB at a time, then `[DONE]`."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._ids()})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # a server refusing it past its cap hangs up
            await response.write(b'data: {"response":"')
            for _ in range(LARGE_EVENT_MIB):
                await response.write(b"z" * (1 << 20))
            await response.write(b'"}\n\ndata: [DONE]\n\n')
            await response.write_eof()
        return response

    async def _broken_stream(self, request: web.Request, how: str) -> web.StreamResponse:
        """The first BROKEN_AFTER events, then the connection is dropped (`cut-stream`) or goes
        silent (`stall-stream`, until the reader's timeout gives up): never the stream's end."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._ids()})
        await response.prepare(request)
        for data in SSE_EVENTS[:BROKEN_AFTER]:
            await response.write(f"data: {data}\n\n".encode())
            await asyncio.sleep(self.event_gap)
        await response.write(b'data: {"response":" half an ev')  # an event that never completes
        if how == "stall-stream":
            await asyncio.sleep(self.slow_seconds)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def realtime(self, request: web.Request) -> web.StreamResponse:
        """A realtime model's WebSocket, in the shape of Deepgram's protocols: each binary message is
        answered with a `Results` counting its bytes; `Speak` texts are spoken (their UTF-8 bytes,
        reversed, as one binary message) on `Flush`, then `Flushed`; `CloseStream` or `Close` gets
        a `Metadata` and a close with code 1000; `{"type": "Break"}` drops the connection."""
        refused = await self._seen(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(protocols=("token",))
        await ws.prepare(request)
        received, spoken = 0, ""
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                received += 1
                await ws.send_str(json.dumps({"type": "Results", "n": received, "bytes": len(message.data)}))
                continue
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            kind = json.loads(message.data).get("type")
            if kind == "Speak":
                spoken += json.loads(message.data)["text"]
            elif kind == "Flush":
                await ws.send_bytes(spoken.encode()[::-1])
                await ws.send_str(json.dumps({"type": "Flushed", "sequence_id": 0}))
                spoken = ""
            elif kind == "Break":
                assert request.transport is not None
                request.transport.abort()
                return ws
            elif kind in ("CloseStream", "Close"):
                await ws.send_str(json.dumps({"type": "Metadata", "messages": received,
                                              "query": dict(request.query)}))
                await ws.close(code=1000)
                break
        return ws

    async def chat(self, request: web.Request) -> web.StreamResponse:
        refused = await self._seen(request)
        if refused is not None:
            return refused
        # v1-chat-nonstream-llama3-8b-higress-2024-07.json
        completion = {
            "id": "id-1720367327545",
            "object": "chat.completion",
            "created": 1720367327,
            "model": "@cf/meta/llama-3-8b-instruct",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "I am a helpful bot."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
        return web.Response(body=json.dumps(completion), content_type="application/json", headers=self._ids())

    async def models_search(self, request: web.Request) -> web.StreamResponse:
        refused = await self._seen(request)
        if refused is not None:
            return refused
        models = [
            {
                "id": "1d3e0a4f-0000-4000-8000-000000000001",
                "source": 1,
                "name": LLAMA,
                "description": "Real catalog record",
                "task": {"id": "c329a1f9", "name": "Text Generation"},
            }
        ]
        envelope = {
            "result": models,
            "success": True,
            "errors": [],
            "messages": [],
            "result_info": {"page": 1, "per_page": 50, "count": 1, "total_count": 1},
        }
        return web.Response(
            body=json.dumps(envelope),
            content_type="application/json",
            headers={"cf-ray": "8f0e1d2c3b4a5968-AMS"},
        )


    async def finetunes(self, request: web.Request) -> web.StreamResponse:
        """The account's fine-tunes as the real API would list them (one, made upstream)."""
        refused = await self._seen(request)
        if refused is not None:
            return refused
        row = {"id": "0f0e0d0c-0000-4000-8000-00000000abcd", "name": "real-lora", "description": "",
               "model": "@cf/mistral/mistral-7b-instruct-v0.2-lora", "created_at": "2026-01-02T03:04:05.000Z",
               "modified_at": "2026-01-02T03:04:05.000Z"}
        return web.json_response({"result": [row], "success": True, "errors": [], "messages": []})

    async def tomarkdown(self, request: web.Request) -> web.StreamResponse:
        """One markdown result per uploaded part, named after it."""
        refused = await self._seen(request)
        if refused is not None:
            return refused
        names = re.findall(rb'filename="([^"]*)"', self.requests[-1].body)  # `_seen` consumed the body
        results = [{"id": "upstream", "name": name.decode(), "mimeType": "text/html", "format": "markdown",
                    "tokens": 3, "data": "# converted upstream\n"} for name in names]
        return web.json_response({"result": results, "success": True, "errors": [], "messages": []})


def start_recording_server(
    port: int, upstream: FakeUpstream, cassette_dir: Path, cassette: str, data_dir: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """`serve --mode replay-or-record` as a real subprocess in front of `upstream`, with the real
    credentials in its environment (for tests that kill it with SIGKILL)."""
    env = {**os.environ, "CLOUDFLARE_API_TOKEN": REAL_TOKEN, "CLOUDFLARE_ACCOUNT_ID": REAL_ACCOUNT}
    cmd = [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--mode", "replay-or-record",
           "--upstream", upstream.base, "--cassette-dir", str(cassette_dir), "--cassette", cassette,
           "--data-dir", str(data_dir), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


async def burst_then_kill_9(proc: subprocess.Popen[bytes], url: str, headers: dict[str, str],
                            prompts: list[str], *, kill_after: int) -> list[tuple[str, float]]:
    """Send every prompt at once to the server `proc` runs, `kill -9` it once `kill_after` answers have
    arrived (or after ~10 s), and return each answered call's prompt and `cf-ai-neurons`."""
    from tests.serving import wait_ready

    answered: list[tuple[str, float]] = []

    async def one(session: aiohttp.ClientSession, prompt: str) -> None:
        async with session.post(url, json={"prompt": prompt}, headers=headers) as resp:
            await resp.read()
            if resp.status == 200:
                answered.append((prompt, float(resp.headers.get("cf-ai-neurons", "0"))))

    try:
        await asyncio.to_thread(wait_ready, url.split("/client/")[0])
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(one(session, prompt)) for prompt in prompts]
            for _ in range(5000):  # bounded: a server that stopped answering must not hang the test
                if len(answered) >= kill_after:
                    break
                await asyncio.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return answered


@contextlib.contextmanager
def upstream_process() -> Iterator[str]:
    """A FakeUpstream in a process of its own; yields its base URL. A test that times the event loop
    of a server from its own process needs it: the fake parses each request body with `json.loads`,
    which holds the GIL of the process it runs in (~0.5-1 s for 5 million numbers)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_upstream"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(30)


async def _serve_forever() -> None:
    upstream = FakeUpstream()
    print(await upstream.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve_forever())
