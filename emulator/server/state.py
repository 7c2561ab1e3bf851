"""Everything one running server holds, stored on the aiohttp app under a typed key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from emulator.accounting.ledger import Clock, Ledger
from emulator.accounting.pricing import PriceBook
from emulator.backends.base import Backend
from emulator.call import Call, CallReport, Outcome, StreamFilter
from emulator.catalog import Catalog
from emulator.finetunes.store import FinetuneStore
from emulator.server.answer_cache import AnswerCache
from emulator.server.batch_queue import Batch
from emulator.server.paths import Route
from emulator.settings import Settings

RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class SessionFaults:
    """The stream faults that fired for a realtime session (server/realtime.py applies them)."""

    delay: float = 0.0  # seconds before every server message
    cut_after: int | None = None  # messages sent before the connection drops


@dataclass(frozen=True, slots=True)
class Controlled:
    """What the control plane made of a call: the outcome (a stub's or the backend's), the call's
    report so far, and the stream faults to apply to whatever events the surface writes for it."""

    outcome: Outcome
    report: CallReport
    stream_filter: StreamFilter | None = None


class ControlHooks(Protocol):
    """What the pipeline asks of the control plane (emulator/control/plane.py) around a model call."""

    async def run(self, call: Call, handle: Callable[[Call], Awaitable[Outcome]]) -> Controlled:
        """A stub's or `handle`'s outcome, with faults applied (an error fault raises its CFError)."""
        ...

    def untouched(self) -> bool:
        """No stub and no fault can change an answer."""
        ...

    async def open_session(self, call: Call) -> tuple[SessionFaults, CallReport]:
        """A realtime session is about to start: its faults and its report so far (an error fault
        raises its CFError)."""
        ...

    def stale(self) -> bool:
        """Another worker of `serve --workers N` changed stubs, faults, the clock or the mode."""
        ...

    async def catch_up(self) -> None:
        """Load what the other workers changed, before this worker answers a call."""
        ...


class RequestRecorder(Protocol):
    """The request log (emulator/control/request_log.py): runs a request's handler and logs it."""

    async def record(self, request: web.Request, handler: RequestHandler) -> web.StreamResponse: ...


@dataclass
class ServerState:
    settings: Settings
    catalog: Catalog
    backend: Backend
    ledger: Ledger
    prices: PriceBook
    # Rendered answers of repeatable calls by request (server/answer_cache.py); new with each backend.
    answers: AnswerCache
    # The control plane (stubs, faults, clock) and its request log, when it is on.
    control: ControlHooks | None = None
    request_log: RequestRecorder | None = None
    # Async batches by request id (server/batch.py).
    batches: dict[str, Batch] = field(default_factory=dict)
    # The accounts' fine-tunes, opened in the data directory on first use (server/finetunes.py).
    finetunes: FinetuneStore | None = None

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
