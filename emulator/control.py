"""The control plane under `/__emulator__/`: reset, request log, usage, clock, mode, stubs, faults, health.

Like moto's `/moto-api/`, it lives outside Cloudflare's namespace. It also owns the request log
(emulator/request_log.py, which the dispatcher records every Cloudflare-namespace request in) and
the hook `pipeline.execute` calls to apply faults and stubs around the backend.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web

from emulator import __version__
from emulator.call import Call, Outcome
from emulator.dashboard import install as install_dashboard
from emulator.errors import CFError
from emulator.faults import FaultSet
from emulator.request_log import CURRENT, LOG_SIZE, RequestLog, describe_call
from emulator.scope import SpecError
from emulator.server.answer_cache import AnswerCache
from emulator.server.render import STREAM_FILTER
from emulator.server.state import STATE, ServerState
from emulator.settings import Mode, Settings
from emulator.shared_control import (
    WORKER_GROUP,
    SharedFaultSet,
    SharedStore,
    SharedStubSet,
)
from emulator.stubs import StubSet
from emulator.worker_group import WorkerGroup

log = logging.getLogger("workers_ai_emulator.control")
PREFIX = "/__emulator__"
EXTENSION = "control"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlClock:
    """The ledger's clock: real time until frozen with `set`, then moved only by `set` / `advance`."""

    def __init__(self) -> None:
        self._fixed: datetime | None = None

    def now(self) -> datetime:
        return self._fixed or datetime.now(UTC)

    def timestamp(self) -> float:
        return self._fixed.timestamp() if self._fixed is not None else time.time()

    def set(self, when: datetime) -> None:
        self._fixed = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        self._fixed = self.now() + timedelta(seconds=seconds)

    def real(self) -> None:
        self._fixed = None

    def describe(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "real": self._fixed is None}


class ControlPlane:
    """Stubs, faults, request log and clock of one server; `run` is what `pipeline.execute` calls.

    With a worker group (`serve --workers N`), stubs, faults, clock and mode live in the group's
    shared file (emulator/shared_control.py): `stale()` says another worker changed them, and
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
                       status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The log's entries as JSON, oldest first: every worker's, merged by id."""
        found = [e.to_json() for e in self.log.select(model=model, surface=surface, status=status,
                                                       limit=limit)]
        if self.group is not None:
            query = {k: str(v) for k, v in (("model", model), ("surface", surface), ("status", status),
                                              ("limit", limit)) if v is not None}
            found += await ask_peers(self.group, query)
            found.sort(key=lambda e: int(e["id"]))
        return found[-limit:] if limit else found

    async def request(self, wanted: int) -> dict[str, Any] | None:
        """One logged request by id, from whichever worker answered it."""
        entry = self.log.find(wanted)
        if entry is not None:
            return entry.to_json()
        if self.group is not None:
            found = await ask_peers(self.group, {"id": str(wanted)})
            return found[0] if found else None
        return None

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
        picked = self.stubs.pick(call)
        if entry is not None:
            entry.source = "stub" if picked is not None else self.state.backend.name
        if picked is not None:
            stub, answer = picked
            if entry is not None:
                entry.stubbed, entry.stub_id = True, stub.id
            outcome = answer.outcome(call, self.state.settings.seed, self.state.quirks)
        else:
            outcome = await handle(call)
        stream_filter = self.faults.stream_filter(fired)
        if stream_filter is not None:
            STREAM_FILTER.set(stream_filter)  # render.stream_events applies it, whatever the surface
        return outcome, not fired and picked is None

    def untouched(self) -> bool:
        """No stub and no fault is set: every call gets the backend's own answer."""
        return not self.stubs and not self.faults

    def charged(self, call: Call, neurons: float) -> None:
        entry = CURRENT.get()
        if entry is not None:
            entry.neurons = neurons

    def reset(self) -> None:
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


# Control routes ---------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    return _json({"success": False, "error": message}, status)


def _plane(request: web.Request) -> ControlPlane:
    plane: ControlPlane = request.app[STATE].extensions[EXTENSION]
    return plane


def guarded(handler: Handler) -> Handler:
    """With `--token`, control routes need the same token as a Bearer credential."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        expected = request.app[STATE].settings.token
        if expected is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()
            ):
                return _problem(
                    401, "the control plane needs `Authorization: Bearer <token>` (the server's --token)"
                )
        plane = request.app[STATE].extensions.get(EXTENSION)
        if plane is not None and plane.stale():
            await plane.catch_up()
        try:
            return await handler(request)
        except SpecError as exc:
            return _problem(400, str(exc))

    return wrapper


async def _read_json(request: web.Request, *, default: Any = None) -> Any:
    raw = await request.read()
    if not raw.strip():
        if default is not None:
            return default
        raise SpecError("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"the body is not valid JSON ({exc})") from None


async def health(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    plane = state.extensions.get(EXTENSION)
    if plane is not None and plane.stale():  # the mode it reports may have been switched elsewhere
        await plane.catch_up()
    answers = state.answers  # this worker's rendered-answer cache (server/answer_cache.py)
    return _json({"status": "ok", "mode": state.settings.mode.value, "version": __version__,
                  "answer_cache": {"answers": len(answers), "reused": answers.hits}})


async def reset(request: web.Request) -> web.StreamResponse:
    _plane(request).reset()
    return _json({"success": True})


async def requests_log(request: web.Request) -> web.StreamResponse:
    q = request.query
    limit = q.get("limit")
    if limit is not None and (not limit.isdigit() or int(limit) < 1):
        raise SpecError("`limit` must be a positive integer")
    entries = await _plane(request).requests(
        model=q.get("model"),
        surface=q.get("surface"),
        status=q.get("status"),
        limit=int(limit) if limit else None,
    )
    return _json({"requests": entries, "count": len(entries)})


async def request_detail(request: web.Request) -> web.StreamResponse:
    wanted = int(request.match_info["id"])
    entry = await _plane(request).request(wanted)
    if entry is None:
        return _problem(404, f"no request {wanted} in the log (it keeps the last {LOG_SIZE})")
    return _json(entry)


async def worker_log(request: web.Request) -> web.StreamResponse:
    """This worker's own log entries, for a sibling worker merging the group's log; answered only
    on the worker's unix socket (in the group's private run directory), never on the port."""
    if not isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str):
        raise web.HTTPNotFound()
    plane = _plane(request)
    if plane.stale():
        await plane.catch_up()
    q = request.query
    if "id" in q:
        entry = plane.log.find(int(q["id"]))
        return _json([] if entry is None else [entry.to_json()])
    entries = plane.log.select(model=q.get("model"), surface=q.get("surface"), status=q.get("status"),
                               limit=int(q["limit"]) if "limit" in q else None)
    return _json([e.to_json() for e in entries])


async def ask_peers(group: WorkerGroup, query: dict[str, str]) -> list[dict[str, Any]]:
    """What every other worker of the group answers to `worker_log` (a worker that is gone adds nothing)."""
    async def ask(path: str) -> list[dict[str, Any]]:
        try:
            async with (ClientSession(connector=UnixConnector(path=path)) as session,
                        session.get(f"http://worker{PREFIX}/worker-log", params=query,
                                    timeout=ClientTimeout(total=30)) as resp):
                found: list[dict[str, Any]] = orjson.loads(await resp.read()) if resp.status == 200 else []
                return found
        except (OSError, ClientError, TimeoutError):
            return []

    answers = await asyncio.gather(*(ask(str(path)) for path in group.peer_sockets()))
    return [entry for found in answers for entry in found]


async def usage(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    day_text = request.query.get("day")
    try:
        day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        raise SpecError(f"`day` must be a date like 2026-01-31, not {day_text!r}") from None
    report = state.ledger.usage(account=request.query.get("account"), day=day)
    return web.Response(text=report.model_dump_json(), content_type="application/json")


async def usage_hourly(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    day_text = request.query.get("day")
    try:
        day = date.fromisoformat(day_text) if day_text else state.ledger.clock.now().date()
    except ValueError:
        raise SpecError(f"`day` must be a date like 2026-01-31, not {day_text!r}") from None
    hours = state.ledger.hourly(account=request.query.get("account"), day=day)
    return _json({"day": day.isoformat(), "hours": [{"hour": h, "neurons": n} for h, n in hours]})


async def get_clock(request: web.Request) -> web.StreamResponse:
    return _json(_plane(request).clock.describe())


async def set_clock(request: web.Request) -> web.StreamResponse:
    body = await _read_json(request)
    clock = _plane(request).clock
    if (
        not isinstance(body, dict)
        or len(set(body) & {"now", "advance_seconds", "real"}) != 1
        or len(body) != 1
    ):
        raise SpecError('send exactly one of {"now": iso-datetime}, {"advance_seconds": n}, {"real": true}')
    if "now" in body:
        try:
            clock.set(datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00")))
        except ValueError:
            raise SpecError(f"`now` must be an ISO 8601 datetime, not {body['now']!r}") from None
    elif "advance_seconds" in body:
        seconds = body["advance_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise SpecError("`advance_seconds` must be a number")
        clock.advance(float(seconds))
    elif body["real"] is True:
        clock.real()
    else:
        raise SpecError("`real` must be true")
    _plane(request).publish_clock()
    return _json(clock.describe())


async def switch_backend(state: ServerState, settings: Settings) -> None:
    """Serve with `settings`' mode from now on (raises whatever stops its backend from building)."""
    from emulator.server.app import make_backend

    backend = make_backend(settings)
    old, state.backend, state.settings = state.backend, backend, settings
    state.answers = AnswerCache()  # the answers kept were the old backend's
    await old.close()


async def set_mode(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _read_json(request)
    if not isinstance(body, dict) or "mode" not in body or set(body) - {"mode", "cassette"}:
        raise SpecError(
            'send {"mode": "mock"|"replay"|"record"|"passthrough"|"replay-or-record"} '
            'and optionally "cassette"'
        )
    try:
        mode = Mode(body["mode"])
    except ValueError:
        raise SpecError(f"unknown mode {body['mode']!r}; one of {[m.value for m in Mode]}") from None
    update: dict[str, Any] = {"mode": mode}
    if "cassette" in body:
        if not isinstance(body["cassette"], str) or not body["cassette"]:
            raise SpecError("`cassette` must be a non-empty name")
        update["cassette"] = body["cassette"]
    settings = state.settings.model_copy(update=update)
    try:
        await switch_backend(state, settings)
    # Other modes come from another module; whatever stops it from building is the caller's problem to see.
    except Exception as exc:
        return _problem(409, f"mode {mode.value!r} is not available: {type(exc).__name__}: {exc}")
    _plane(request).publish_mode(settings)
    return _json({"mode": mode.value, "cassette": settings.cassette})


def _collection(kind: str) -> tuple[Handler, Handler, Handler, Handler]:
    def items(request: web.Request) -> StubSet | FaultSet:
        plane = _plane(request)
        return plane.stubs if kind == "stubs" else plane.faults

    async def add(request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        specs = body if isinstance(body, list) else [body]
        target = items(request)
        created: list[dict[str, Any]] = []
        try:
            for spec in specs:
                created.append(target.add(spec).describe())
        except SpecError:
            for done in created:  # all or nothing: a list with one bad entry adds none
                target.remove(done["id"])
            raise
        return _json(created if isinstance(body, list) else created[0], 201)

    async def listing(request: web.Request) -> web.StreamResponse:
        return _json({kind: [item.describe() for item in items(request).list()]})

    async def clear(request: web.Request) -> web.StreamResponse:
        items(request).clear()
        return _json({"success": True})

    async def delete_one(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if not items(request).remove(key):
            return _problem(404, f"no {kind[:-1]} with id or name {key!r}")
        return _json({"success": True})

    return add, listing, clear, delete_one


def install(app: web.Application) -> None:
    """Add the control routes and the request log, unless the control plane is disabled."""
    state = app[STATE]
    if not state.settings.control_plane:
        return
    group = app.get(WORKER_GROUP)
    plane = ControlPlane(state, group)
    state.extensions[EXTENSION] = plane
    if group is not None:
        app.router.add_get(f"{PREFIX}/worker-log", worker_log)
    # The ledger reads "now" through this clock, so POST clock moves the daily reset.
    state.ledger.clock = plane.clock
    state.request_log = plane.log  # the dispatcher records every Cloudflare-namespace request in it
    router = app.router
    router.add_get(f"{PREFIX}/health", health)
    router.add_post(f"{PREFIX}/reset", guarded(reset))
    router.add_get(f"{PREFIX}/requests", guarded(requests_log))
    router.add_get(f"{PREFIX}/requests/{{id:\\d+}}", guarded(request_detail))
    router.add_get(f"{PREFIX}/usage", guarded(usage))
    router.add_get(f"{PREFIX}/usage/hourly", guarded(usage_hourly))
    router.add_get(f"{PREFIX}/clock", guarded(get_clock))
    router.add_post(f"{PREFIX}/clock", guarded(set_clock))
    router.add_post(f"{PREFIX}/mode", guarded(set_mode))
    for kind in ("stubs", "faults"):
        add, listing, clear, delete_one = _collection(kind)
        router.add_post(f"{PREFIX}/{kind}", guarded(add))
        router.add_get(f"{PREFIX}/{kind}", guarded(listing))
        router.add_delete(f"{PREFIX}/{kind}", guarded(clear))
        router.add_delete(f"{PREFIX}/{kind}/{{key}}", guarded(delete_one))
    install_dashboard(app)
