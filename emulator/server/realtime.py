"""Realtime models over WebSocket: a GET upgrade of `…/ai/run/{model}` (Cloudflare's
changelog of 2025-08-27 connects to
`wss://api.cloudflare.com/client/v4/accounts/{id}/ai/run/@cf/deepgram/aura-1` with the usual
`Authorization` header).

Before the upgrade a session is checked like a call (auth, model, query, daily allowance, injected
error and latency faults), so a refusal is an ordinary Cloudflare error answer. During it, slow-stream
faults delay every server message and cut-stream faults drop the connection after `after_events`
messages. At the end the session is charged (audio minutes or characters, at the model's WebSocket
rate) and its request-log entry completed (status 101, neurons, a summary of the session).

The fakes serve sessions in mock mode (they check the query before the upgrade); the other modes relay
them to the real API or play them back from a cassette (server/realtime_cassette.py), and leave the
query to the real API or to the recording.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from emulator.accounting.billing import billed_neurons
from emulator.backends.cassette import CassetteBackend, replayed_outcome
from emulator.backends.upstream import Exchange
from emulator.call import Call, CallReport, Outcome, Surface
from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.fakes.seed import derive_seed
from emulator.limits import off_loop
from emulator.realtime.aura import AuraSession
from emulator.realtime.base import Session
from emulator.realtime.flux import FluxSession
from emulator.realtime.nova3 import Nova3Session
from emulator.realtime.smart_turn import SmartTurnSession
from emulator.server.native import lookup_model
from emulator.server.paths import Route
from emulator.server.pipeline import admit, charge
from emulator.server.realtime_cassette import Sender, Transcript, close_like, play, relay
from emulator.server.relay import render_rendered
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
    "@cf/deepgram/nova-3": "Binary linear16 or mulaw audio in; a JSON `Results` message per second of audio; "
    "`Finalize` flushes, `CloseStream` flushes, sends `Metadata` and ends the session.",
    "@cf/deepgram/aura-1": "JSON `Speak` {text} and `Flush` in; `Metadata`, binary audio (query "
    "`encoding` linear16, mulaw, alaw or mp3) and "
    "`Flushed` out; `Clear`, `Close`.",
    "@cf/pipecat-ai/smart-turn-v2": "Binary audio (or JSON {audio: base64, dtype}) in; "
    "`{is_complete, probability}` per message out.",
}
PROTOCOLS["@cf/deepgram/aura-2-en"] = PROTOCOLS["@cf/deepgram/aura-2-es"] = PROTOCOLS["@cf/deepgram/aura-1"]


def open_session(model: Model, query: dict[str, str], request_id: str, seed: int) -> Session:
    """The protocol of a realtime model; CFError (5006) for bad query parameters."""
    name = model.name
    if name == "@cf/deepgram/flux":
        return FluxSession(request_id, seed, query, model)
    if name == "@cf/deepgram/nova-3":
        return Nova3Session(request_id, seed, query, model)
    if name.startswith("@cf/deepgram/aura-"):
        return AuraSession(request_id, seed, query, model)
    if name == "@cf/pipecat-ai/smart-turn-v2":
        return SmartTurnSession(request_id, seed, query)
    raise CFError(ErrorKind.NOT_REALTIME, model=name)


async def handle_realtime(request: web.Request, route: Route, state: ServerState, request_id: str
                          ) -> web.StreamResponse:
    assert route.model is not None
    model = lookup_model(state, route.model)
    if not model.flag("realtime"):
        raise CFError(ErrorKind.NOT_REALTIME, model=model.name)
    query = dict(request.query)
    cassettes = state.backend if isinstance(state.backend, CassetteBackend) else None
    seed = derive_seed(state.settings.seed, model.name, query)
    # The fakes check the query before the upgrade; in the cassette modes the real API (or the
    # recording of its answer) decides, and a fake session only measures the audio or text for billing.
    session = open_session(model, query, request_id, seed) if cassettes is None else None
    call = Call(model=model, inputs=query, surface=Surface.REALTIME, account_id=route.account_id,
                request_id=request_id, path=request.path, query=query, stream=True,
                gateway_id=route.gateway_id, headers=dict(request.headers))
    admit(state, route.account_id, model, request_id)
    if state.control is None:
        faults, report = SessionFaults(), CallReport.of(call, source=state.backend.name)
    else:
        faults, report = await state.control.open_session(call)
    if session is None:
        assert cassettes is not None
        return await _cassette_session(request, state, cassettes, call, _meter(model, query, request_id),
                                       faults, report)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, receive_timeout=IDLE_SECONDS)
    await ws.prepare(request)
    sender = Sender(ws, faults.delay, faults.cut_after)
    try:
        await _converse(ws, session, sender)
    finally:
        session.sent = sender.sent
        await _finish(request, state, call, sender, ws, session.summary(),
                      billed_neurons(state.prices.websocket_neurons(call.model.name, session.usage)), report)
    return ws


def _meter(model: Model, query: dict[str, str], request_id: str) -> Session | None:
    """A fake session fed the client's messages to count the audio or characters billed; None when
    the fakes cannot read this query (the session is then billed nothing locally)."""
    try:
        return open_session(model, query, request_id, 0)
    except CFError:
        return None


async def _cassette_session(request: web.Request, state: ServerState, backend: CassetteBackend, call: Call,
                            meter: Session | None, faults: SessionFaults, report: CallReport
                            ) -> web.StreamResponse:
    """Replay a recorded session, or relay the session to the real API (recording it in record modes)."""
    exchange = Exchange("GET", request.path, dict(call.query), CIMultiDict(request.headers), b"",
                        call.account_id)
    recordings = await backend.session_recordings(exchange)
    if recordings is not None and recordings[0].session is None:  # a refused upgrade, recorded
        return await render_rendered(request, replayed_outcome(recordings[0], real_timing=False))
    upstream = None
    if recordings is None:
        opened = await backend.upstream.open_websocket(exchange)
        if isinstance(opened, Outcome):  # the real API refused the upgrade: its answer, recorded
            recorder = backend.refusal_recorder(exchange)
            if recorder is not None and opened.body is not None:
                await recorder(opened.status, opened.headers, opened.body, None, None)
            return await render_rendered(request, opened)
        upstream = opened
    protocols = (upstream.protocol,) if upstream is not None and upstream.protocol else ()
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, protocols=protocols)
    await ws.prepare(request)
    sender = Sender(ws, faults.delay, faults.cut_after)
    summary: dict[str, object] = {}
    neurons = 0.0
    try:
        if upstream is None:
            assert recordings is not None
            player = backend.session_player(exchange, recordings)
            miss = await play(ws, player, sender, real_timing=state.settings.replay_timing == "real",
                              idle_seconds=IDLE_SECONDS)
            neurons = player.current.neurons or 0.0
            summary = {"messages_in": player.received, "replayed": True, **({"miss": miss} if miss else {})}
        else:
            transcript = Transcript(state.settings.max_upstream_body_bytes)
            recorded = await relay(ws, upstream, sender, transcript, meter, IDLE_SECONDS)
            if meter is not None:
                neurons = billed_neurons(state.prices.websocket_neurons(call.model.name, meter.usage))
            summary = {"messages_in": transcript.received, "relayed": True}
            if transcript.storable and not sender.faulted:
                await backend.record_session(exchange, recorded, neurons)
            await close_like(ws, recorded)
    finally:
        if upstream is not None and not upstream.closed:  # the client left before the relay began
            await upstream.close()
        summary = {**summary, "messages_out": sender.sent}
        await _finish(request, state, call, sender, ws, summary, neurons, report)
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
            # A message of a MiB or more is a minute of audio and more (thousands of frames, each
            # stepped in Python): on a worker thread, as the session's only work meanwhile.
            await sender.send(await off_loop(len(message.data), session.on_binary, message.data))
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


async def _finish(request: web.Request, state: ServerState, call: Call, sender: Sender,
                  ws: web.WebSocketResponse, summary: dict[str, object], neurons: float, report: CallReport
                  ) -> None:
    if sender.cut:
        if request.transport is not None:
            request.transport.abort()  # the connection drops, as a network failure would
    elif not ws.closed:
        await ws.close()
    ws[SESSION_SUMMARY] = {**summary, "model": call.model.name, "cut": sender.cut}
    ws[CALL_REPORT] = replace(report, neurons=neurons, cut=sender.cut)
    try:
        await charge(state, call.account_id, call.model, neurons, surface=call.surface.value,
                     request_id=call.request_id)
    except CFError as exc:  # the session crossed the free allowance: already served, recorded as refused
        log.info("realtime session %s not charged: %s", call.request_id, exc.message)
