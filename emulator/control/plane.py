"""The control plane of one server: stubs, faults, request log and clock, and the hooks the pipeline
calls around each model call (`ControlHooks` in emulator/server/state.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from emulator.call import Call, Outcome
from emulator.control.faults import FaultSet
from emulator.control.request_log import CURRENT, RequestLog, describe_call
from emulator.control.scope import SpecError
from emulator.control.stubs import StubSet
from emulator.errors import CFError
from emulator.server.render import STREAM_FILTER
from emulator.server.state import ServerState

# The clock and `day` parameters stay inside these bounds: the ledger works with the day after "today"
# (its reset time), which Python's dates cannot represent past 9999-12-31.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
# Request ids and `limit` longer than this are refused before int() (which refuses 4,300 digits).
MAX_NUMBER_DIGITS = 18


class ControlClock:
    """The ledger's clock: real time until frozen with `set`, then moved only by `set` / `advance`."""

    def __init__(self) -> None:
        self._fixed: datetime | None = None

    def now(self) -> datetime:
        return self._fixed or datetime.now(UTC)

    def timestamp(self) -> float:
        return self._fixed.timestamp() if self._fixed is not None else time.time()

    def set(self, when: datetime) -> None:
        """Freeze the clock at `when` (naive means UTC); SpecError outside EARLIEST..LATEST."""
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        if not EARLIEST <= when <= LATEST:
            raise SpecError(f"the clock must stay between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
        self._fixed = when

    def advance(self, seconds: float) -> None:
        """Move the clock by `seconds` (may be negative); SpecError past EARLIEST..LATEST."""
        now = self.now()
        room = (LATEST - now).total_seconds() if seconds >= 0 else (now - EARLIEST).total_seconds()
        if not math.isfinite(seconds) or abs(seconds) > room:
            raise SpecError(f"the clock must stay between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
        self._fixed = now + timedelta(seconds=seconds)

    def real(self) -> None:
        self._fixed = None

    def describe(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "real": self._fixed is None}


class ControlPlane:
    """Stubs, faults, request log and clock of one server; `run` is what `pipeline.execute` calls."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.stubs = StubSet()
        self.faults = FaultSet(default_seed=state.settings.seed)
        self.log = RequestLog(max_body_bytes=state.settings.max_body_bytes)
        self.clock = ControlClock()

    async def run(self, call: Call, handle: Callable[[Call], Awaitable[Outcome]]) -> tuple[Outcome, bool]:
        """Faults first (latency, injected errors), then a stub or the backend, then stream faults.
        Also says whether the outcome is plain: the backend's own, with no fault or stub involved."""
        entry = describe_call(call.model.name, call.surface.value, call.request_id, stream=call.stream)
        try:
            fired = await self.faults.before(call)
        except CFError:
            if entry is not None:
                entry.faulted = True
            raise
        if entry is not None and fired:
            entry.faulted = True
            entry.fault_ids = [f.id for f in fired]
        stub = self.stubs.find(call)
        if entry is not None:
            entry.source = "stub" if stub is not None else self.state.backend.name
        if stub is not None:
            if entry is not None:
                entry.stubbed, entry.stub_id = True, stub.id
            outcome = stub.take().outcome(call, self.state.settings.seed, self.state.quirks)
        else:
            outcome = await handle(call)
        stream_filter = self.faults.stream_filter(fired)
        if stream_filter is not None:
            STREAM_FILTER.set(stream_filter)  # render.stream_events applies it, whatever the surface
        return outcome, not fired and stub is None

    def untouched(self) -> bool:
        """No stub and no fault is set: every call gets the backend's own answer."""
        return not self.stubs and not self.faults

    def answered_again(self, model: str, surface: str, request_id: str, *, source: str,
                       neurons: float) -> None:
        """A remembered answer was served again: the request log names the call it stands for."""
        describe_call(model, surface, request_id, source=source, neurons=neurons)

    def charged(self, call: Call, neurons: float) -> None:
        entry = CURRENT.get()
        if entry is not None:
            entry.neurons = neurons

    def reset(self, account: str | None = None) -> None:
        """Everything, or only one account's usage, log entries, stubs and faults (the clock is shared)."""
        if account is not None:
            self.state.ledger.reset(account)
            self.log.forget(account)
            self.stubs.forget(account)
            self.faults.forget(account)
            return
        self.state.ledger.reset()
        self.log.clear()
        self.stubs.clear()
        self.faults.clear()
        self.clock.real()


# Where the control routes and the dashboard find the plane of the app they serve.
PLANE: web.AppKey[ControlPlane] = web.AppKey("control_plane", ControlPlane)
