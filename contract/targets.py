"""What a contract check talks to: a local emulator (mock, replay or record mode) or the real API."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from emulator.launch.background import BackgroundServer
from emulator.settings import DEFAULT_ACCOUNT, Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
RECORDED_CASSETTE = "recorded/contract"  # what `--target real --record` writes, relative to fixtures/

LOCAL_ACCOUNT = DEFAULT_ACCOUNT
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


class LocalServer(BackgroundServer):
    """The emulator with these settings on 127.0.0.1 and a free port: ``workers-ai-emulator serve --port 0
    ...`` in-process, so that a suite can start one server per cassette in milliseconds."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(Settings(host="127.0.0.1", port=0, **settings))


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
