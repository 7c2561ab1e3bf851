"""Shared fixtures: a real emulator server on a free port, and an HTTP client pointed at it."""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from emulator.server.app import create_app
from emulator.server.state import STATE, ServerState
from emulator.settings import DEFAULT_ACCOUNT, Settings
from tests import run_dir, test_mypy
from tests.exclusive import pytest_runtest_protocol  # noqa: F401  (the exclusive tests' lock)
from tests.fake_upstream import FakeUpstream

ACCOUNT = DEFAULT_ACCOUNT  # the account of every test that needs no account of its own
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Emulator:
    """A running server plus a client session; helpers build Cloudflare URLs."""

    base: str
    session: aiohttp.ClientSession
    app: web.Application
    account: str = ACCOUNT

    @property
    def state(self) -> ServerState:
        return self.app[STATE]

    @property
    def ai(self) -> str:
        return f"{self.base}/client/v4/accounts/{self.account}/ai"

    def run_url(self, model: str) -> str:
        return f"{self.ai}/run/{model}"

    async def run(
        self,
        model: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        hdrs = {**AUTH, **(headers or {})}
        if data is not None:
            return await self.session.post(self.run_url(model), data=data, headers=hdrs)
        return await self.session.post(self.run_url(model), json=body, headers=hdrs)


ServerFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def make_emulator(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(**overrides: Any) -> Emulator:
        overrides.setdefault("data_dir", tmp_path / f"data{len(runners)}")
        settings = Settings(port=0, **overrides)
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Emulator(f"http://127.0.0.1:{port}", session, app)

    yield make
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def emulator(make_emulator: ServerFactory) -> Emulator:
    return await make_emulator()


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A real 16-bit mono PCM WAV of a 440 Hz tone, written independently of the emulator's fakes."""
    frames = int(seconds * rate)
    pcm = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames)
    )
    buf = io.BytesIO()
    buf.write(b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE")
    buf.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16))
    buf.write(b"data" + struct.pack("<I", len(pcm)) + pcm)
    return buf.getvalue()


def parse_sse(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order; asserts the blank-line framing."""
    assert text.endswith("\n\n"), "an SSE body ends with a blank line"
    events = [block for block in text.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events), events
    return [block[len("data: ") :] for block in events]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A stand-in for Cloudflare's API on a free localhost port (tests/fake_upstream.py)."""
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


def pytest_configure(config: pytest.Config) -> None:
    run_dir.create(config)


# Child pytest runs (the contract suite, the example projects, the projects the plugin's tests
# build) leave out the third-party plugins this environment holds for other tests or as
# dependencies of dependencies: importing them took 7 s of a child run's 13 s (schemathesis 2.4 s,
# langsmith 1.8 s, faker, anyio, platformdirs), and the suite starts a few dozen child runs.
CHILD_RUNS_LEAVE_OUT = ("schemathesis", "langsmith_plugin", "faker", "anyio", "platformdirs")
CHILD_RUN_OPTIONS = " ".join(f"-p no:{name}" for name in CHILD_RUNS_LEAVE_OUT)


@pytest.fixture(scope="session", autouse=True)
def _child_pytest_runs_leave_out_unrelated_plugins() -> Iterator[None]:
    """Set for the tests' own children only: set at configure time, it would reach the xdist
    workers, and test_schemathesis.py needs its plugin."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS", f"{os.environ.get('PYTEST_ADDOPTS', '')} {CHILD_RUN_OPTIONS}".strip())
        yield


# More workers than this start more servers than they save time on a large machine.
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject.toml's addopts): a worker per core, at most MAX_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the slowest single test's work, a cold mypy run, as soon as it is known to be wanted."""
    if any(item.nodeid == test_mypy.TEST_ID for item in session.items):
        test_mypy.start_mypy()


def pytest_sessionfinish(session: pytest.Session) -> None:
    test_mypy.stop_mypy()
    run_dir.remove()
