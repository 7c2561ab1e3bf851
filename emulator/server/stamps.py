"""Per-call identifiers and timestamps written into an answer as it leaves.

The fakes are pure functions of the request, so what they put in `id`, `created` and the tool-call and
Responses ids is a placeholder of the right shape. Cloudflare gives every call its own: `id-<epoch ms>`
and `created` (epoch seconds) from the time of the call, and tool-call ids of random hex
(fixtures/real/v1-chat-stream-gpt-oss-20b-toolcall.json). A `Stamper` rewrites the placeholders of one
call, in a rendered body or in each event of a stream, from the server's clock (which the control
plane can freeze, so a snapshot still pins them). The hex ids are a hash of the placeholder and the
clock's time: new on every call while the clock moves, the same for the same request under a frozen one.
Two calls in the same millisecond of a moving clock still get distinct ids: the second takes the next
millisecond, the way `uuid.uuid1` bumps its clock sequence, so an id stays a key a client can index by.
Only keys outside JSON strings are touched: a quote escaped inside generated text is never matched.
"""

from __future__ import annotations

import hashlib
import re
import threading

from emulator.accounting.ledger import Clock

# No look-behind for an escaped quote in the patterns: it would keep `re` from skipping ahead to the
# literal, and scanning a 500-byte answer byte by byte costs ~18 µs a pattern. The callbacks check
# the byte before a match instead (`_escaped`).
_ID = re.compile(rb'"id":"id-\d{13}"')
_CREATED = re.compile(rb'"(created|created_at)":\d{10}(?=[,}])')
_HEX_ID = re.compile(rb'"(chatcmpl-tool-|resp_|rs_|msg_)([0-9a-f]{16,32})"')
_BACKSLASH = ord("\\")


def _escaped(match: re.Match[bytes]) -> bool:
    """The match starts at a quote escaped inside a JSON string: text, not a key."""
    start = match.start()
    return start > 0 and match.string[start - 1] == _BACKSLASH


_last_ms = 0
_last_ms_lock = threading.Lock()


def _call_ms(clock: Clock, now: float) -> int:
    """The millisecond an `id-<ms>` names: the clock's, made unique per process while the clock moves."""
    global _last_ms
    ms = int(now * 1000)
    if clock.frozen:
        return ms
    with _last_ms_lock:
        ms = _last_ms = max(ms, _last_ms + 1)
    return ms


class Stamper:
    """The identifiers of one call: every placeholder of a kind gets the same new value. The clock is
    read when the call is stamped; the id's millisecond is taken only by an answer that has an id."""

    __slots__ = ("_clock", "_created", "_hex", "_ident", "_now")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._now: float | None = None
        self._ident: bytes | None = None
        self._created: bytes | None = None
        self._hex: dict[bytes, bytes] = {}

    def _time(self) -> float:
        if self._now is None:
            self._now = self._clock.timestamp()
        return self._now

    def _new_id(self, match: re.Match[bytes]) -> bytes:
        if _escaped(match):
            return match.group(0)
        if self._ident is None:
            self._ident = b'"id":"id-%d"' % _call_ms(self._clock, self._time())
        return self._ident

    def _new_created(self, match: re.Match[bytes]) -> bytes:
        if _escaped(match):
            return match.group(0)
        if self._created is None:
            self._created = b"%d" % int(self._time())
        return b'"' + match.group(1) + b'":' + self._created

    def _new_hex(self, match: re.Match[bytes]) -> bytes:
        if _escaped(match):
            return match.group(0)
        old = match.group(2)
        new = self._hex.get(old)
        if new is None:
            now = repr(self._time()).encode()
            digest = hashlib.blake2b(old + b"@" + now, digest_size=16).hexdigest().encode()
            new = self._hex[old] = digest[: len(old)]
        return b'"' + match.group(1) + new + b'"'

    def stamp(self, body: bytes) -> bytes:
        body = _ID.sub(self._new_id, body)
        body = _CREATED.sub(self._new_created, body)
        return _HEX_ID.sub(self._new_hex, body)

    def stamp_text(self, data: str) -> str:
        return self.stamp(data.encode()).decode()
