"""The control plane under `/__emulator__/`: reset, request log, usage, clock, mode, stubs, faults, health.

Like moto's `/moto-api/`, it lives outside Cloudflare's namespace. It also owns the request log
(a middleware around every Cloudflare-namespace request) and the hook `pipeline.execute` calls
to apply faults and stubs around the backend.
"""

from __future__ import annotations

import hmac
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from emulator import __version__, limits
from emulator.call import Call, Outcome
from emulator.dashboard import install as install_dashboard
from emulator.dashboard.summary import complete, summarize_response
from emulator.errors import CFError
from emulator.faults import FaultSet, StreamCut
from emulator.scope import SpecError
from emulator.server.paths import Kind
from emulator.server.render import STREAM_FILTER
from emulator.server.state import ROUTE, STATE, ServerState
from emulator.settings import Mode
from emulator.stubs import StubSet

PREFIX = "/__emulator__"
LOG_SIZE = 5000
BODY_LOG_LIMIT = 64 * 1024  # larger JSON bodies are logged as a size/type summary
EXTENSION = "control"
SURFACE_BY_KIND = {
    Kind.RUN: "native",
    Kind.CHAT: "chat",
    Kind.EMBEDDINGS: "embeddings",
    Kind.RESPONSES: "responses",
    Kind.COMPAT_CHAT: "compat_chat",
    Kind.COMPAT_EMBEDDINGS: "embeddings",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlClock:
    """The ledger's clock: real time until frozen with `set`, then moved only by `set` / `advance`."""

    def __init__(self) -> None:
        self._fixed: datetime | None = None

    def now(self) -> datetime:
        return self._fixed or datetime.now(UTC)

    def set(self, when: datetime) -> None:
        self._fixed = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        self._fixed = self.now() + timedelta(seconds=seconds)

    def real(self) -> None:
        self._fixed = None

    def describe(self) -> dict[str, Any]:
        return {"now": self.now().isoformat(), "real": self._fixed is None}


@dataclass(slots=True)
class LogEntry:
    id: int
    time: str
    method: str
    path: str
    surface: str | None = None
    model: str | None = None
    request_id: str | None = None
    body: Any = None
    status: int = 0
    error_code: int | None = None
    neurons: float = 0.0
    latency_ms: float = 0.0
    stream: bool = False
    stubbed: bool = False
    faulted: bool = False
    cut: bool = False  # the connection was dropped mid-answer (cut_stream fault or client gone)
    stub_id: str | None = None
    fault_ids: list[str] = field(default_factory=list)
    source: str | None = None  # "stub" or the backend's mode (mock, replay, record, …)
    response: dict[str, Any] | None = None  # dashboard.summary: text, errors, thumbnail, audio length
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "surface": self.surface,
            "model": self.model,
            "request_id": self.request_id,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "neurons": self.neurons,
            "latency_ms": round(self.latency_ms, 3),
            "stream": self.stream,
            "stubbed": self.stubbed,
            "faulted": self.faulted,
            "cut": self.cut,
            "stub_id": self.stub_id,
            "fault_ids": self.fault_ids,
            "source": self.source,
            "response": complete(self.response),
        }


_CURRENT: ContextVar[LogEntry | None] = ContextVar("emulator_log_entry", default=None)


class ControlPlane:
    """Stubs, faults, request log and clock of one server; `run` is what `pipeline.execute` calls."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.stubs = StubSet()
        self.faults = FaultSet(default_seed=state.settings.seed)
        self.log: deque[LogEntry] = deque(maxlen=LOG_SIZE)
        self.clock = ControlClock()
        self._ids = itertools.count(1)

    async def run(self, call: Call, handle: Callable[[Call], Awaitable[Outcome]]) -> Outcome:
        """Faults first (latency, injected errors), then a stub or the backend, then stream faults."""
        entry = _CURRENT.get()
        if entry is not None:
            entry.model, entry.surface, entry.stream = call.model.name, call.surface.value, call.stream
            entry.request_id = call.request_id
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
        return outcome

    def charged(self, call: Call, neurons: float) -> None:
        entry = _CURRENT.get()
        if entry is not None:
            entry.neurons = neurons

    def reset(self) -> None:
        self.state.ledger.reset()
        self.log.clear()
        self.stubs.clear()
        self.faults.clear()
        self.clock.real()

    # The request log -------------------------------------------------------------------------

    def begin(self, request: web.Request) -> LogEntry:
        return LogEntry(
            id=next(self._ids),
            time=datetime.now(UTC).isoformat(),
            method=request.method,
            path=request.path,
            started=time.perf_counter(),
        )

    def entries(
        self,
        *,
        model: str | None = None,
        surface: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        import fnmatch

        out = []
        for entry in self.log:
            if model is not None and not (
                entry.model == model or fnmatch.fnmatchcase(entry.model or "", model)
            ):
                continue
            if surface is not None and entry.surface != surface:
                continue
            if status is not None and not _status_matches(entry.status, status):
                continue
            out.append(entry)
        return out[-limit:] if limit else out


def _status_matches(actual: int, wanted: str) -> bool:
    """`200`, `4xx`, `error` (>= 400) or `ok` (< 400)."""
    if wanted == "error":
        return actual >= 400
    if wanted == "ok":
        return 0 < actual < 400
    if len(wanted) == 3 and wanted.endswith("xx") and wanted[0].isdigit():
        return actual // 100 == int(wanted[0])
    return str(actual) == wanted


async def _body_summary(request: web.Request, max_bytes: int) -> Any:
    if request.content_length is not None and request.content_length > max_bytes:
        return {"content_type": request.content_type, "bytes": request.content_length}
    try:
        # Bounded like the handlers' own read: a trickling client must not hold the answer back.
        raw = await limits.read_body(request)
    except (web.HTTPException, ConnectionError, ValueError, CFError):
        return {"content_type": request.content_type, "bytes": request.content_length}
    if not raw:
        return None
    if raw[:1] in (b"{", b"[") and len(raw) <= BODY_LOG_LIMIT:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return {"content_type": request.content_type or "application/octet-stream", "bytes": len(raw)}


def _error_code(response: web.StreamResponse) -> int | None:
    if (
        response.status < 400
        or not isinstance(response, web.Response)
        or not isinstance(response.body, bytes)
    ):
        return None
    try:
        body = orjson.loads(response.body)
        errors = body.get("errors") or body.get("error")
        first = errors[0] if isinstance(errors, list) else errors
        code = first.get("code") if isinstance(first, dict) else None
        return code if isinstance(code, int) else None
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return None


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: sees the final status of every Cloudflare-namespace request."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        return await handler(request)
    state = request.app[STATE]
    plane: ControlPlane = state.extensions[EXTENSION]
    entry = plane.begin(request)
    token = _CURRENT.set(entry)
    try:
        response = await handler(request)
        entry.status, entry.error_code = response.status, _error_code(response)
        entry.response = summarize_response(response)
        return response
    except StreamCut:
        entry.status, entry.cut = 200, True
        # Close after flushing the events already written: the client sees a body without its last
        # chunk. The empty response lets aiohttp give up quietly instead of logging a traceback.
        if request.transport is not None:
            request.transport.close()
        return web.StreamResponse()
    except ConnectionResetError:
        entry.status, entry.cut = entry.status or 499, True
        raise
    except web.HTTPException as exc:
        entry.status = exc.status
        raise
    finally:
        _CURRENT.reset(token)
        entry.latency_ms = (time.perf_counter() - entry.started) * 1000
        _finish_route(request, entry)
        entry.body = await _body_summary(request, state.settings.max_body_bytes)
        plane.log.append(entry)


def _finish_route(request: web.Request, entry: LogEntry) -> None:
    route = request.get(ROUTE)
    if route is None:
        return
    if entry.surface is None:
        entry.surface = SURFACE_BY_KIND.get(route.kind, route.kind.value)
    if entry.model is None:
        entry.model = route.model


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
    return _json({"status": "ok", "mode": state.settings.mode.value, "version": __version__})


async def reset(request: web.Request) -> web.StreamResponse:
    _plane(request).reset()
    return _json({"success": True})


async def requests_log(request: web.Request) -> web.StreamResponse:
    q = request.query
    limit = q.get("limit")
    if limit is not None and (not limit.isdigit() or int(limit) < 1):
        raise SpecError("`limit` must be a positive integer")
    entries = _plane(request).entries(
        model=q.get("model"),
        surface=q.get("surface"),
        status=q.get("status"),
        limit=int(limit) if limit else None,
    )
    return _json({"requests": [e.to_json() for e in entries], "count": len(entries)})


async def request_detail(request: web.Request) -> web.StreamResponse:
    wanted = int(request.match_info["id"])
    entry = next((e for e in _plane(request).log if e.id == wanted), None)
    if entry is None:
        return _problem(404, f"no request {wanted} in the log (it keeps the last {LOG_SIZE})")
    return _json(entry.to_json())


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
    return _json(clock.describe())


async def set_mode(request: web.Request) -> web.StreamResponse:
    from emulator.server.app import make_backend

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
        backend = make_backend(settings)
    # Other modes come from another module; whatever stops it from building is the caller's problem to see.
    except Exception as exc:
        return _problem(409, f"mode {mode.value!r} is not available: {type(exc).__name__}: {exc}")
    old, state.backend, state.settings = state.backend, backend, settings
    await old.close()
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
    plane = ControlPlane(state)
    state.extensions[EXTENSION] = plane
    # The ledger reads "now" through this clock, so POST clock moves the daily reset.
    state.ledger.clock = plane.clock
    # Outermost, so it records the status the error middleware finally answered with.
    app.middlewares.insert(0, request_log)
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
