"""Realtime sessions in the cassette modes: relayed to the real API's WebSocket (record, passthrough,
a replay-or-record miss) or played back from a cassette (replay, a replay-or-record hit).

Relaying copies every message both ways as it comes and notes it as a `Frame` with its time since the
upgrade; record mode stores the whole session (`RecordedSession`) when it ends, unless it went over
--max-upstream-body-bytes of messages or an hour, or a cut_stream fault cut it (it is still relayed,
not stored). Playing back
follows `SessionPlayer`: the model's recorded frames are sent once the client frames before them
have arrived (`--replay-timing real` keeps their recorded spacing), and the recorded end is
reproduced (the model's close code, or a dropped connection). A client message no recording expects
gets one text message with Cloudflare's error envelope (code 7404, the miss described) and a close
with code 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web

from emulator.cassettes import Frame, RecordedSession, SessionMiss, SessionPlayer
from emulator.cassettes.format import MAX_OFFSET_MS
from emulator.errors import CFError, ErrorKind
from emulator.realtime.base import Message, Session, dumps

log = logging.getLogger("workers_ai_emulator")
MISS_CLOSE_CODE = 1008  # policy violation: the client left the recorded script


class Sender:
    """Sends server messages with the stream faults that fired for the session: a delay before each,
    and the connection dropped once `cut_after` messages went out."""

    def __init__(self, ws: web.WebSocketResponse, delay: float, cut_after: int | None) -> None:
        self.ws, self.delay, self.cut_after = ws, delay, cut_after
        self.sent = 0
        self.cut = False  # the connection is to be dropped
        self.faulted = False  # … because a cut_stream fault fired (not what the model did)

    async def send(self, messages: list[Message]) -> None:
        for message in messages:
            if self.cut_after is not None and self.sent >= self.cut_after:
                self.cut = self.faulted = True
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)
            self.sent += 1


@dataclass
class Transcript:
    """The frames of a relayed session as they pass, within the bounds a cassette can hold."""

    max_bytes: int
    frames: list[Frame] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    size: int = 0
    storable: bool = True
    received: int = 0  # client messages, stored or not

    def offset_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)

    def note(self, direction: str, message: Message) -> None:
        self.received += direction == "in"
        if not self.storable:
            return
        self.size += len(message)
        offset = self.offset_ms()
        if self.size > self.max_bytes or offset > MAX_OFFSET_MS:
            self.storable, self.frames = False, []
            log.warning("realtime session not recorded: over %d bytes of messages or an hour", self.max_bytes)
            return
        self.frames.append(Frame.of("in" if direction == "in" else "out", message, offset))


async def relay(ws: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, sender: Sender,
                transcript: Transcript, meter: Session | None, idle_seconds: float) -> RecordedSession:
    """Copy messages both ways until one side ends; the session as it happened. The client's socket
    is left open for the caller to store the session first, then close it (`close_like`)."""

    async def from_client() -> None:
        while True:
            try:
                message = await ws.receive(timeout=idle_seconds)
            except TimeoutError:
                return
            if message.type is WSMsgType.BINARY:
                transcript.note("in", message.data)
                if meter is not None:
                    meter.on_binary(message.data)
                await upstream.send_bytes(message.data)
            elif message.type is WSMsgType.TEXT:
                transcript.note("in", message.data)
                if meter is not None:
                    meter.on_text(message.data)
                await upstream.send_str(message.data)
            else:
                return

    async def from_model() -> tuple[str, int | None]:
        while True:
            message = await upstream.receive()
            if message.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                transcript.note("out", message.data)
                await sender.send([message.data])
                if sender.cut:
                    return "cut", None
            elif message.type is WSMsgType.CLOSE:
                return "server", message.data if isinstance(message.data, int) else upstream.close_code
            else:  # CLOSED, ERROR: the connection broke without a close frame
                sender.cut = True
                return "cut", None

    client, model = asyncio.create_task(from_client()), asyncio.create_task(from_model())
    try:
        await asyncio.wait({client, model}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (client, model):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(client, model, return_exceptions=True)
    end: str
    code: int | None = None
    if model.done() and not model.cancelled() and model.exception() is None:
        end, code = model.result()
    elif model.done() and not model.cancelled():
        end, sender.cut = "cut", True  # the upstream connection failed mid-session
    else:
        end = "client"
    ended = transcript.offset_ms()
    with contextlib.suppress(Exception):
        await upstream.close()
    return RecordedSession(frames=transcript.frames, end=end,  # type: ignore[arg-type]
                           code=code if end == "server" else None, end_ms=min(ended, MAX_OFFSET_MS))


async def play(ws: web.WebSocketResponse, player: SessionPlayer, sender: Sender, *, real_timing: bool,
               idle_seconds: float) -> str | None:
    """Play the recorded session to the client; the miss that ended it early, if any."""
    previous = 0.0

    async def send_due() -> None:
        nonlocal previous
        for frame in player.due():
            if real_timing:
                await asyncio.sleep(max(0.0, frame.offset_ms - previous) / 1000)
            previous = frame.offset_ms
            await sender.send([frame.message()])
            if sender.cut:
                return

    await send_due()
    while not sender.cut and not (player.finished and player.session.end != "client"):
        try:
            message = await ws.receive(timeout=idle_seconds)
        except TimeoutError:
            return None
        if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            return None  # the client closed
        try:
            previous = player.receive(message.data).offset_ms
        except SessionMiss as miss:
            error = CFError(ErrorKind.NO_CASSETTE_MATCH, detail=str(miss))
            await ws.send_str(dumps(error.envelope()))
            await ws.close(code=MISS_CLOSE_CODE, message=b"no recorded session matches (7404)")
            return str(miss)
        await send_due()
    if sender.cut:
        return None
    session = player.session
    if real_timing:
        await asyncio.sleep(max(0.0, session.end_ms - previous) / 1000)
    if session.end == "cut":
        sender.cut = True  # the handler drops the connection, as the recording's upstream did
    elif not ws.closed:
        await ws.close(code=session.code or aiohttp.WSCloseCode.OK)
    return None


async def close_like(ws: web.WebSocketResponse, session: RecordedSession) -> None:
    """Close the client's socket the way the model closed its own (a cut is the handler's to drop)."""
    if session.end != "cut" and not ws.closed:
        await ws.close(code=session.code or aiohttp.WSCloseCode.OK)
