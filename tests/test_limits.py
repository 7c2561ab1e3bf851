"""Resource limits (size, pixels, audio, batch, tokens, slow/idle clients, aborted streams): 4xx, no leaks."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulator import limits
from emulator.launch.background import BackgroundServer
from tests.conftest import ACCOUNT
from tests.live_server import live_server

AI = f"/client/v4/accounts/{ACCOUNT}/ai"
AUTH = {"Authorization": "Bearer limits-token"}


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundServer]:
    # Short timeouts so slow and idle clients are dealt with inside a test's time.
    monkeypatch.setattr(limits, "KEEPALIVE_TIMEOUT", 1.0)
    monkeypatch.setattr(limits, "BODY_READ_TIMEOUT", 1.0)
    with live_server(data_dir=tmp_path, plan="paid", max_body_bytes=64 * 1024) as live:
        yield live


def _port(server: BackgroundServer) -> int:
    return int(server.base.rsplit(":", 1)[1])


def _error(response: requests.Response) -> tuple[int, int]:
    body = response.json()
    assert body["success"] is False
    return response.status_code, body["errors"][0]["code"]


def test_body_over_the_limit_with_content_length_is_3006(server: BackgroundServer) -> None:
    response = requests.post(
        server.base + AI + "/run/@cf/meta/llama-3.1-8b-instruct",
        headers=AUTH,
        data=b'{"prompt": "' + b"a" * 70_000 + b'"}',
        timeout=30,
    )
    assert _error(response) == (413, 3006)
    assert list(response.json()) == ["result", "success", "errors", "messages"]


def test_chunked_body_over_the_limit_is_3006_not_a_bare_413(server: BackgroundServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"}'

    response = requests.post(
        server.base + AI + "/run/@cf/meta/llama-3.1-8b-instruct",
        headers={**AUTH, "Content-Type": "application/json"},
        data=chunks(),
        timeout=30,
    )
    assert "Content-Length" not in response.request.headers
    assert _error(response) == (413, 3006)


def test_flux2_multipart_pixels_are_bounded(server: BackgroundServer) -> None:
    files = {"prompt": (None, "cat"), "width": (None, "100000"), "height": (None, "100000")}
    response = requests.post(
        server.base + AI + "/run/@cf/black-forest-labs/flux-2-klein-4b", headers=AUTH, files=files, timeout=30
    )
    status, code = _error(response)
    assert (status, code) == (400, 5006)
    assert "exceeds the maximum" in response.json()["errors"][0]["message"]


def test_largest_allowed_picture_still_renders(server: BackgroundServer) -> None:
    response = requests.post(
        server.base + AI + "/run/@cf/stabilityai/stable-diffusion-xl-base-1.0",
        headers=AUTH,
        json={"prompt": "cat", "width": 2048, "height": 2048},
        timeout=60,
    )
    assert response.status_code == 200
    assert response.content[:4] == b"\x89PNG"


def test_pixel_limit_per_model() -> None:
    assert limits.MODEL_MAX_PIXELS["@cf/leonardo/lucid-origin"] == 2500 * 2500
    assert limits.MAX_IMAGE_PIXELS == 2048 * 2048


def _wav_claiming(seconds: int) -> bytes:
    """A valid 8-bit mono WAV header at 1 sample per second: `seconds` data bytes last `seconds` seconds."""
    data = b"\x00" * seconds
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 1, 1, 1, 8)
    head = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + fmt
    return head + b"data" + struct.pack("<I", len(data)) + data


def test_audio_longer_than_two_hours_is_refused(server: BackgroundServer) -> None:
    response = requests.post(
        server.base + AI + "/run/@cf/openai/whisper",
        headers={**AUTH, "Content-Type": "audio/wav"},
        data=_wav_claiming(20_000),
        timeout=30,
    )
    assert _error(response) == (400, 5006)
    assert "maximum is 7200 seconds" in response.json()["errors"][0]["message"]


def test_embedding_batch_is_bounded_even_without_schema_bound(server: BackgroundServer) -> None:
    url = server.base + AI + "/run/@cf/google/embeddinggemma-300m"
    assert requests.post(url, headers=AUTH, json={"text": ["x"] * 100}, timeout=30).status_code == 200
    response = requests.post(url, headers=AUTH, json={"text": ["x"] * 101}, timeout=30)
    assert _error(response) == (400, 5006)


def test_huge_max_tokens_is_capped_and_fast(server: BackgroundServer) -> None:
    started = time.monotonic()
    response = requests.post(
        server.base + AI + "/run/@cf/meta/llama-3.1-8b-instruct",
        headers=AUTH,
        json={"prompt": "hi", "max_tokens": 2**62},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["usage"]["completion_tokens"] <= limits.MAX_OUTPUT_TOKENS
    assert time.monotonic() - started < 5
    assert limits.output_tokens(10**30) == limits.MAX_OUTPUT_TOKENS
    assert limits.output_tokens(256) == 256


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _task_count() -> int:
    return len(asyncio.all_tasks())


def _settle(server: BackgroundServer, fds: int, tasks: int, timeout: float = 10.0) -> tuple[int, int]:
    """Wait until the server is back to (at most) the given fd and task counts."""
    deadline = time.monotonic() + timeout
    now_fds, now_tasks = _fds(), server.call(_task_count())
    while time.monotonic() < deadline and (now_fds > fds or now_tasks > tasks):
        time.sleep(0.1)
        now_fds, now_tasks = _fds(), server.call(_task_count())
    return now_fds, now_tasks


def test_slowloris_body_gets_408_and_leaks_nothing(server: BackgroundServer) -> None:
    fds, tasks = _fds(), server.call(_task_count())
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as sock:
        sock.sendall(
            f"POST {AI}/run/@cf/meta/llama-3.1-8b-instruct HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer t\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = b""
        for _ in range(40):  # trickle one byte every 0.1 s; the server gives up after 1 s
            try:
                sock.sendall(b"{")
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and b"}" in answer.split(b"\r\n\r\n", 1)[1]:
                break
        assert time.monotonic() - started < 4
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":3007' in answer
    assert _settle(server, fds, tasks) <= (fds, tasks)


def test_idle_connections_are_closed_and_leak_nothing(server: BackgroundServer) -> None:
    fds, tasks = _fds(), server.call(_task_count())
    socks = [socket.create_connection(("127.0.0.1", _port(server)), timeout=5) for _ in range(50)]
    try:
        # Headers only, then silence: keep-alive (1 s here) closes them from the server side.
        for sock in socks[:25]:
            sock.sendall(b"POST /client/v4/graphql HTTP/1.1\r\nHost: x\r\n")
        for sock in socks:
            sock.settimeout(10)
            try:
                leftover = sock.recv(1024)
            except ConnectionResetError:
                leftover = b""
            assert leftover == b"" or leftover.startswith(b"HTTP/1.1 4"), leftover[:100]
    finally:
        for sock in socks:
            sock.close()
    assert _settle(server, fds, tasks) <= (fds, tasks)


def test_client_abort_mid_stream_cancels_the_handler(server: BackgroundServer) -> None:
    requests.post(
        server.base + "/__emulator__/faults", json={"kind": "slow_stream", "delay_ms": 200}, timeout=10
    ).raise_for_status()
    # One charged call first: the ledger opens its journal file on the first charge.
    requests.post(server.base + AI + "/run/@cf/meta/llama-3.1-8b-instruct", headers=AUTH,
                  json={"prompt": "warm up"}, timeout=10).raise_for_status()
    fds, tasks = _fds(), server.call(_task_count())
    for _ in range(5):
        with requests.post(
            server.base + AI + "/run/@cf/meta/llama-3.1-8b-instruct",
            headers=AUTH,
            json={"prompt": "tell me a long story", "stream": True},
            stream=True,
            timeout=10,
        ) as response:
            assert response.status_code == 200
            first = next(response.iter_content(chunk_size=None))
            assert first.startswith(b"data: ")
        # Leaving the block closes the connection after one event; the rest would take seconds.
    assert _settle(server, fds, tasks) <= (fds, tasks)
    requests.delete(server.base + "/__emulator__/faults", timeout=10)


# ---------------------------------------------------------------- freeing large bodies, sharing the GIL


class _Leaf:
    """A value whose freeing a test can count."""

    freed = 0

    def __del__(self) -> None:
        _Leaf.freed += 1


async def test_a_large_body_is_freed_in_slices_once_nothing_else_holds_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """limits.free_in_slices keeps a parsed body while its request holds it, then frees its lists
    and objects a slice of items at a time, yielding to the loop between slices; a nested value
    something else still holds is kept whole until that holder lets go, then freed the same way."""
    import sys

    monkeypatch.setattr(limits, "LOOP_SLICE_SECONDS", 0.0)  # yield after every slice
    _Leaf.freed = 0
    leaves = 2 * limits.FREE_SLICE_ITEMS + 2 * (limits.FREE_SLICE_ITEMS + 7) + 500
    shared = {"kept": [_Leaf() for _ in range(10)]}
    body = {"flat": [_Leaf() for _ in range(2 * limits.FREE_SLICE_ITEMS)],
            "nested": [[_Leaf(), {"k": [_Leaf()]}] for _ in range(limits.FREE_SLICE_ITEMS + 7)],
            "keys": {str(i): _Leaf() for i in range(500)}, "shared": shared}
    limits.free_in_slices(body)
    releaser = limits._RELEASERS[asyncio.get_running_loop()]
    await asyncio.sleep(3 * limits.FREE_POLL_SECONDS)
    assert releaser.kept == [body] and _Leaf.freed == 0  # the request still holds it
    freed_at_each_yield: list[int] = []
    original_sleep = asyncio.sleep

    async def counted(delay: float) -> None:
        if delay == 0:
            freed_at_each_yield.append(_Leaf.freed)
        await original_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", counted)
    del body
    while releaser.kept != [shared]:
        await original_sleep(limits.FREE_POLL_SECONDS)
    assert _Leaf.freed == leaves
    # Freed over many yields, never more than a slice's worth (a leaf and its nested one) between two.
    steps = [b - a for a, b in zip([0, *freed_at_each_yield], freed_at_each_yield, strict=False)]
    assert len(steps) > 5 and max(steps) <= 2 * limits.FREE_SLICE_ITEMS, steps
    # The part the test still holds: kept whole (its slot in `kept`, `shared`, getrefcount's argument),
    # then freed once the test lets go of it.
    assert len(shared["kept"]) == 10 and sys.getrefcount(shared) == 3
    del shared
    while releaser.kept or not (releaser.task is None or releaser.task.done()):
        await original_sleep(limits.FREE_POLL_SECONDS)
    assert _Leaf.freed == leaves + 10


async def test_free_in_slices_keeps_no_scalars() -> None:
    limits.free_in_slices("a string")
    limits.free_in_slices(12345)
    assert asyncio.get_running_loop() not in limits._RELEASERS
