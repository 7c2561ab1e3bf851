"""Realtime models over WebSocket: a GET upgrade of `…/ai/run/{model}` (Cloudflare's
changelog of 2025-08-27 connects to
`wss://api.cloudflare.com/client/v4/accounts/{id}/ai/run/@cf/deepgram/aura-1` with the usual
`Authorization` header).

Before the upgrade a session is checked like a call (auth, model, query, daily allowance, injected
error and latency faults), so a refusal is an ordinary Cloudflare error answer. During it, slow-stream
faults delay every server message and cut-stream faults drop the connection after `after_events`
messages. At the end the session is charged (audio minutes or characters, at the model's WebSocket
rate) and its request-log entry completed (status 101, neurons, a summary of the session). Sessions are
served by the fakes in every mode: a WebSocket is not recorded to cassettes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from aiohttp import WSMsgType, web

from emulator.accounting.billing import billed_neurons
from emulator.call import Call, CallReport, Surface
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.fakes.seed import derive_seed
from emulator.realtime.aura import AuraSession
from emulator.realtime.base import Message, Session
from emulator.realtime.flux import FluxSession
from emulator.realtime.nova3 import Nova3Session
from emulator.realtime.smart_turn import SmartTurnSession
from emulator.server.native import lookup_model
from emulator.server.paths import Route
from emulator.server.pipeline import admit, charge
from emulator.server.render import CALL_REPORT, SESSION_SUMMARY
from emulator.server.state import ServerState, SessionFaults

log = logging.getLogger("workers_ai_emulator")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
IDLE_SECONDS = 60.0  # a session with no client message for this long is closed


# One line per realtime model for the OpenAPI description; each module's docstring has the details.
PROTOCOLS = {
    "@cf/deepgram/flux": "Binary linear16 audio in (query `encoding=linear16`, `sample_rate`); JSON "
    "`Connected`, then `TurnInfo` messages (`Update`, `StartOfTurn`, `EagerEndOfTurn`, `TurnResumed`, "
    "`EndOfTurn`); `{\"type\": \"CloseStream\"}` ends the session.",
    "@cf/deepgram/nova-3": "Binary linear16 audio in; a JSON `Results` message per second of audio; "
    "`Finalize` flushes, `CloseStream` flushes, sends `Metadata` and ends the session.",
    "@cf/deepgram/aura-1": "JSON `Speak` {text} and `Flush` in; `Metadata`, binary linear16 audio and "
    "`Flushed` out; `Clear`, `Close`.",
    "@cf/pipecat-ai/smart-turn-v2": "Binary audio (or JSON {audio: base64, dtype}) in; "
    "`{is_complete, probability}` per message out.",
}
PROTOCOLS["@cf/deepgram/aura-2-en"] = PROTOCOLS["@cf/deepgram/aura-2-es"] = PROTOCOLS["@cf/deepgram/aura-1"]


def open_session(model: Model, query: dict[str, str], request_id: str, seed: int) -> Session:
    """The protocol of a realtime model; CFError (5006) for bad query parameters."""
    name = model.name
    if name == "@cf/deepgram/flux":
        return FluxSession(request_id, seed, query)
    if name == "@cf/deepgram/nova-3":
        return Nova3Session(request_id, seed, query)
    if name.startswith("@cf/deepgram/aura-"):
        return AuraSession(request_id, seed, query, model)
    if name == "@cf/pipecat-ai/smart-turn-v2":
        return SmartTurnSession(request_id, seed, query)
    raise CFError(ErrorKind.NOT_REALTIME, model=name)


class Sender:
    """Sends a session's messages with the stream faults that fired for it."""

    def __init__(self, ws: web.WebSocketResponse, session: Session, delay: float, cut_after: int | None):
        self.ws, self.session, self.delay, self.cut_after = ws, session, delay, cut_after
        self.cut = False

    async def send(self, messages: list[Message]) -> None:
        for message in messages:
            if self.cut_after is not None and self.session.sent >= self.cut_after:
                self.cut = True
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)
            self.session.sent += 1


async def handle_realtime(request: web.Request, route: Route, state: ServerState, request_id: str
                          ) -> web.StreamResponse:
    assert route.model is not None
    model = lookup_model(state, route.model)
    if not model.flag("realtime"):
        raise CFError(ErrorKind.NOT_REALTIME, model=model.name)
    query = dict(request.query)
    session = open_session(model, query, request_id, derive_seed(state.settings.seed, model.name, query))
    call = Call(model=model, inputs=query, surface=Surface.REALTIME, account_id=route.account_id,
                request_id=request_id, path=request.path, query=query, stream=True,
                gateway_id=route.gateway_id, headers=dict(request.headers))
    admit(state, route.account_id, model, request_id)
    if state.control is None:
        faults, report = SessionFaults(), CallReport.of(call, source=state.backend.name)
    else:
        faults, report = await state.control.open_session(call)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, receive_timeout=IDLE_SECONDS)
    await ws.prepare(request)
    sender = Sender(ws, session, faults.delay, faults.cut_after)
    try:
        await _converse(ws, session, sender)
    finally:
        await _finish(request, state, call, session, sender, ws, report)
    return ws


async def _converse(ws: web.WebSocketResponse, session: Session, sender: Sender) -> None:
    await sender.send(session.opening())
    while not sender.cut:
        try:
            message = await ws.receive()
        except TimeoutError:
            break
        if message.type is WSMsgType.BINARY:
            session.received += 1
            await sender.send(session.on_binary(message.data))
        elif message.type is WSMsgType.TEXT:
            session.received += 1
            replies, done = session.on_text(message.data)
            await sender.send(replies)
            if done:
                break
        else:  # CLOSE, CLOSING, CLOSED, ERROR
            break
    if not sender.cut and not ws.closed:
        await sender.send(session.closing())


async def _finish(request: web.Request, state: ServerState, call: Call, session: Session, sender: Sender,
                  ws: web.WebSocketResponse, report: CallReport) -> None:
    if sender.cut:
        if request.transport is not None:
            request.transport.abort()  # the connection drops, as a network failure would
    elif not ws.closed:
        await ws.close()
    neurons = billed_neurons(state.prices.websocket_neurons(call.model.name, session.usage))
    ws[SESSION_SUMMARY] = {**session.summary(), "model": call.model.name, "cut": sender.cut}
    ws[CALL_REPORT] = replace(report, neurons=neurons, cut=sender.cut)
    try:
        await charge(state, call.account_id, call.model, neurons, surface=call.surface.value,
                     request_id=call.request_id)
    except CFError as exc:  # the session crossed the free allowance: already served, recorded as refused
        log.info("realtime session %s not charged: %s", call.request_id, exc.message)

