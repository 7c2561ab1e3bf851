"""The control plane under `/__emulator__/`: reset, request log, usage, clock, mode, stubs, faults, health.

Like moto's `/moto-api/`, it lives outside Cloudflare's namespace. It also owns the request log
(emulator/request_log.py, which the dispatcher records every Cloudflare-namespace request in) and
the hook `pipeline.execute` calls to apply faults and stubs around the backend.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

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
from emulator.settings import Mode
from emulator.stubs import StubSet

PREFIX = "/__emulator__"
MODE_FIELDS = frozenset({"mode", "cassette", "cassette_dir", "ignore_fields"})
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
    entries = _plane(request).log.select(
        model=q.get("model"),
        surface=q.get("surface"),
        status=q.get("status"),
        limit=int(limit) if limit else None,
    )
    return _json({"requests": [e.to_json() for e in entries], "count": len(entries)})


async def request_detail(request: web.Request) -> web.StreamResponse:
    wanted = int(request.match_info["id"])
    entry = _plane(request).log.find(wanted)
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
    if not isinstance(body, dict) or "mode" not in body or set(body) - MODE_FIELDS:
        raise SpecError(
            'send {"mode": "mock"|"replay"|"record"|"passthrough"|"replay-or-record"} '
            'and optionally "cassette", "cassette_dir" and "ignore_fields"'
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
    if "cassette_dir" in body:
        # The pytest plugin keeps each test module's cassettes beside it: one directory per module.
        if not isinstance(body["cassette_dir"], str) or not Path(body["cassette_dir"]).is_absolute():
            raise SpecError("`cassette_dir` must be an absolute directory path")
        update["cassette_dir"] = Path(body["cassette_dir"])
    if "ignore_fields" in body:
        fields = body["ignore_fields"]
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise SpecError("`ignore_fields` must be a list of field names")
        update["ignore_fields"] = fields
    settings = state.settings.model_copy(update=update)
    try:
        backend = make_backend(settings)
    # Other modes come from another module; whatever stops it from building is the caller's problem to see.
    except Exception as exc:
        return _problem(409, f"mode {mode.value!r} is not available: {type(exc).__name__}: {exc}")
    old, state.backend, state.settings = state.backend, backend, settings
    state.answers = AnswerCache()  # the answers kept were the old backend's
    await old.close()
    return _json({
        "mode": mode.value,
        "cassette": settings.cassette,
        "cassette_dir": str(settings.cassette_dir) if settings.cassette_dir else None,
        "ignore_fields": settings.ignore_fields,
    })


def _check_stub_model(request: web.Request, spec: Any) -> None:
    """A stub for an exact model name the catalog does not have would never fire: refuse it, naming
    the closest models (a glob such as `@cf/meta/*` is taken as written)."""
    import difflib

    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, str) or any(ch in model for ch in "*?["):
        return
    catalog = request.app[STATE].catalog
    if catalog.get(model) is not None:
        return
    close = difflib.get_close_matches(model, [m.name for m in catalog], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (a glob like @cf/meta/* matches many)"
    raise SpecError(f"no model {model!r} in the catalog, so this stub would never answer{hint}")


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
                if kind == "stubs":
                    _check_stub_model(request, spec)
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
