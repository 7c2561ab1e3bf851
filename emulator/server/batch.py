"""Async batch (`POST run/{model}?queueRequest=true`, reference §6): an in-memory queue on the server state.

Choices (Cloudflare does not document them):
- Only models whose catalog property `async_queue` is "true" accept a batch; others get 5006
  (`batch_unsupported`). A body of 10 MB or more gets 3006/413 (`batch_too_large`). Each request of
  the batch is validated like a normal run/ body (`external_reference` removed first).
- Progress is driven by poll count, not time, so tests are deterministic: the first poll answers
  `queued`, the second `running`, the third and later the finished `{responses, usage}`.
- Every request runs through the same fake, pricing and ledger as a synchronous call; the ledger is
  charged when the batch completes (on the poll that first returns the responses).
- Binary outputs (aura TTS) appear base64-encoded as the request's `result`.
- An unknown `request_id` answers 404 (`unknown_batch`).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp import web

from emulator.call import Call, CallReport, Surface
from emulator.catalog import Model
from emulator.errors import CFError
from emulator.server.batch_queue import Batch
from emulator.server.inputs import validate
from emulator.server.paths import Route
from emulator.server.pipeline import execute
from emulator.server.render import CALL_REPORT, REQ_ID, envelope, json_response
from emulator.server.state import ServerState

MAX_BATCH_BYTES = 10 * 1024 * 1024
POLLS_QUEUED = 1
POLLS_RUNNING = 2


def status_of(batch: Batch, status: str) -> dict[str, str]:
    return {"status": status, "request_id": batch.request_id, "model": batch.model.name}


def wants_batch(query: Any, inputs: Any) -> bool:
    queued = str(query.get("queueRequest", "")).lower() == "true"
    polling = isinstance(inputs, dict) and set(inputs) == {"request_id"}
    return queued or polling


async def handle(request: web.Request, route: Route, state: ServerState, request_id: str, model: Model,
                 inputs: Any, raw: bytes) -> web.StreamResponse:
    if isinstance(inputs, dict) and set(inputs) == {"request_id"}:
        return await poll(route, state, request_id, model, str(inputs["request_id"]))
    if not model.supports_batch:
        raise CFError("batch_unsupported", model=model.name)
    if len(raw) >= MAX_BATCH_BYTES:
        raise CFError("batch_too_large")
    requests = inputs.get("requests") if isinstance(inputs, dict) else None
    if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) for r in requests):
        raise CFError("bad_input", detail="Error: required properties at '/' are 'requests'")
    for item in requests:
        validate(model, {k: v for k, v in item.items() if k != "external_reference"}, state.quirks)
    batch = Batch(str(uuid.uuid4()), model, route.account_id, [dict(r) for r in requests])
    state.batches[batch.request_id] = batch
    return json_response(envelope(status_of(batch, "queued")), headers={REQ_ID: request_id})


async def poll(route: Route, state: ServerState, request_id: str, model: Model,
               batch_id: str) -> web.Response:
    batch = state.batches.get(batch_id)
    if batch is None or batch.account_id != route.account_id or batch.model.name != model.name:
        raise CFError("unknown_batch", request_id=batch_id)
    batch.polls += 1
    headers = {REQ_ID: request_id}
    if batch.result is None and batch.polls <= POLLS_RUNNING:
        status = "queued" if batch.polls <= POLLS_QUEUED else "running"
        return json_response(envelope(status_of(batch, status)), headers=headers)
    report = None
    if batch.result is None:
        batch.result, report = await complete(state, batch)
    response = json_response(envelope(batch.result), headers=headers)
    if report is not None:  # the poll that ran the batch: the request log names its last call
        response[CALL_REPORT] = report
    return response


async def complete(state: ServerState, batch: Batch) -> tuple[dict[str, Any], CallReport | None]:
    """The batch's results, and the report of its last call."""
    report = None
    responses = []
    prompt_tokens = completion_tokens = 0
    for index, item in enumerate(batch.requests):
        inputs = {k: v for k, v in item.items() if k != "external_reference"}
        call = Call(model=batch.model, inputs=inputs, surface=Surface.NATIVE, account_id=batch.account_id,
                    request_id=f"{batch.request_id}/{index}")
        executed = await execute(state, call)
        outcome, report = executed.outcome, executed.report
        result: Any = outcome.result
        if outcome.body is not None:
            result = base64.b64encode(outcome.body).decode()
        prompt_tokens += outcome.usage.input_tokens
        completion_tokens += outcome.usage.output_tokens
        responses.append({"id": index, "result": result, "success": True,
                          "external_reference": item.get("external_reference")})
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    return {"responses": responses, "usage": usage}, report
