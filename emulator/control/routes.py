"""The control plane's routes under `/__emulator__/`: reset, request log, usage, clock, mode, stubs,
faults, health.

Like moto's `/moto-api/`, they live outside Cloudflare's namespace. `install` puts the server's
`ControlPlane` (emulator/control/plane.py) on the server state, where the pipeline reaches it. With
`serve --workers N`, every route first catches up with what other workers changed
(emulator/control/shared.py), and the request log is every worker's.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from emulator import __version__
from emulator.control.dashboard.views import install as install_dashboard
from emulator.control.faults import FaultSet
from emulator.control.plane import PLANE, ControlPlane, query_day, switch_backend
from emulator.control.request_log import LOG_SIZE
from emulator.control.scope import ACCOUNT_ID, SpecError
from emulator.control.shared import WORKER_GROUP
from emulator.control.stubs import StubSet
from emulator.errors import CFError, ErrorKind
from emulator.limits import edge_error_response, expect_within_limit, is_number_text, read_body
from emulator.server.binding import connection_string
from emulator.server.state import STATE
from emulator.settings import Mode

PREFIX = "/__emulator__"
MODE_FIELDS = frozenset({"mode", "cassette", "cassette_dir", "ignore_fields"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Control routes ---------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _problem(status: int, message: str) -> web.Response:
    return _json({"success": False, "error": message}, status)


def _plane(request: web.Request) -> ControlPlane:
    return request.app[PLANE]


def guarded(handler: Handler) -> Handler:
    """With `--token`, control routes need the same token as a Bearer credential."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        expected = request.app[STATE].settings.token
        if expected is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # surrogateescape: a header that is not UTF-8 arrives with escaped bytes, never a 500.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), expected.encode()
            ):
                return _problem(
                    401, "the control plane needs `Authorization: Bearer <token>` (the server's --token)"
                )
        plane = request.app[PLANE]
        if plane.stale():
            await plane.catch_up()
        try:
            return await handler(request)
        except SpecError as exc:
            return _problem(400, str(exc))
        except web.HTTPRequestEntityTooLarge:  # a chunked body past the limit: the AI routes' 413
            return edge_error_response(CFError(ErrorKind.TOO_LARGE))

    return wrapper


async def _read_json(request: web.Request, *, default: Any = None) -> Any:
    try:
        raw = await read_body(request)
    except CFError as exc:  # a body that cannot be decoded, or one that trickles in too slowly
        raise SpecError(exc.message) from None
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
    plane = request.app.get(PLANE)
    if plane is not None and plane.stale():  # the mode it reports may have been switched elsewhere
        await plane.catch_up()
    answers = state.answers  # this worker's rendered-answer cache (server/answer_cache.py)
    return _json({"status": "ok", "mode": state.settings.mode.value, "version": __version__,
                  "binding_url": connection_string(f"{request.scheme}://{request.host}"),
                  # The loop this server runs on (`serve --event-loop`): "uvloop" or "asyncio".
                  "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],
                  "answer_cache": {"answers": len(answers), "reused": answers.hits}})


async def reset(request: web.Request) -> web.StreamResponse:
    account = request.query.get("account")
    if account is not None and not ACCOUNT_ID.match(account):
        raise SpecError("`account` must be a 32-hex-digit account id")
    _plane(request).reset(account)
    if account is not None:
        await _plane(request).forget_elsewhere(account)
    return _json({"success": True})


async def requests_log(request: web.Request) -> web.StreamResponse:
    q = request.query
    limit = q.get("limit")
    if limit is not None and (not is_number_text(limit) or int(limit) < 1):
        raise SpecError("`limit` must be a positive integer")
    entries = await _plane(request).requests(
        model=q.get("model"),
        surface=q.get("surface"),
        status=q.get("status"),
        account=q.get("account"),
        limit=int(limit) if limit else None,
    )
    return _json({"requests": entries, "count": len(entries)})


async def request_detail(request: web.Request) -> web.StreamResponse:
    text = request.match_info["id"]
    entry = await _plane(request).request(int(text)) if is_number_text(text) else None
    if entry is None:
        return _problem(404, f"no request {text[:40]} in the log (it keeps the last {LOG_SIZE})")
    return _json(entry)


async def worker_log(request: web.Request) -> web.StreamResponse:
    """This worker's own log entries, for a sibling worker merging the group's log (or, with
    `forget`, dropping one account's); answered only on the worker's unix socket (in the group's
    private run directory), never on the port."""
    if not isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str):
        raise web.HTTPNotFound()
    plane = _plane(request)
    if plane.stale():
        await plane.catch_up()
    q = request.query
    if "forget" in q:
        plane.log.forget(q["forget"])
        return _json([])
    if "count" in q:  # `plane.count` of a sibling: one number, not the entries
        return _json([{"count": len(plane.log.select(status=q.get("status")))}])
    if "id" in q:
        entry = plane.log.find(int(q["id"])) if is_number_text(q["id"]) else None
        return _json([] if entry is None else [entry.to_json()])
    limit = q.get("limit", "")
    entries = plane.log.select(model=q.get("model"), surface=q.get("surface"), status=q.get("status"),
                               account=q.get("account"), limit=int(limit) if is_number_text(limit) else None)
    return _json([e.to_json() for e in entries])


async def usage(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    day = query_day(request.query.get("day"), None)
    report = state.ledger.usage(account=request.query.get("account"), day=day)
    return web.Response(text=report.model_dump_json(), content_type="application/json")


async def usage_hourly(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    day = query_day(request.query.get("day"), state.ledger.clock.now().date())
    assert day is not None
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
        now = body["now"]
        try:
            when = datetime.fromisoformat(now.replace("Z", "+00:00")) if isinstance(now, str) else None
        except ValueError:
            when = None
        if when is None:
            raise SpecError(f"`now` must be an ISO 8601 datetime string, not {now!r:.60}")
        try:
            clock.set(when)
        except OverflowError:  # a year-1 or year-9999 time with an offset cannot be moved to UTC
            raise SpecError(f"`now` is out of range: {now!r:.60}") from None
    elif "advance_seconds" in body:
        seconds = body["advance_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise SpecError("`advance_seconds` must be a number")
        try:
            clock.advance(float(seconds))
        except OverflowError:  # an integer too large for a float
            raise SpecError("`advance_seconds` is out of range") from None
    elif body["real"] is True:
        clock.real()
    else:
        raise SpecError("`real` must be true")
    _plane(request).publish_clock()
    return _json(clock.describe())


async def set_mode(request: web.Request) -> web.StreamResponse:
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
        await switch_backend(state, settings)
    # Other modes come from another module; whatever stops it from building is the caller's problem to see.
    except Exception as exc:
        return _problem(409, f"mode {mode.value!r} is not available: {type(exc).__name__}: {exc}")
    _plane(request).publish_mode(settings)
    return _json({
        "mode": mode.value,
        "cassette": settings.cassette,
        "cassette_dir": str(settings.cassette_dir) if settings.cassette_dir else None,
        "ignore_fields": settings.ignore_fields,
    })


def _check_stub_model(request: web.Request, spec: Any) -> None:
    """A stub for an exact model name the catalog does not have would never fire: refuse it, naming
    the closest models (a glob such as `@cf/meta/*` is taken as written)."""
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
        account = request.query.get("account")
        listed = [item for item in items(request).all() if account is None or item.scope.account == account]
        return _json({kind: [item.describe() for item in listed]})

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
    app[PLANE] = plane
    if group is not None:
        app.router.add_get(f"{PREFIX}/worker-log", worker_log)
    state.control = plane  # the pipeline's typed seam (server/state.py `ControlHooks`)
    # The ledger reads "now" through this clock, so POST clock moves the daily reset.
    state.ledger.clock = plane.clock
    state.request_log = plane.log  # the dispatcher records every Cloudflare-namespace request in it
    router = app.router

    def add(method: str, path: str, handler: Handler) -> None:
        # Size first: a body announced past the limit is refused before `100 Continue` is sent.
        router.add_route(method, path, handler, expect_handler=expect_within_limit)

    add("GET", f"{PREFIX}/health", health)
    add("POST", f"{PREFIX}/reset", guarded(reset))
    add("GET", f"{PREFIX}/requests", guarded(requests_log))
    add("GET", f"{PREFIX}/requests/{{id:\\d+}}", guarded(request_detail))
    add("GET", f"{PREFIX}/usage", guarded(usage))
    add("GET", f"{PREFIX}/usage/hourly", guarded(usage_hourly))
    add("GET", f"{PREFIX}/clock", guarded(get_clock))
    add("POST", f"{PREFIX}/clock", guarded(set_clock))
    add("POST", f"{PREFIX}/mode", guarded(set_mode))
    for kind in ("stubs", "faults"):
        add_one, listing, clear, delete_one = _collection(kind)
        add("POST", f"{PREFIX}/{kind}", guarded(add_one))
        add("GET", f"{PREFIX}/{kind}", guarded(listing))
        add("DELETE", f"{PREFIX}/{kind}", guarded(clear))
        add("DELETE", f"{PREFIX}/{kind}/{{key}}", guarded(delete_one))
    install_dashboard(app)
