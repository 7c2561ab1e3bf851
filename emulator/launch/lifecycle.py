"""Running one server process: start the app on its port, wait for SIGINT/SIGTERM, shut down cleanly."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Callable

from aiohttp import web

from emulator.launch import log_redaction
from emulator.launch.allocator import keep_freed_memory
from emulator.limits import runner_for
from emulator.server.app import create_app
from emulator.server.worker_group import WorkerGroup
from emulator.settings import Settings


class ListenError(Exception):
    """The server could not listen on its host and port (in use, not allowed, no such address)."""


async def serve_until_stopped(settings: Settings, on_started: Callable[[web.AppRunner], None],
                              group: WorkerGroup | None = None) -> None:
    """Serve `settings` until a stop signal; `serve` and every `--workers` process start the same way
    (redacted logs, slow-client limits), only what they do once listening differs. A worker also
    listens on its group's unix socket, where its siblings read its request log."""
    log_redaction.install((settings.token, settings.upstream_token))
    keep_freed_memory()
    runner = runner_for(create_app(settings, group=group))
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=settings.workers > 1)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = f"{settings.host}:{settings.port}"
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    if group is not None:
        await web.UnixSite(runner, str(group.socket_path(group.index))).start()
    # The catalog, its compiled validators and the fakes' tables live as long as the process: moved
    # out of the collector's sight, a full collection no longer walks them (a pause of milliseconds
    # that showed up in the p99 of every request caught behind it).
    gc.collect()
    gc.freeze()
    on_started(runner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
