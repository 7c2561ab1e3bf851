"""The real-API client: forwards requests to Cloudflare over one keep-alive session and relays the answers."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from emulator.call import Call, Outcome, StreamCut, StreamEvent
from emulator.cassettes import RESPONSE_HEADER_ALLOW, SSEEvent, SSESplitter, StreamBreak, filter_headers
from emulator.cassettes.format import LONG_EVENT_BYTES, is_event_stream
from emulator.errors import CFError, ErrorKind
from emulator.gil import LoopTurns
from emulator.limits import LOOP_SLICE_SECONDS, parse_neurons
from emulator.settings import Settings

log = logging.getLogger("workers_ai_emulator.upstream")

# Never forwarded: hop-by-hop headers, ones aiohttp recomputes, and credentials we replace.
HOP_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "accept-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
    }
)
CREDENTIAL_HEADERS = frozenset({"authorization", "x-auth-key", "x-auth-email", "x-auth-user-service-key"})
NEURONS = "cf-ai-neurons"

# Called once a relayed answer is over: (status, response headers, body, SSE events or None, and how
# the stream broke off if it did).
Finished = Callable[[int, Mapping[str, str], bytes, list[SSEEvent] | None, StreamBreak | None],
                    Awaitable[None]]


def _unreadable_head(exc: BaseException) -> str:
    """A fixed sentence for an upstream answer aiohttp's HTTP parser refused (never its bytes)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, LineTooLong):
            return "the answer has a status or header line over 8190 bytes, more than the emulator reads"
        cause = cause.__cause__
    return "the answer is not a readable HTTP response (bad status line or headers)"


@dataclass(slots=True)
class Exchange:
    """One request as the client sent it: what is forwarded upstream and what a cassette matches on."""

    method: str
    path: str  # decoded path as received, with the local account id
    query: dict[str, str] = field(default_factory=dict)
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""
    account_id: str = ""
    # `body` parsed as JSON by the server's route (`Call.raw_json`), or None: not parsed yet.
    parsed: dict[str, Any] | None = None

    @classmethod
    def from_call(cls, call: Call) -> Exchange:
        """The original request behind a model call (every surface keeps it in raw_body/path/headers)."""
        return cls(
            "POST", call.path, dict(call.query), CIMultiDict(call.headers), call.raw_body, call.account_id,
            call.raw_json,
        )

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def credentials(self) -> list[str]:
        """The secrets this client sent (token, global key, email): each must be scrubbed from recordings."""
        found: list[str] = []
        for name in ("Authorization", "cf-aig-authorization"):
            value = self.headers.get(name, "")
            scheme, _, token = value.strip().partition(" ")
            found.append(token.strip() if scheme.lower() == "bearer" else value.strip())
        found += [self.headers.get(h, "") for h in ("X-Auth-Key", "X-Auth-Email", "X-Auth-User-Service-Key")]
        return [s for s in found if s]


class Upstream:
    """The real Workers AI API (or a stand-in in tests), with credential mapping and a spending cap."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.spent = 0.0  # real neurons reported by upstream in this run (successful answers only)
        self.sent = 0
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running loop.
        if self._session is None or self._session.closed:
            timeout = self.settings.upstream_timeout
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def url(self, exchange: Exchange) -> URL:
        """The real URL: the gateway host for `/v1/…` paths, the real account id in place of the local one."""
        path = exchange.path
        real = self.settings.upstream_account_id
        if real and exchange.account_id and exchange.account_id != real:
            path = path.replace(exchange.account_id, real, 1)
        base = self.settings.upstream_gateway if path.startswith("/v1/") else self.settings.upstream
        return URL(base.rstrip("/") + path).with_query(exchange.query or None)

    def outgoing_headers(self, exchange: Exchange) -> CIMultiDict[str]:
        """The client's headers minus hop-by-hop ones; the configured real token replaces its credentials."""
        out: CIMultiDict[str] = CIMultiDict()
        token = self.settings.upstream_token
        for name, value in exchange.headers.items():
            lname = name.lower()
            if lname in HOP_HEADERS or (token and lname in CREDENTIAL_HEADERS):
                continue
            out.add(name, value)
        if token:
            out["Authorization"] = f"Bearer {token}"
        return out

    def check_budget(self) -> None:
        """Refuse before sending anything once the run's real spend reached --max-upstream-neurons."""
        cap = self.settings.max_upstream_neurons
        if cap is not None and self.spent >= cap:
            raise CFError(
                ErrorKind.UPSTREAM_BUDGET,
                detail=(
                    f"{self.spent:.2f} real neurons spent in this run reached "
                    f"--max-upstream-neurons {cap:g}; the request was not sent to the real API"
                ),
            )

    async def forward(self, exchange: Exchange, finished: Finished | None = None, *,
                      upgrade_headers: CIMultiDict[str] | None = None) -> Outcome:
        """Send the request upstream and relay the answer as a rendered Outcome (streams relayed live).
        `upgrade_headers` are sent as they are (a refused WebSocket upgrade asked again)."""
        self.check_budget()
        url = self.url(exchange)
        self.sent += 1
        try:
            response = await self._client().request(
                exchange.method,
                url,
                headers=upgrade_headers if upgrade_headers is not None else self.outgoing_headers(exchange),
                data=exchange.body or None,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise CFError(ErrorKind.UPSTREAM_TIMEOUT, detail=self._describe(url, exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CFError(ErrorKind.UPSTREAM_UNREACHABLE, detail=self._describe(url, exc)) from None
        started = time.monotonic()
        kept = filter_headers(response.headers.items(), RESPONSE_HEADER_ALLOW)
        neurons = parse_neurons(response.headers.get(NEURONS))
        if neurons is None and NEURONS in response.headers:
            # NaN, negative or absurd: not counted, so it can neither switch the budget off nor be billed.
            log.warning("ignored unreadable %s: %.40r from %s", NEURONS, response.headers[NEURONS], url)
        if response.status < 400 and neurons is not None:
            self.spent += neurons
        content_type = response.headers.get("Content-Type", "")
        common = {
            "rendered": True,
            "status": response.status,
            "headers": kept,
            "content_type": content_type or "application/octet-stream",
            "neurons": neurons if response.status < 400 else None,
        }
        if is_event_stream(content_type):
            events = await _first_read(self._relay_stream(response, started, finished, url))
            return Outcome(events=events, **common)  # type: ignore[arg-type]
        try:
            body = await self._read_capped(response, url)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise CFError(ErrorKind.UPSTREAM_TIMEOUT, detail=self._describe(url, exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CFError(ErrorKind.UPSTREAM_UNREACHABLE, detail=self._describe(url, exc)) from None
        finally:
            response.release()
        if finished is not None:
            await finished(response.status, response.headers, body, None, None)
        return Outcome(body=body, **common)  # type: ignore[arg-type]

    async def _read_capped(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        """The whole (decoded) body, read chunk by chunk so that an answer past
        --max-upstream-body-bytes, a gzip bomb included, is refused before it is held in memory."""
        cap = self.settings.max_upstream_body_bytes
        declared = response.content_length
        if declared is not None and declared > cap and not response.headers.get("Content-Encoding"):
            raise self._too_large(url, declared)
        chunks: list[bytes] = []
        size = 0
        # A read returns without a pause while aiohttp has unpacked bytes at hand: a gzip bomb's
        # 64 MiB up to the cap were one step of the loop (~150 ms).
        turns = LoopTurns(LOOP_SLICE_SECONDS)
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > cap:
                raise self._too_large(url, size)
            chunks.append(chunk)
            await turns.tick()
        return await asyncio.to_thread(b"".join, chunks)

    def _too_large(self, url: URL, size: int) -> CFError:
        cap = self.settings.max_upstream_body_bytes
        log.warning("upstream answer from %s refused: over %d bytes", url.with_query(None), cap)
        return CFError(ErrorKind.UPSTREAM_TOO_LARGE, detail=(
            f"the answer from {url.with_query(None)} is over {cap:,} bytes ({size:,} read); "
            "raise --max-upstream-body-bytes to relay and record it"))

    async def _relay_stream(
        self, response: aiohttp.ClientResponse, started: float, finished: Finished | None, url: URL
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield each SSE event the moment its last byte arrives; report the whole stream when it ends.

        A stream that breaks off (connection closed before its end, read timeout) is reported with the
        events received whole and how it broke, then this client's stream is cut the same way. A
        stream past --max-upstream-body-bytes is cut; before its first event is whole, it is refused
        with UPSTREAM_TOO_LARGE (`forward` reads that far before the status is sent). An event of
        LONG_EVENT_BYTES or more is read on a worker thread (`SSEEvent.from_wire`)."""
        splitter = SSESplitter()
        events: list[SSEEvent] = []
        headers: CIMultiDictProxy[str] = response.headers
        broke: StreamBreak | None = None
        cap, size = self.settings.max_upstream_body_bytes, 0
        turns = LoopTurns(LOOP_SLICE_SECONDS)  # as `_read_capped`'s
        try:
            async for chunk in response.content.iter_any():
                await turns.tick()
                size += len(chunk)
                if size > cap:
                    log.warning("upstream stream from %s cut: over %d bytes", url.with_query(None), cap)
                    if not events:
                        raise self._too_large(url, size)
                    # The status line is already sent: the client sees a cut stream, nothing is recorded.
                    return
                for raw in splitter.feed_wire(chunk, (time.monotonic() - started) * 1000):
                    event = await _event_of(raw, splitter.offset_ms)
                    events.append(event)
                    yield StreamEvent(event.data, raw=raw)
            raw_last = splitter.finish_wire()
            if raw_last is not None:
                event = await _event_of(raw_last, splitter.offset_ms)
                events.append(event)
                yield StreamEvent(event.data, raw=raw_last)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("upstream stream from %s broke off: %s", url, exc)
            # A half-received event never reached the client: only whole events are kept.
            broke = StreamBreak(offset_ms=round((time.monotonic() - started) * 1000, 3),
                                reason="timeout" if isinstance(exc, TimeoutError) else "connection closed")
        finally:
            response.release()
        if finished is not None:
            await finished(response.status, headers, b"", events, broke)
        if broke is not None:
            raise StreamCut(f"the upstream stream broke off ({broke.reason})")

    async def open_websocket(self, exchange: Exchange) -> aiohttp.ClientWebSocketResponse | Outcome:
        """Open the upgrade's WebSocket on the real API with the same query and the configured token;
        an upstream that refuses the upgrade gives its HTTP answer as a rendered Outcome instead.

        aiohttp drops the body of a refused upgrade, so the refusal is asked again as a plain request
        with the same upgrade headers to read it: an upgrade refused for its credentials, model or
        query is refused the same way twice, at no cost."""
        self.check_budget()
        url = self.url(exchange)
        headers = CIMultiDict((k, v) for k, v in self.outgoing_headers(exchange).items()
                              if not k.lower().startswith("sec-websocket-"))
        protocols = [p.strip() for p in exchange.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if p.strip()]
        self.sent += 1
        try:
            return await self._client().ws_connect(
                url, headers=headers, protocols=protocols, autoclose=False, autoping=True,
                max_msg_size=self.settings.max_upstream_body_bytes,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status is None or exc.status < 200:
                raise CFError(ErrorKind.UPSTREAM_UNREACHABLE, detail=self._describe(url, exc)) from None
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise CFError(ErrorKind.UPSTREAM_TIMEOUT, detail=self._describe(url, exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CFError(ErrorKind.UPSTREAM_UNREACHABLE, detail=self._describe(url, exc)) from None
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
        return await self.forward(Exchange("GET", exchange.path, exchange.query, headers, b"",
                                           exchange.account_id), upgrade_headers=headers)

    def _describe(self, url: URL, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return f"no answer from {url.with_query(None)} within {self.settings.upstream_timeout:g} s"
        if isinstance(exc, aiohttp.ClientResponseError | HttpProcessingError) and not isinstance(
            exc, aiohttp.WSServerHandshakeError  # its messages are aiohttp's own fixed sentences
        ):
            # aiohttp's parser quotes the bytes it refused (a header line, a status line): upstream
            # bytes, possibly credentials, that the client's error message must not carry.
            return f"{url.with_query(None)}: {_unreadable_head(exc)}"
        return f"{url.with_query(None)}: {str(exc) or type(exc).__name__}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _event_of(raw: bytes, offset_ms: float) -> SSEEvent:
    """The event of these wire bytes; a long one read on a worker thread, handing the GIL over."""
    if len(raw) < LONG_EVENT_BYTES:
        return SSEEvent.from_wire(raw, offset_ms)
    return await asyncio.to_thread(SSEEvent.from_wire, raw, offset_ms)


async def _first_read(events: AsyncGenerator[StreamEvent, None]) -> AsyncIterator[StreamEvent]:
    """`events` with its first event read already, so that a stream refused before it (a CFError:
    its first event past the answer cap) is answered with that error instead of a 200."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        return _relayed([], None)
    except StreamCut as cut:
        return _relayed([], cut)
    return _relayed([first], None, events)


async def _relayed(read: list[StreamEvent], cut: StreamCut | None,
                   rest: AsyncGenerator[StreamEvent, None] | None = None) -> AsyncIterator[StreamEvent]:
    try:
        for event in read:
            yield event
        if cut is not None:
            raise cut
        if rest is not None:
            async for event in rest:
                yield event
    finally:
        if rest is not None:
            await rest.aclose()
