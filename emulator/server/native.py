"""The native surface: `POST …/ai/run/{model}` in, v4 envelope / raw bytes / native SSE out."""

from __future__ import annotations

from aiohttp import web

from emulator.accounting.pricing import round_neurons
from emulator.call import Call, Surface
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.limits import off_loop, read_body
from emulator.quirks import enabled
from emulator.server import batch
from emulator.server.finetunes import resolve_lora
from emulator.server.inputs import read_inputs, validate
from emulator.server.paths import Route
from emulator.server.pipeline import Executed, answered, execute
from emulator.server.relay import render_rendered
from emulator.server.render import NEURONS, REQ_ID, envelope, json_response, stream_events
from emulator.server.stamps import Stamper
from emulator.server.state import STATE, ServerState


def lookup_model(state: ServerState, name: str) -> Model:
    model = state.catalog.get(name)
    if model is None:
        raise CFError(ErrorKind.NO_SUCH_MODEL, model=name)
    return model


# Models whose real answers carry no `cf-ai-neurons` header, while the `no-neurons-header` quirk is on
# (fixtures/observations/headers-and-billing-observed.json: "phoenix-1.0 ... NO cf-ai-neurons header").
NO_NEURONS_HEADER = frozenset({"@cf/leonardo/phoenix-1.0"})


def answer_headers(call: Call, executed: Executed, quirks: dict[str, bool] | None = None) -> dict[str, str]:
    headers = {REQ_ID: call.request_id}
    if call.model.name not in NO_NEURONS_HEADER or not enabled(quirks or {}, "no-neurons-header"):
        headers[NEURONS] = round_neurons(executed.neurons)
    headers.update(executed.outcome.headers)
    return headers


# Answers whose body carries per-call ids and timestamps (chat.completion and Responses objects).
STAMPED_TASKS = frozenset({"Text Generation"})


def stamped(model: Model) -> bool:
    return model.task.name in STAMPED_TASKS


async def render_native(request: web.Request, call: Call, executed: Executed) -> web.StreamResponse:
    """The native answer of `executed`, carrying it back (pipeline.answered)."""
    return answered(await _render_native(request, call, executed), executed)


async def _render_native(request: web.Request, call: Call, executed: Executed) -> web.StreamResponse:
    outcome = executed.outcome
    if outcome.rendered and (outcome.body is not None or outcome.events is not None):
        # Replayed or relayed from the real API: status, headers and bytes exactly as Cloudflare sent them.
        return await render_rendered(request, outcome, executed.events, report=executed.report)
    headers = answer_headers(call, executed, request.app[STATE].quirks)
    if outcome.events is not None:
        return await stream_events(request, executed.events(outcome.events), headers=headers,
                                   status=outcome.status, report=executed.report)
    if outcome.body is not None:
        return web.Response(
            body=outcome.body,
            status=outcome.status,
            headers=headers,
            content_type=outcome.content_type.split(";")[0],
        )
    stamper = Stamper(request.app[STATE].clock) if not outcome.rendered and stamped(call.model) else None
    return json_response(
        envelope(outcome.result) if not outcome.rendered else outcome.result,
        status=outcome.status,
        headers=headers,
        stamper=stamper,
    )


async def handle_run(
    request: web.Request, route: Route, state: ServerState, request_id: str
) -> web.StreamResponse:
    assert route.model is not None
    model = lookup_model(state, route.model)
    raw = await read_body(request)
    inputs = await read_inputs(request, raw)
    if batch.wants_batch(request.query, inputs):
        return await batch.handle(request, route, state, request_id, model, inputs, raw)
    await off_loop(len(raw), validate, model, inputs, state.quirks)
    if isinstance(inputs, dict):  # after validation: bad input is 5006 whatever `lora` names
        resolve_lora(state, route, model, inputs, request_id)
    stream = isinstance(inputs, dict) and inputs.get("stream") is True
    call = Call(
        model=model,
        inputs=inputs,
        surface=Surface.NATIVE,
        account_id=route.account_id,
        request_id=request_id,
        path=request.path,
        query=dict(request.query),
        stream=stream,
        gateway_id=route.gateway_id,
        raw_body=raw,
        raw_content_type=request.content_type or "",
        raw_json=inputs if isinstance(inputs, dict) else None,
        headers=dict(request.headers),
    )
    return await render_native(request, call, await execute(state, call))
