"""A real emulator on a free port, run by its own event loop in a thread, for synchronous HTTP clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from emulator.limits import runner_for
from emulator.server.app import create_app
from emulator.settings import Settings


class LiveServer:
    """Started by `live_server()`; `base` is its http://127.0.0.1:PORT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.base = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-live-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self.runner = runner_for(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("live server did not start")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to inspect its tasks, for instance)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def live_server(**overrides: Any) -> Iterator[LiveServer]:
    settings = Settings(port=0, **overrides)
    server = LiveServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
