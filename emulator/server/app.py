"""The app factory: shared state, and the one route every Cloudflare-namespace request takes."""

from __future__ import annotations

import logging

from aiohttp import web

from emulator.accounting.ledger import Ledger, Plan
from emulator.accounting.pricing import load_prices
from emulator.backends.factory import backend_for
from emulator.catalog.overlay import OVERLAY_FILE, LiveCatalog, parse_extra_model
from emulator.control.routes import guarded
from emulator.control.routes import install as install_control
from emulator.control.shared import WORKER_GROUP
from emulator.errors import CFError, ErrorKind
from emulator.limits import expect_within_limit, read_body, send_continue
from emulator.quirks import enabled
from emulator.server import binding, edge, gateway, native, relay
from emulator.server.answer_cache import MAX_ENTRY_BYTES, AnswerCache, request_key
from emulator.server.edge import check_auth, check_size
from emulator.server.inputs import parse_json_body
from emulator.server.openapi import install as install_openapi
from emulator.server.paths import Kind, Route
from emulator.server.pipeline import EXECUTED, answer_again, untouched
from emulator.server.render import error_response, new_request_id
from emulator.server.router import WEBSOCKET, parse
from emulator.server.routes import CACHEABLE_KINDS, HANDLERS, OPENAI_ERROR_KINDS, Handler
from emulator.server.state import REQUEST_ID, ROUTE, STATE, ServerState
from emulator.server.worker_group import WorkerGroup
from emulator.settings import Settings
from emulator.tasks import load_all as load_fakes

log = logging.getLogger("workers_ai_emulator")
# Routes that stream their body to disk under their own size limit instead of the server-wide one.
OWN_BODY_LIMIT = frozenset({Kind.FINETUNE_ASSETS})


def make_ledger(settings: Settings) -> Ledger:
    path = settings.ledger_path or str(settings.resolved_data_dir() / "ledger.sqlite3")
    ledger = Ledger(
        path,
        plan=Plan(settings.plan),
        daily_neurons=settings.daily_neurons,
        rate_limits=settings.rate_limits,
        prices=load_prices(),
        durable=settings.durable_ledger,
        background_checkpoints=True,
    )
    ledger.record_settings()  # `workers-ai-emulator usage` reads the plan back from the file
    return ledger


def make_catalog(settings: Settings) -> LiveCatalog:
    overlay = settings.catalog_overlay or settings.resolved_data_dir() / OVERLAY_FILE
    return LiveCatalog(overlay, [parse_extra_model(spec) for spec in settings.extra_models])


def build_state(settings: Settings) -> ServerState:
    # Every task module registers its fake now, before the server listens: ~0.1 s of imports the
    # first model call would otherwise spend holding the event loop.
    load_fakes()
    return ServerState(
        settings=settings,
        catalog=make_catalog(settings),
        backend=backend_for(settings, parse_json=parse_json_body),
        ledger=make_ledger(settings),
        prices=load_prices(),
        answers=AnswerCache(),
    )


async def dispatch(request: web.Request) -> web.StreamResponse:
    """The handler of every path outside the control plane: logged, and never a stack trace.

    No aiohttp middleware: each costs a wrapper per request, and this one route is where all the
    Cloudflare-namespace requests go anyway."""
    state = request.app[STATE]
    if state.request_log is None:
        return await answer(request)
    control = state.control
    if control is not None and control.stale():  # another worker of `serve --workers N` changed
        await control.catch_up()  # stubs, faults, the clock or the mode
    return await state.request_log.record(request, answer)


async def answer(request: web.Request) -> web.StreamResponse:
    """Every failure leaves as a Cloudflare-shaped body with a 4xx/5xx status."""
    try:
        return await route_request(request)
    except CFError as error:
        return _error(request, error)
    except web.HTTPRequestEntityTooLarge:
        return _error(request, CFError(ErrorKind.TOO_LARGE))
    except web.HTTPException:
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except RecursionError:
        # Input nested deeper than any code path can walk: the client's fault, not a server error.
        return _error(request, CFError(ErrorKind.BAD_INPUT, detail="Error: input is nested too deeply"))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(request, CFError(ErrorKind.SERVER_ERROR))


async def route_request(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    method = WEBSOCKET if _is_websocket(request) else request.method
    route = parse(method, request.raw_path, allow_double_slash=enabled(state.quirks, "double-slash-path"))
    request[ROUTE] = route
    if route.kind not in OWN_BODY_LIMIT:
        check_size(request, state.settings)
    check_auth(request, state.settings)
    handler = HANDLERS.get(route.kind)
    if handler is None:
        raise CFError(ErrorKind.NO_ROUTE)
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    if relay.forwards(state, route):  # replay/record/passthrough: catalog and GraphQL go to the real API
        return await relay.forward_request(request, route, state)
    if route.kind in CACHEABLE_KINDS:
        return await through_answer_cache(request, route, state, handler, request_id)
    return await handler(request, route, state, request_id)


async def through_answer_cache(request: web.Request, route: Route, state: ServerState, handler: Handler,
                               request_id: str) -> web.StreamResponse:
    """The answer cache (server/answer_cache.py) as a stage around a cacheable route's handler: a
    request answered before is answered again without it; a fresh answer is kept when the model call
    it carries back (pipeline.answered) was the backend's own and repeatable."""
    # Only a body already received in full: a trickling one is read (with its timeout) by the handler.
    if not request.content.is_eof() or not untouched(state):
        return await handler(request, route, state, request_id)
    token = state.backend.answer_token()
    if token is None:
        return await handler(request, route, state, request_id)
    raw = await read_body(request)
    if len(raw) > MAX_ENTRY_BYTES:
        # Never kept (an entry holds its request body too), so never looked up: `hash()` of 20 MB
        # would hold the loop 10-16 ms for nothing.
        return await handler(request, route, state, request_id)
    key = request_key(request, raw)
    cached = state.answers.get(key, token)
    if cached is not None:
        return await answer_again(state, route.account_id, cached, request_id)
    response = await handler(request, route, state, request_id)
    executed = response.get(EXECUTED)
    if executed is not None and executed.plain and executed.outcome.repeatable:
        call = executed.call
        state.answers.remember(key, response, model=call.model, surface=call.surface.value,
                               neurons=executed.neurons, estimated=executed.estimated, token=token,
                               fresh_id=not executed.outcome.rendered,
                               stamped=not executed.outcome.rendered and native.stamped(call.model))
    return response


def _own_body_limit(request: web.Request) -> bool:
    try:
        return parse(request.method, request.raw_path).kind in OWN_BODY_LIMIT
    except CFError:
        return False


def _is_websocket(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` on the Cloudflare namespace: the size check of `limits.expect_within_limit`,
    except on routes with their own body limit (fine-tune assets), which are invited as they are."""
    if _own_body_limit(request):
        await send_continue(request)
        return None
    return await expect_within_limit(request)


def _error(request: web.Request, error: CFError) -> web.Response:
    state = request.app[STATE]
    route = request.get(ROUTE)
    openai_error = (
        route is not None
        and route.kind in OPENAI_ERROR_KINDS
        and not enabled(state.quirks, "v1-errors-not-openai-shaped")
    )
    return error_response(error, request_id=request.get(REQUEST_ID), openai_error=openai_error,
                          short_bodies=enabled(state.quirks, "flux-short-error-body"))


def create_app(settings: Settings | None = None, *, state: ServerState | None = None,
               group: WorkerGroup | None = None) -> web.Application:
    """The server's app; with `group`, one of the workers of `serve --workers N`, sharing its
    control plane with the others (emulator/control/shared.py)."""
    settings = settings or Settings()
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[STATE] = state or build_state(settings)
    if group is not None:
        app[WORKER_GROUP] = group
    _install_extensions(app)
    edge.install(app)
    gateway.install(app)
    binding.install(app, fallback=dispatch)  # `/` and `/binding/{account}` with an MF-Binding header
    # [\s\S] and not `.`: a path with an encoded newline must reach `dispatch` too, not aiohttp's text 404.
    app.router.add_route("*", r"/{tail:[\s\S]*}", dispatch, expect_handler=expect_continue)
    app.on_cleanup.append(_close)
    return app


def _install_extensions(app: web.Application) -> None:
    """Routes outside Cloudflare's namespace (control plane, dashboard) go before the catch-all."""
    install_control(app)
    install_openapi(app, app[STATE].settings.control_plane, guard=guarded)


async def _close(app: web.Application) -> None:
    state = app[STATE]
    await state.backend.close()
    state.ledger.close()
    if state.finetunes is not None:
        state.finetunes.close()
