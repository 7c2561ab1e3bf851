"""Soak: minutes of mixed load on a real `serve` process (every surface, streams, aborted streams, errors)
with bounded RSS growth and no unexpected status. Run with `pytest -m slow tests/test_soak.py`;
WORKERS_AI_SOAK_SECONDS sets the duration (default 180)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ACCOUNT, wav_bytes
from tests.serving import serve

AUTH = {"Authorization": "Bearer soak-token"}
SECONDS = float(os.environ.get("WORKERS_AI_SOAK_SECONDS", "180"))
CONCURRENCY = 16
# Growth allowed between the end of warm-up and the end of the run: the mock backend's answer cache
# (2048 entries) and allocator slack fill during warm-up; a leak grows with every request.
MAX_RSS_GROWTH_MB = 60.0
LLAMA = "@cf/meta/llama-3.1-8b-instruct"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _one(session: aiohttp.ClientSession, base: str, n: int, wav: bytes) -> tuple[str, int]:
    ai = f"{base}/client/v4/accounts/{ACCOUNT}/ai"
    kind = n % 12
    prompt = f"soak prompt {n}"
    if kind == 0:
        request = session.post(f"{ai}/run/{LLAMA}", json={"prompt": prompt, "max_tokens": 64}, headers=AUTH)
    elif kind == 1:
        request = session.post(f"{ai}/run/{LLAMA}", json={"prompt": prompt, "stream": True}, headers=AUTH)
    elif kind == 2:
        body = {"model": LLAMA, "stream": n % 4 == 2, "messages": [{"role": "user", "content": prompt}]}
        request = session.post(f"{ai}/v1/chat/completions", json=body, headers=AUTH)
    elif kind == 3:
        request = session.post(
            f"{ai}/run/@cf/baai/bge-base-en-v1.5", json={"text": [prompt, "x"]}, headers=AUTH
        )
    elif kind == 4:
        body = {"model": "@cf/baai/bge-small-en-v1.5", "input": prompt}
        request = session.post(f"{ai}/v1/embeddings", json=body, headers=AUTH)
    elif kind == 5:
        body = {"prompt": prompt, "width": 256, "height": 256}
        request = session.post(
            f"{ai}/run/@cf/stabilityai/stable-diffusion-xl-base-1.0", json=body, headers=AUTH
        )
    elif kind == 6:
        request = session.post(
            f"{ai}/run/@cf/openai/whisper", data=wav, headers={**AUTH, "Content-Type": "audio/wav"}
        )
    elif kind == 7:
        request = session.get(
            f"{ai}/models/search", params={"page": str(n % 5 + 1), "per_page": "10"}, headers=AUTH
        )
    elif kind == 8:  # errors: bad JSON, unknown model, missing auth, deep nesting
        choice = (n // 12) % 4
        if choice == 0:
            request = session.post(f"{ai}/run/{LLAMA}", data=b"{oops", headers=AUTH)
        elif choice == 1:
            request = session.post(f"{ai}/run/@cf/no/model", json={"prompt": prompt}, headers=AUTH)
        elif choice == 2:
            request = session.post(f"{ai}/run/{LLAMA}", json={"prompt": prompt})
        else:
            request = session.post(f"{ai}/run/{LLAMA}", data=b"[" * 2000 + b"]" * 2000, headers=AUTH)
    elif kind == 9:  # a client that goes away after the first event
        async with session.post(
            f"{ai}/run/{LLAMA}", json={"prompt": prompt, "stream": True}, headers=AUTH
        ) as resp:
            await resp.content.readany()
            resp.close()
            return "aborted", resp.status
    elif kind == 10:
        body = {"model": f"workers-ai/{LLAMA}", "messages": [{"role": "user", "content": prompt}]}
        request = session.post(f"{base}/v1/{ACCOUNT}/soak/compat/chat/completions", json=body, headers=AUTH)
    else:
        query = {
            "query": "{ viewer { accounts { aiInferenceAdaptiveGroups(limit: 5) { sum { neurons } } } } }"
        }
        request = session.post(f"{base}/client/v4/graphql", json=query, headers=AUTH)
    async with request as resp:
        await resp.read()
        return f"kind{kind}", resp.status


EXPECTED = {"kind8": {400, 403}}


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 120)
async def test_soak_mixed_load(tmp_path: Path) -> None:
    wav = wav_bytes(1.0)
    statuses: Counter[tuple[str, int]] = Counter()
    counter = itertools.count()
    with serve("--plan", "paid", data_dir=tmp_path) as (base, proc):
        # Drain the server's stderr: a full pipe would block the server on its next log line.
        assert proc.stderr is not None
        stderr_lines: list[str] = []
        drain = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        drain.start()
        deadline = time.monotonic() + SECONDS
        warm_until = time.monotonic() + SECONDS * 0.25
        warm_rss: float | None = None
        samples: list[float] = []

        async def worker(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < deadline:
                kind, status = await _one(session, base, next(counter), wav)
                statuses[(kind, status)] += 1

        async def sampler() -> None:
            nonlocal warm_rss
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                samples.append(rss_mb(proc.pid))
                if warm_rss is None and time.monotonic() >= warm_until:
                    warm_rss = samples[-1]

        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            await asyncio.gather(sampler(), *(worker(session) for _ in range(CONCURRENCY)))
        end_rss = rss_mb(proc.pid)
        assert proc.poll() is None, "the server died"
    total = sum(statuses.values())
    unexpected = {k: v for k, v in statuses.items() if k[1] not in EXPECTED.get(k[0], {200})}
    print(
        f"\nsoak: {total} requests in {SECONDS:.0f} s ({total / SECONDS:.0f}/s); RSS warm {warm_rss:.1f} MB, "
        f"end {end_rss:.1f} MB, peak {max(samples):.1f} MB; statuses {sorted(statuses.items())}"
    )
    assert not unexpected, unexpected
    drain.join(15)
    assert not any("Traceback" in line for line in stderr_lines), "".join(stderr_lines[:40])
    assert warm_rss is not None
    assert end_rss - warm_rss < MAX_RSS_GROWTH_MB, (warm_rss, end_rss, samples[::10])
