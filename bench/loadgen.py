"""A raw-asyncio HTTP/1.1 keep-alive load generator: closed loop, N connections, latency per request.

Used when `wrk` is not installed. It parses only what the emulator and the baseline send
(Content-Length bodies; chunked bodies up to their `0` chunk), which keeps it cheap enough that
one process drives a single-core aiohttp server; several processes can be combined (`--procs`).
Run as a script it reads a JSON job on stdin and prints a JSON result, so it can be pinned to a core.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Job:
    host: str
    port: int
    requests: list[dict[str, Any]]  # {"method", "path", "body", "headers"}; rotated round-robin
    concurrency: int
    duration: float
    max_requests: int = 0  # 0 = until the duration is over
    # Every `marker` in a body becomes vary_base + 16 × the request's sequence number: no two requests
    # of a varied load carry the same bytes (several processes get bases 1 apart).
    vary_base: int = 0
    marker: str = "@@N@@"


@dataclass(slots=True)
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    next_index: int = 0


Wire = bytes | tuple[bytes, list[bytes]]  # fixed bytes, or (head without Content-Length, body parts)


def encode(job: Job) -> list[Wire]:
    """Each request as the exact bytes written on the socket, or as a template when its body varies."""
    out: list[Wire] = []
    marker = job.marker.encode()
    for spec in job.requests:
        body = spec.get("body", "").encode()
        headers = {"Host": f"{job.host}:{job.port}", **spec.get("headers", {})}
        head = f"{spec.get('method', 'GET')} {spec['path']} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if marker in body:
            out.append((head.encode(), body.split(marker)))
            continue
        if body or spec.get("method", "GET") == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        out.append((head + "\r\n").encode() + body)
    return out


def fill(template: tuple[bytes, list[bytes]], number: int) -> bytes:
    head, parts = template
    body = str(number).encode().join(parts)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Connection(asyncio.Protocol):
    """One keep-alive connection that sends the next request as soon as the previous answer ends."""

    def __init__(self, wire: list[Wire], tally: Tally, deadline: float, limit: int, vary_base: int,
                 done: asyncio.Future[None]) -> None:
        self.wire, self.tally, self.deadline, self.limit, self.done = wire, tally, deadline, limit, done
        self.vary_base = vary_base
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.started = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        tally = self.tally
        if time.perf_counter() >= self.deadline or (self.limit and tally.next_index >= self.limit):
            assert self.transport is not None
            self.transport.close()
            return
        request = self.wire[tally.next_index % len(self.wire)]
        tally.next_index += 1
        if isinstance(request, tuple):
            request = fill(request, self.vary_base + 16 * tally.next_index)
        self.started = time.perf_counter()
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.response_end()
        if end is None:
            return
        status = int(self.buffer[9:12])
        del self.buffer[:end]
        self.tally.latencies.append(time.perf_counter() - self.started)
        if status >= 400:
            self.tally.errors += 1
        self.send()

    def response_end(self) -> int | None:
        buf = self.buffer
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(buf[:head_end]).lower()
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            line_end = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17: line_end if line_end >= 0 else None])
            end = head_end + 4 + length
            return end if len(buf) >= end else None
        last = buf.find(b"\r\n0\r\n\r\n", head_end)
        return last + 7 if last >= 0 else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(job: Job) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    wire = encode(job)
    tally = Tally()
    started = time.perf_counter()
    deadline = started + job.duration
    futures = []
    for _ in range(job.concurrency):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda d=done: Connection(wire, tally, deadline, job.max_requests,
                                                                   job.vary_base, d),
                                     job.host, job.port)
        futures.append(done)
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    return {"requests": len(tally.latencies), "errors": tally.errors, "elapsed": elapsed,
            "latencies": tally.latencies}


def main() -> None:
    job = Job(**json.load(sys.stdin))
    json.dump(asyncio.run(run(job)), sys.stdout)


if __name__ == "__main__":
    main()
