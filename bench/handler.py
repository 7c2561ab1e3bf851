"""CPU time per request of the emulator's own request path, in-process (no sockets, no HTTP parsing).

    python bench/handler.py                  # every varied scenario of bench/run.py
    python bench/handler.py text chat binding -n 2000

Each request is one of bench/run.py's varied requests with its own number (nothing comes from a
cache), handed to the app's handler as aiohttp hands it a parsed request: routing, authentication,
validation, the fake, the charge, the request log and rendering the answer's bytes. What it leaves
out (aiohttp's parser and writer, the kernel's socket work) is the same for every version of the
emulator, so two versions compare more steadily here than under load. Figures are the fastest of
several passes (CPU time), which is what the code costs when other work leaves it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from drivers import VARY_MARKER
from run import HEADERS, LOAD_SCENARIOS, write_replay_cassette

from emulator.launch.allocator import keep_freed_memory
from emulator.server.app import create_app
from emulator.settings import Mode, Settings

SCENARIOS = [s for s in LOAD_SCENARIOS.values() if s.varied and s.server != "baseline"]


def settings_for(server: str, work: Path) -> Settings:
    if server == "replay":
        write_replay_cassette(work / "cassettes", "bench")
        return Settings(data_dir=work / "replay", plan="paid", mode=Mode.REPLAY, cassette="bench",
                        cassette_dir=work / "cassettes", ignore_fields=["seed"])
    return Settings(data_dir=work / "mock", plan="paid")


class _Transport:
    """The connection a handler may ask about (aiohttp's test helper would give a Mock, whose every
    attribute costs microseconds and would be counted as the emulator's)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8787)}.get(name, default)

    def is_closing(self) -> bool:
        return False


class _Writer:
    buffer_size = output_size = 0

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport

    async def write(self, *args: Any, **kwargs: Any) -> None:
        return None

    write_headers = write_eof = drain = write

    def enable_chunking(self) -> None:  # a streamed answer's headers ask for it
        return None

    def send_headers(self) -> None:
        return None

    def enable_compression(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Protocol:
    max_field_size = max_line_length = 8190
    max_headers = 128
    peername = ("127.0.0.1", 40000)
    sockname = ("127.0.0.1", 8787)
    ssl_context = None
    _reading_paused = False

    def __init__(self, transport: _Transport, writer: _Writer) -> None:
        self.transport, self.writer = transport, writer

    def pause_reading(self, **kwargs: Any) -> None:
        return None

    resume_reading = pause_reading


def mocked(app: web.Application, spec: dict[str, Any], number: int) -> web.Request:
    data = spec.get("body", "").replace(VARY_MARKER, str(number)).encode()
    transport = _Transport()
    writer = _Writer(transport)
    protocol = _Protocol(transport, writer)
    payload = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    payload.feed_data(data)
    payload.feed_eof()
    headers = {**HEADERS, **(spec.get("headers") or {}), "Content-Length": str(len(data))}
    return make_mocked_request(spec["method"], spec["path"], headers=headers, payload=payload, app=app,
                               transport=transport, writer=writer, protocol=protocol)


async def measure(app: web.Application, requests: list[dict[str, Any]], n: int, passes: int,
                  first: int) -> float:
    """Fastest pass's CPU seconds per request; every request a number never sent before."""
    handle = app._handle  # what aiohttp's request handler calls: routing, then the route's handler
    best = float("inf")
    number = first
    for _ in range(passes):
        batch = []
        for i in range(n):
            number += 1
            batch.append(mocked(app, requests[i % len(requests)], number))
        started = time.process_time()
        for request in batch:
            response = await handle(request)
            if response.status >= 400:
                body = response.body if isinstance(response, web.Response) else b""
                raise RuntimeError(f"{request.path} answered {response.status}: {body!r:.300}")
            await asyncio.sleep(0)  # let the callbacks a request scheduled run (the ledger's drain)
        best = min(best, (time.process_time() - started) / n)
    return best


async def run(names: list[str], n: int, passes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-handler-") as tmp:
        work = Path(tmp)
        apps: dict[str, web.AppRunner] = {}
        try:
            for scenario in SCENARIOS:
                if scenario.name not in names:
                    continue
                if scenario.server not in apps:
                    runner = web.AppRunner(create_app(settings_for(scenario.server, work)))
                    await runner.setup()
                    apps[scenario.server] = runner
                app = apps[scenario.server].app
                requests = scenario.requests()
                await measure(app, requests, 20, 1, 0)  # warm: lazily built tables and validators
                count = max(2, n if scenario.name not in HEAVY else n // 20)
                cost = await measure(app, requests, count, passes, 10_000_000)
                print(f"{scenario.label:<30} {cost * 1e6:9.1f} µs/request "
                      f"(fastest of {passes} passes of {count})", flush=True)
        finally:
            for runner in apps.values():
                await runner.cleanup()


HEAVY = frozenset({"png", "embeddings", "whisper"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [s.name for s in SCENARIOS]
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of: {', '.join(names)}")
    parser.add_argument("-n", type=int, default=500, help="requests per pass (a twentieth for heavy ones)")
    parser.add_argument("-r", "--repeats", type=int, default=5, help="passes; the fastest counts (default 5)")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(names)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    keep_freed_memory()
    asyncio.run(run(args.scenarios or names, args.n, args.repeats))


if __name__ == "__main__":
    main()
