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

_ID = re.compile(rb'(?<!\\)"id":"id-\d{13}"')
_CREATED = re.compile(rb'(?<!\\)"(created|created_at)":\d{10}(?=[,}])')
_HEX_ID = re.compile(rb'(?<!\\)"(chatcmpl-tool-|resp_|rs_|msg_)([0-9a-f]{16,32})"')


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
    """The identifiers of one call: every placeholder of a kind gets the same new value."""

    __slots__ = ("_hex", "_now", "created", "ident")

    def __init__(self, clock: Clock) -> None:
        now = clock.timestamp()
        self.ident = b'"id":"id-%d"' % _call_ms(clock, now)
        self.created = b"%d" % int(now)
        self._now = repr(now).encode()
        self._hex: dict[bytes, bytes] = {}

    def _new_hex(self, match: re.Match[bytes]) -> bytes:
        old = match.group(2)
        new = self._hex.get(old)
        if new is None:
            digest = hashlib.blake2b(old + b"@" + self._now, digest_size=16).hexdigest().encode()
            new = self._hex[old] = digest[: len(old)]
        return b'"' + match.group(1) + new + b'"'

    def stamp(self, body: bytes) -> bytes:
        body = _ID.sub(self.ident, body)
        body = _CREATED.sub(lambda m: b'"' + m.group(1) + b'":' + self.created, body)
        return _HEX_ID.sub(self._new_hex, body)

    def stamp_text(self, data: str) -> str:
        return self.stamp(data.encode()).decode()
