"""Everything one running server holds, stored on the aiohttp app under a typed key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.accounting.ledger import Clock, Ledger
from emulator.accounting.pricing import PriceBook
from emulator.backends.base import Backend
from emulator.catalog import Catalog
from emulator.server.answer_cache import AnswerCache
from emulator.server.paths import Route
from emulator.settings import Settings

if TYPE_CHECKING:  # the request log imports the route keys from here
    from emulator.control.request_log import RequestLog


@dataclass
class ServerState:
    settings: Settings
    catalog: Catalog
    backend: Backend
    ledger: Ledger
    prices: PriceBook
    # Rendered answers of repeatable calls by request (server/answer_cache.py); new with each backend.
    answers: AnswerCache
    # Extension points filled by the control plane (stubs, faults).
    extensions: dict[str, Any] = field(default_factory=dict)
    # The control plane's request log, when it is on (emulator/control/request_log.py).
    request_log: RequestLog | None = None

    @property
    def quirks(self) -> dict[str, bool]:
        return self.settings.quirks

    @property
    def clock(self) -> Clock:
        """The server's one clock: the ledger's (UTC day, rollover, rate windows). Tests and the
        control plane's `POST /__emulator__/clock` replace it with a `ledger.FixedClock`."""
        return self.ledger.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.ledger.clock = value


STATE: web.AppKey[ServerState] = web.AppKey("state", ServerState)
# Set by the dispatcher on every Cloudflare-namespace request; read by error rendering and the log.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
ROUTE: web.RequestKey[Route] = web.RequestKey("route", Route)
