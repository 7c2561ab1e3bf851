"""The request log: one entry per Cloudflare-namespace request, summarised only when someone reads it.

Every model call pays for its log entry, so recording one keeps the raw request and response bytes
(shared with the answer, not copied) and the summaries the control plane and the dashboard show are
made when the log is read. Raw bytes are held up to a budget; past it the oldest entries are
summarised on the spot and let go of their bytes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import hdrs, web

from emulator import limits
from emulator.call import CallReport, StreamCut
from emulator.control.dashboard.summary import INLINE_PARSE, complete, summarize_body, summarize_response
from emulator.errors import CFError
from emulator.server.render import CALL_REPORT, STREAMED
from emulator.server.routes import SURFACE_BY_KIND
from emulator.server.state import ROUTE

LOG_SIZE = 5000
BODY_LOG_LIMIT = 64 * 1024  # larger JSON request bodies are logged as a size/type summary
RAW_BUDGET = 8 * 1024 * 1024  # raw bytes held for lazy summaries, over all entries

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class LogEntry:
    id: int
    wall: float  # UNIX time the request arrived
    method: str
    path: str
    surface: str | None = None
    account: str | None = None
    model: str | None = None
    request_id: str | None = None
    status: int = 0
    error_code: int | None = None
    neurons: float = 0.0
    latency_ms: float = 0.0
    stream: bool = False
    stubbed: bool = False
    faulted: bool = False
    cut: bool = False  # the connection was dropped mid-answer (cut_stream fault or client gone)
    stub_id: str | None = None
    fault_ids: list[str] | tuple[()] = ()
    source: str | None = None  # "stub" or the backend's mode (mock, replay, record, …)
    worker: int | None = None  # which worker of `serve --workers N` answered (0-based)
    started: float = 0.0
    # Summarised on first read (`body`, `response`); until then the raw bytes they come from.
    request_raw: bytes | None = None
    request_type: str = ""
    response_raw: bytes | None = None
    response_type: str = ""
    _body: Any = None
    _response: dict[str, Any] | None = None

    @property
    def held(self) -> int:
        return len(self.request_raw or b"") + len(self.response_raw or b"")

    @property
    def body(self) -> Any:
        if self.request_raw is not None:
            mimetype = self.request_type.split(";", 1)[0].strip().lower()
            self._body, self.request_raw = _request_summary(self.request_raw, mimetype), None
        return self._body

    @property
    def response(self) -> dict[str, Any] | None:
        if self.response_raw is not None:
            self._response = summarize_body(self.response_type, self.response_raw)
            self.response_raw = None
        return self._response

    def settle(self) -> None:
        """Summarise now and drop the raw bytes."""
        _ = self.body, self.response

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": datetime.fromtimestamp(self.wall, UTC).isoformat(),
            "method": self.method,
            "path": self.path,
            "surface": self.surface,
            "account": self.account,
            "model": self.model,
            "request_id": self.request_id,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "neurons": self.neurons,
            "latency_ms": round(self.latency_ms, 3),
            "stream": self.stream,
            "stubbed": self.stubbed,
            "faulted": self.faulted,
            "cut": self.cut,
            "stub_id": self.stub_id,
            "fault_ids": list(self.fault_ids),
            "source": self.source,
            "worker": self.worker,
            "response": complete(self.response),
        }


def _describe(entry: LogEntry, report: CallReport) -> None:
    """The one place an entry learns about the model call its request made (emulator/call.py)."""
    if report.model is not None:
        entry.model = report.model
    if report.surface is not None:
        entry.surface = report.surface
    entry.request_id, entry.stream = report.request_id, report.stream
    if report.source is not None:
        entry.source = report.source
    if report.neurons is not None:
        entry.neurons = report.neurons
    entry.stubbed, entry.stub_id = report.stub_id is not None, report.stub_id
    entry.faulted = report.faulted
    if report.fault_ids:
        entry.fault_ids = list(report.fault_ids)
    entry.cut = entry.cut or report.cut


def _streamed_report(request: web.Request) -> CallReport | None:
    """The report of an answer cut short: it rides on the streamed response, which never came back."""
    streamed = request.get(STREAMED)
    return streamed.get(CALL_REPORT) if streamed is not None else None


def _request_summary(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if raw[:1] in (b"{", b"[") and len(raw) <= BODY_LOG_LIMIT:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return {"content_type": content_type or "application/octet-stream", "bytes": len(raw)}


def _error_code(response: web.StreamResponse) -> int | None:
    if (
        response.status < 400
        or not isinstance(response, web.Response)
        or not isinstance(response.body, bytes)
    ):
        return None
    try:
        body = orjson.loads(response.body)
        errors = body.get("errors") or body.get("error")
        first = errors[0] if isinstance(errors, list) else errors
        code = first.get("code") if isinstance(first, dict) else None
        return code if isinstance(code, int) else None
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return None


def _status_matches(actual: int, wanted: str) -> bool:
    """`200`, `4xx`, `error` (>= 400) or `ok` (< 400)."""
    if wanted == "error":
        return actual >= 400
    if wanted == "ok":
        return 0 < actual < 400
    if len(wanted) == 3 and wanted.endswith("xx") and wanted[0].isdigit():
        return actual // 100 == int(wanted[0])
    return str(actual) == wanted


class RequestLog:
    """The last LOG_SIZE requests of one server, oldest first."""

    def __init__(self, *, max_body_bytes: int, size: int = LOG_SIZE, raw_budget: int = RAW_BUDGET,
                 next_id: Callable[[], int] | None = None, worker: int | None = None) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=size)
        self.max_body_bytes = max_body_bytes
        self.raw_budget = raw_budget
        # The workers of one server draw ids from one shared counter (emulator/control/shared.py).
        self._next_id = next_id or itertools.count(1).__next__
        self.worker = worker
        self._holding: deque[LogEntry] = deque()  # entries still holding raw bytes, oldest first
        self._held = 0

    async def record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run `handler` for `request` and log it with the status the client finally got."""
        entry = LogEntry(id=self._next_id(), wall=time.time(), method=request.method, path=request.path,
                         started=time.perf_counter(), worker=self.worker)
        report: CallReport | None = None
        try:
            response = await handler(request)
            entry.status = response.status
            if response.status >= 400:
                entry.error_code = _error_code(response)
            self._keep_response(entry, response)
            report = response.get(CALL_REPORT)
            return response
        except StreamCut:
            entry.status, entry.cut = 200, True
            report = _streamed_report(request)
            # Close after flushing the events already written: the client sees a body without its last
            # chunk. The empty response lets aiohttp give up quietly instead of logging a traceback.
            if request.transport is not None:
                request.transport.close()
            return web.StreamResponse()
        except (ConnectionResetError, asyncio.CancelledError):
            # The client went away (aiohttp cancels the handler): a stream keeps the status it was
            # sent with, an answer never sent is 499 (client closed request).
            streamed = request.get(STREAMED)
            entry.status, entry.cut = entry.status or (streamed.status if streamed else 499), True
            report = _streamed_report(request)
            raise
        except web.HTTPException as exc:
            entry.status = exc.status
            raise
        finally:
            entry.latency_ms = (time.perf_counter() - entry.started) * 1000
            if report is not None:
                _describe(entry, report)
            self._finish(request, entry)
            raw = limits.body_if_read(request)
            if raw is not None:
                self._keep_raw(entry, raw, request)
            else:
                await self._keep_request(entry, request)
            self._append(entry)

    @staticmethod
    def _keep_response(entry: LogEntry, response: web.StreamResponse) -> None:
        body = response.body if isinstance(response, web.Response) else None
        if isinstance(body, bytes) and len(body) <= INLINE_PARSE:
            entry.response_raw, entry.response_type = body, response.content_type
        else:
            entry._response = summarize_response(response)

    async def _keep_request(self, entry: LogEntry, request: web.Request) -> None:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            entry._body = {"content_type": request.content_type, "bytes": request.content_length}
            return
        try:
            # Bounded like the handlers' own read: a trickling client must not hold the answer back.
            raw = await limits.read_body(request)
        except (web.HTTPException, ConnectionError, ValueError, CFError):
            entry._body = {"content_type": request.content_type, "bytes": request.content_length}
            return
        self._keep_raw(entry, raw, request)

    @staticmethod
    def _keep_raw(entry: LogEntry, raw: bytes, request: web.Request) -> None:
        if len(raw) <= BODY_LOG_LIMIT:
            # The header as sent; parsed only if the log is read.
            entry.request_raw, entry.request_type = raw, request.headers.get(hdrs.CONTENT_TYPE, "")
        else:
            entry._body = _request_summary(raw, request.content_type)

    @staticmethod
    def _finish(request: web.Request, entry: LogEntry) -> None:
        route = request.get(ROUTE)
        if route is None:
            return
        if entry.surface is None:
            entry.surface = SURFACE_BY_KIND[route.kind]
        if entry.model is None:
            entry.model = route.model
        if entry.account is None and route.account_id:
            entry.account = route.account_id

    def _append(self, entry: LogEntry) -> None:
        if len(self.entries) == self.entries.maxlen and self._holding and self._holding[0] is self.entries[0]:
            evicted = self._holding.popleft()  # leaves the log unread: its bytes are simply dropped
            self._held -= evicted.held
            evicted.request_raw = evicted.response_raw = None
        self.entries.append(entry)
        held = entry.held
        if held:
            self._holding.append(entry)
            self._held += held
        while self._held > self.raw_budget and self._holding:
            oldest = self._holding.popleft()
            self._held -= oldest.held
            oldest.settle()

    def forget(self, account: str) -> None:
        """Drop one account's entries (a test resetting only its own account)."""
        kept = [e for e in self.entries if e.account != account]
        self.entries.clear()
        self.entries.extend(kept)
        self._holding = deque(e for e in self._holding if e.account != account)
        self._held = sum(e.held for e in self._holding)

    def clear(self) -> None:
        self.entries.clear()
        self._holding.clear()
        self._held = 0

    def find(self, wanted: int) -> LogEntry | None:
        return next((e for e in self.entries if e.id == wanted), None)

    def select(
        self,
        *,
        model: str | None = None,
        surface: str | None = None,
        status: str | None = None,
        account: str | None = None,
        limit: int | None = None,
    ) -> list[LogEntry]:
        out = []
        for entry in self.entries:
            if model is not None and not (
                entry.model == model or fnmatch.fnmatchcase(entry.model or "", model)
            ):
                continue
            if surface is not None and entry.surface != surface:
                continue
            if account is not None and entry.account != account:
                continue
            if status is not None and not _status_matches(entry.status, status):
                continue
            out.append(entry)
        return out[-limit:] if limit else out
