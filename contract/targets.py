"""What a contract check talks to: a local emulator (mock, replay or record mode) or the real API."""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
RECORDED_CASSETTE = "recorded/contract"  # what `--target real --record` writes, relative to fixtures/

LOCAL_ACCOUNT = "0123456789abcdef0123456789abcdef"
LOCAL_TOKEN = "contract-token"  # the local server runs with --token, so a wrong token is a real 10000
WRONG_TOKEN = "contract-wrong-token"
LOCAL_GATEWAY = "contract-gw"
REAL_API = "https://api.cloudflare.com"
REAL_GATEWAY = "https://gateway.ai.cloudflare.com"


@dataclass
class Target:
    """One place to send requests: base URLs, the account in paths and the token clients present."""

    name: str  # emulator | replay | real
    base: str  # origin serving /client/v4/...
    account: str
    token: str
    gateway_base: str  # origin serving AI Gateway /v1/{account}/{gateway}/...
    gateway_id: str | None
    local: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.base}/client/v4"

    @property
    def ai(self) -> str:
        return f"{self.api}/accounts/{self.account}/ai"

    def run_url(self, model: str) -> str:
        return f"{self.ai}/run/{model}"

    def v1(self, endpoint: str) -> str:
        return f"{self.ai}/v1/{endpoint}"

    def gateway(self, tail: str) -> str:
        return f"{self.gateway_base}/v1/{self.account}/{self.gateway_id}/{tail}"

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=120.0, trust_env=False)


class LocalServer:
    """The emulator app served on 127.0.0.1 from a background thread with its own event loop.

    Equivalent to ``workers-ai-emulator serve --port 0 ...`` (same `create_app`, same Settings); in-process so
    that a suite can start one server per cassette in milliseconds.
    """

    def __init__(self, **settings: Any) -> None:
        from emulator.settings import Settings

        self.settings = Settings(host="127.0.0.1", port=0, **settings)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="contract-emulator", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise RuntimeError(f"emulator did not start: {self._error!r}") from self._error
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from aiohttp import web

        from emulator.server.app import create_app

        try:
            app = create_app(self.settings)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._stop = asyncio.Event()
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def real_credentials() -> tuple[str, str] | None:
    token, account = os.environ.get("CLOUDFLARE_API_TOKEN"), os.environ.get("CLOUDFLARE_ACCOUNT_ID")
    return (token, account) if token and account else None


def local_target(name: str, server: LocalServer) -> Target:
    return Target(
        name=name,
        base=server.base,
        account=LOCAL_ACCOUNT,
        token=LOCAL_TOKEN,
        gateway_base=server.base,
        gateway_id=LOCAL_GATEWAY,
        local=True,
        extra={"server": server},
    )


def real_target(token: str, account: str) -> Target:
    return Target(
        name="real",
        base=REAL_API,
        account=account,
        token=token,
        gateway_base=REAL_GATEWAY,
        gateway_id=os.environ.get("CLOUDFLARE_GATEWAY_ID"),
        local=False,
    )
