"""The control plane of one server: stubs, faults, request log and clock, and the hooks the pipeline
calls around each model call (`ControlHooks` in emulator/server/state.py)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from emulator.backends.factory import backend_for
from emulator.call import Call, CallReport, Outcome
from emulator.control.faults import CUT_STREAM, SLOW_STREAM, FaultSet
from emulator.control.request_log import RequestLog
from emulator.control.scope import SpecError
from emulator.control.shared import SharedFaultSet, SharedStore, SharedStubSet, ask_peers
from emulator.control.stubs import StubSet
from emulator.errors import CFError
from emulator.server.answer_cache import AnswerCache
from emulator.server.inputs import parse_json_body
from emulator.server.state import Controlled, ServerState, SessionFaults
from emulator.server.worker_group import WorkerGroup
from emulator.settings import Mode, Settings

log = logging.getLogger("workers_ai_emulator.control")

# The clock and `day` parameters stay inside these bounds: the ledger works with the day after "today"
# (its reset time), which Python's dates cannot represent past 9999-12-31.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


def query_day(text: str | None, default: date | None) -> date | None:
    """A `day` query parameter: an ISO date inside the clock's range (SpecError otherwise)."""
    if not text:
        return default
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise SpecError(f"`day` must be a date like 2026-01-31, not {text[:40]!r}") from None
    if not EARLIEST.date() <= day <= LATEST.date():
        raise SpecError(f"`day` must be between {EARLIEST.date()} and {LATEST.date()}")
    return day


class ControlClock:
    """The ledger's clock: real time until frozen with `set`, then moved only by `set` / `advance`."""

    def __init__(self) -> None:
        self._fixed: datetime | None = None

    def now(self) -> datetime:
        return self._fixed or datetime.now(UTC)

    def timestamp(self) -> float:
        return self._fixed.timestamp() if self._fixed is not None else time.time()

    @property
    def frozen(self) -> bool:
        return self._fixed is not None

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


async def switch_backend(state: ServerState, settings: Settings) -> None:
    """Serve with `settings`' mode from now on (raises whatever stops its backend from building)."""
    backend = backend_for(settings, parse_json=parse_json_body)
    old, state.backend, state.settings = state.backend, backend, settings
    state.answers = AnswerCache()  # the answers kept were the old backend's
    await old.close()


class ControlPlane:
    """Stubs, faults, request log and clock of one server; `run` is what `pipeline.execute` calls.

    With a worker group (`serve --workers N`), stubs, faults, clock and mode live in the group's
    shared file (emulator/control/shared.py): `stale()` says another worker changed them, and
    `catch_up()` loads the change before the call goes on."""

    def __init__(self, state: ServerState, group: WorkerGroup | None = None) -> None:
        self.state = state
        self.group = group
        self.store = SharedStore(group) if group is not None else None
        self.stubs: StubSet = StubSet()
        self.faults: FaultSet = FaultSet(default_seed=state.settings.seed)
        self.log = RequestLog(max_body_bytes=state.settings.max_body_bytes,
                              next_id=group.next_log_id if group is not None else None,
                              worker=group.index if group is not None else None)
        self.clock = ControlClock()
        self._seen = -1
        self._generation = group.generation if group is not None else None
        self._epochs: dict[str, str] = {}
        self._shared: tuple[SharedStubSet, SharedFaultSet] | None = None
        if self.store is not None:
            self._shared = (SharedStubSet(self.store), SharedFaultSet(self.store, state.settings.seed))
            self.stubs, self.faults = self._shared

    def stale(self) -> bool:
        """Another worker changed the shared state since this one last loaded it (one shared read)."""
        return self._generation is not None and self._generation.value != self._seen

    async def catch_up(self) -> None:
        """Load the group's stubs, faults, clock and mode; clear this worker's log and day totals
        after another worker's reset."""
        assert self.store is not None and self._shared is not None
        self._seen = self.store.generation()  # first: a change committed while loading moves it again
        snapshot = self.store.load()
        stubs, faults = self._shared
        stubs.load(snapshot.stubs)
        faults.load(snapshot.faults)
        meta = snapshot.meta
        fixed = meta.get("clock")
        if fixed:
            self.clock.set(datetime.fromisoformat(fixed))
        else:
            self.clock.real()
        for key, forget in (("log_epoch", self.log.clear), ("reset_epoch", self.state.ledger.forget_totals)):
            value = meta.get(key, "0")
            if self._epochs.setdefault(key, value) != value:
                self._epochs[key] = value
                forget()
        settings = self.state.settings
        mode, cassette = meta.get("mode"), meta.get("cassette", "")
        if mode is not None and (mode, cassette) != (settings.mode.value, settings.cassette or ""):
            update: dict[str, Any] = {"mode": Mode(mode), "cassette": cassette or settings.cassette}
            try:
                await switch_backend(self.state, settings.model_copy(update=update))
            # The worker that took the switch built this backend; one that cannot keeps serving its own.
            except Exception:
                log.exception("this worker cannot switch to mode %r", mode)

    def publish_clock(self) -> None:
        if self.store is not None:
            fixed = self.clock._fixed
            self.store.set_meta({"clock": fixed.isoformat() if fixed is not None else None})

    def publish_mode(self, settings: Settings) -> None:
        if self.store is not None:
            self.store.set_meta({"mode": settings.mode.value, "cassette": settings.cassette or ""})

    async def requests(self, *, model: str | None = None, surface: str | None = None,
                       status: str | None = None, account: str | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
        """The log's entries as JSON, oldest first: every worker's, merged by id."""
        found = [e.to_json() for e in self.log.select(model=model, surface=surface, status=status,
                                                       account=account, limit=limit)]
        if self.group is not None:
            query = {k: str(v) for k, v in (("model", model), ("surface", surface), ("status", status),
                                              ("account", account), ("limit", limit)) if v is not None}
            found += await ask_peers(self.group, query)
            found.sort(key=lambda e: int(e["id"]))
        return found[-limit:] if limit else found

    async def count(self, *, status: str | None = None) -> int:
        """How many entries `requests` would list without a limit, every worker's."""
        total = len(self.log.select(status=status))
        if self.group is not None:
            query = {"count": "1", **({"status": status} if status is not None else {})}
            total += sum(int(found["count"]) for found in await ask_peers(self.group, query))
        return total

    async def forget_elsewhere(self, account: str) -> None:
        """The other workers of the group drop one account's log entries too."""
        if self.group is not None:
            await ask_peers(self.group, {"forget": account})

    async def request(self, wanted: int) -> dict[str, Any] | None:
        """One logged request by id, from whichever worker answered it."""
        entry = self.log.find(wanted)
        if entry is not None:
            return entry.to_json()
        if self.group is not None:
            found = await ask_peers(self.group, {"id": str(wanted)})
            return found[0] if found else None
        return None

    async def run(self, call: Call, handle: Callable[[Call], Awaitable[Outcome]]) -> Controlled:
        """Faults first (latency, injected errors), then a stub or the backend; the stream faults
        that fired come back as a filter for whatever events the surface writes."""
        try:
            fired = await self.faults.before(call)
        except CFError as error:
            error.call = CallReport.of(call, faulted=True)
            raise
        picked = self.stubs.pick(call)
        report = CallReport.of(call, source="stub" if picked is not None else self.state.backend.name,
                               stub_id=picked[0].id if picked is not None else None,
                               fault_ids=tuple(f.id for f in fired), faulted=bool(fired))
        try:
            if picked is not None:
                outcome = picked[1].outcome(call, self.state.settings.seed, self.state.quirks)
            else:
                outcome = await handle(call)
        except CFError as error:
            error.call = report
            raise
        return Controlled(outcome, report, self.faults.stream_filter(fired))

    def untouched(self) -> bool:
        """No stub and no fault is set: every call gets the backend's own answer."""
        return not self.stubs and not self.faults

    async def open_session(self, call: Call) -> tuple[SessionFaults, CallReport]:
        source = self.state.backend.name
        try:
            fired = await self.faults.before(call)  # an error fault refuses the WebSocket upgrade
        except CFError as error:
            error.call = CallReport.of(call, source=source, faulted=True)
            raise
        faults = SessionFaults(
            delay=sum(f.delay_ms for f in fired if f.kind == SLOW_STREAM) / 1000,
            cut_after=min((f.after_events for f in fired if f.kind == CUT_STREAM), default=None),
        )
        return faults, CallReport.of(call, source=source, fault_ids=tuple(f.id for f in fired),
                                     faulted=bool(fired))

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
        if self.store is not None:
            with self.store.transaction() as conn:
                self.store.set_meta({"clock": None}, conn)
                for key in ("log_epoch", "reset_epoch"):  # other workers clear their log and totals
                    self._epochs[key] = self.store.bump(conn, key)


# Where the control routes and the dashboard find the plane of the app they serve.
PLANE: web.AppKey[ControlPlane] = web.AppKey("control_plane", ControlPlane)
