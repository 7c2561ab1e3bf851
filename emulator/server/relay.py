"""Sending recorded or relayed answers as they are, and forwarding model-less requests in non-mock modes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from emulator.backends.upstream import Exchange
from emulator.call import CallReport, EventSource, Outcome
from emulator.limits import read_body
from emulator.server.paths import Kind, Route
from emulator.server.render import send_stream
from emulator.server.state import ServerState

# Catalog API, GraphQL, fine-tunes and toMarkdown have no single model, so no Call: in
# replay/record/passthrough they go straight to the backend's `exchange` (recorded and replayed like
# model calls, never charged here: the real API bills toMarkdown's image models itself).
FORWARDED_KINDS = frozenset(
    {Kind.MODELS_SEARCH, Kind.MODELS_SCHEMA, Kind.TASKS_SEARCH, Kind.AUTHORS_SEARCH, Kind.GRAPHQL,
     Kind.FINETUNES_LIST, Kind.FINETUNES_CREATE, Kind.FINETUNE_ASSETS, Kind.FINETUNES_PUBLIC,
     Kind.TOMARKDOWN_SUPPORTED, Kind.TOMARKDOWN}
)


def forwarder(state: ServerState) -> Callable[[Exchange], Awaitable[Outcome]] | None:
    """The backend's raw-request entry point, or None for the mock backend (which answers locally)."""
    exchange: Any = getattr(state.backend, "exchange", None)
    return exchange if callable(exchange) else None


def forwards(state: ServerState, route: Route) -> bool:
    return route.kind in FORWARDED_KINDS and forwarder(state) is not None


async def forward_request(request: web.Request, route: Route, state: ServerState) -> web.StreamResponse:
    """Hand the original request to the backend and send its answer unchanged."""
    exchange = forwarder(state)
    assert exchange is not None
    original = Exchange(
        request.method,
        request.path,
        dict(request.query),
        CIMultiDict(request.headers),
        await read_body(request),
        route.account_id,
    )
    return await render_rendered(request, await exchange(original))


async def render_rendered(request: web.Request, outcome: Outcome,
                          events: Callable[[EventSource], EventSource] | None = None, *,
                          report: CallReport | None = None) -> web.StreamResponse:
    """Send a replayed or relayed outcome: its status, headers and bytes, streams chunk by chunk
    (through `events`, a model call's stream faults, when given; `report`: the call's)."""
    headers = dict(outcome.headers)
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = outcome.content_type
    if outcome.events is None:
        return web.Response(status=outcome.status, headers=headers, body=outcome.body or b"")
    source: EventSource = outcome.events
    return await send_stream(request, web.StreamResponse(status=outcome.status, headers=headers),
                             events(source) if events is not None else source, report=report)
