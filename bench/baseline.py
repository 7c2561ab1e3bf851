"""Bare aiohttp servers for the benchmark: the fixed-JSON baseline and a stand-in upstream."""

from __future__ import annotations

import argparse
import asyncio
import signal
import zlib

import numpy as np
import orjson
from aiohttp import web

# What the baseline answers to every request: about the size of a short mock text-generation envelope.
BASELINE_BODY = (b'{"result":{"response":"Hello from the bare aiohttp baseline, a fixed answer.",'
                 b'"usage":{"prompt_tokens":4,"completion_tokens":12,"total_tokens":16}},'
                 b'"success":true,"errors":[],"messages":[]}')
# The stand-in for api.cloudflare.com answers like a real run/ call: envelope plus a neuron header.
UPSTREAM_HEADERS = {"cf-ai-neurons": "1.25", "cf-ai-req-id": "00000000-0000-4000-8000-000000000000"}
# Where the baseline server answers the embeddings floor (`embeddings_floor`), and its vector size.
EMBEDDINGS_FLOOR_PATH = "/floor/embeddings"
EMBEDDING_DIMS = 1024
# Where the baseline server answers the text floor (`text_floor`), and the sentence table it draws from:
# 4,096 sentences of 4-10 made-up words with their token counts, built once from a fixed seed.
TEXT_FLOOR_PATH = "/floor/text"
_FLOOR_RNG = np.random.default_rng(0)
_FLOOR_WORDS = ["".join(chr(97 + int(c)) for c in _FLOOR_RNG.integers(0, 26, int(n)))
                for n in _FLOOR_RNG.integers(2, 10, 2_000)]
_FLOOR_SENTENCES = [" ".join(_FLOOR_WORDS[int(i)] for i in _FLOOR_RNG.integers(0, 2_000, int(n))).capitalize()
                    + "." for n in _FLOOR_RNG.integers(4, 11, 4_096)]
_FLOOR_TOKENS = [s.count(" ") + 2 for s in _FLOOR_SENTENCES]


async def baseline(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BASELINE_BODY, content_type="application/json")


async def upstream(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BASELINE_BODY, content_type="application/json", headers=UPSTREAM_HEADERS)


async def embeddings_floor(request: web.Request) -> web.Response:
    """The least any server can do for a run/ embeddings call: parse the texts, make one random unit
    float32 vector per text, and write the envelope the real API sends (each float32 widened to a
    double). The emulator's uncached embeddings latency is reported next to this, measured alike."""
    raw = await request.read()
    texts = orjson.loads(raw)["text"]
    dims = int(request.query.get("dims", EMBEDDING_DIMS))  # bge-large's 1024 unless asked (bge-base: 768)
    gen = np.random.default_rng(zlib.crc32(raw))
    rows = gen.standard_normal((len(texts), dims), dtype=np.float32)
    rows /= np.sqrt(np.square(rows).sum(axis=1, keepdims=True))
    result = {"shape": [len(texts), dims], "data": rows.astype(np.float64), "pooling": "mean"}
    body = {"result": result, "success": True, "errors": [], "messages": []}
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                        content_type="application/json")


async def text_floor(request: web.Request) -> web.Response:
    """The least any server can do for a run/ text-generation call: parse the body, draw 3-7 sentences
    from a fixed table with one generator seeded by the body, count the tokens from the table (the
    prompt's by its words), and write the envelope the real API sends. The emulator's varied text
    row is reported next to this, measured alike."""
    raw = await request.read()
    prompt = str(orjson.loads(raw).get("prompt", ""))
    gen = np.random.default_rng(zlib.crc32(raw))
    picked = gen.integers(0, len(_FLOOR_SENTENCES), int(gen.integers(3, 8))).tolist()
    prompt_tokens = prompt.count(" ") + 9  # the words, plus a chat template's few special tokens
    completion_tokens = sum(_FLOOR_TOKENS[i] for i in picked)
    result = {"response": " ".join(_FLOOR_SENTENCES[i] for i in picked),
              "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens}}
    body = {"result": result, "success": True, "errors": [], "messages": []}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def serve(kind: str, port: int) -> None:
    app = web.Application()
    app.router.add_post(EMBEDDINGS_FLOOR_PATH, embeddings_floor)
    app.router.add_post(TEXT_FLOOR_PATH, text_floor)
    app.router.add_route("*", "/{tail:.*}", baseline if kind == "baseline" else upstream)
    # The same runner settings as `workers-ai-emulator serve`: no access log.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["baseline", "upstream"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.port))


if __name__ == "__main__":
    main()
