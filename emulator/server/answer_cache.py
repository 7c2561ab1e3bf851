"""Rendered answers of repeatable calls, keyed by the request's own bytes.

A mock answer is a pure function of the request (method, path and query, content type, `Accept`,
body) and the server's settings, and so is a replayed one once its key's last recording is reached.
A repeated request then skips parsing, validation, matching, the fake and the rendering, and pays
only for what must happen on every call: authentication, admission, the charge, the request-log
entry and (for mock answers) a fresh `cf-ai-req-id`; a replayed answer keeps its recorded headers.
Once the cache is full, a new request is kept only the second time it comes (a key seen once is only
noted), so a load of requests that never repeat builds and evicts nothing.
Only plain successes are kept: no stream, no stub, no fault, no batch. Each answer is kept with the
backend's `answer_token()` of that moment and reused only while it is still the same object (a
cassette file that changed gives a new index); switching mode starts a new cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import hdrs, web
from multidict import CIMultiDict

from emulator.accounting.ledger import Clock
from emulator.catalog import Model
from emulator.lru import SizedLRU
from emulator.server.edge import CF_RAY
from emulator.server.render import REQ_ID, UNSTAMPED
from emulator.server.stamps import Stamper

MAX_ENTRIES = 16384  # a large cassette (10,000 interactions) fits whole
MAX_BYTES = 64 * 1024 * 1024
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # one 1024² PNG fits; a 2048² one is rebuilt from the fake's cache
# Headers aiohttp sets on every response itself, and the one header that is new on every call.
_PER_RESPONSE = frozenset({REQ_ID, CF_RAY, hdrs.CONTENT_LENGTH, hdrs.DATE, hdrs.SERVER})

Key = tuple[str, str, str, str, bytes]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    model: Model
    surface: str
    neurons: float  # the billed figure, as charged the first time
    estimated: bool
    status: int
    headers: CIMultiDict[str]
    body: bytes
    token: object
    fresh_id: bool  # a new cf-ai-req-id each time (mock); replayed answers keep what was recorded
    stamped: bool  # ids and timestamps in the body are per call (server/stamps.py)

    def response(self, request_id: str, clock: Clock) -> web.Response:
        headers = self.headers.copy()  # aiohttp keeps a CIMultiDict it is given: each answer its own
        if self.fresh_id:
            headers[REQ_ID] = request_id
        body = Stamper(clock).stamp(self.body) if self.stamped else self.body
        return web.Response(body=body, status=self.status, headers=headers)


def request_key(request: web.Request, raw: bytes) -> Key:
    headers = request.headers
    return (request.method, request.raw_path, headers.get(hdrs.CONTENT_TYPE, ""),
            headers.get(hdrs.ACCEPT, ""), raw)


class AnswerCache:
    """Least recently used first out, bounded by count and by bytes."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._answers: SizedLRU[Key, CachedAnswer] = SizedLRU(max_entries=max_entries, max_bytes=max_bytes,
                                                              second_use=True)
        self.hits = 0

    def get(self, key: Key, token: object) -> CachedAnswer | None:
        answer = self._answers.get(key)
        if answer is None or answer.token is not token:
            return None  # unknown, or kept for a cassette (index) that has changed since
        self.hits += 1
        return answer

    def remember(self, key: Key, response: web.StreamResponse, *, model: Model, surface: str,
                 neurons: float, estimated: bool, token: object, fresh_id: bool = True,
                 stamped: bool = False) -> None:
        if type(response) is not web.Response or response.status != 200:
            return  # a stream, or an error (errors may depend on the day's usage)
        if not self._answers.admits(key):
            return  # a full cache, and the first time: noted only
        body = response.get(UNSTAMPED, response.body)
        if not isinstance(body, bytes) or len(body) + len(key[4]) > MAX_ENTRY_BYTES:
            return
        per_response = _PER_RESPONSE if fresh_id else _PER_RESPONSE - {REQ_ID}
        headers = CIMultiDict((k, v) for k, v in response.headers.items() if k not in per_response)
        answer = CachedAnswer(model, surface, neurons, estimated, response.status, headers, body, token,
                              fresh_id, stamped)
        self._answers.put(key, answer, len(body) + len(key[4]))

    def __len__(self) -> int:
        return len(self._answers)
