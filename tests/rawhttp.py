"""Raw HTTP/1.1 over a socket: for requests an HTTP client library refuses to send (non-UTF-8 header
bytes, a Content-Encoding that lies, `Expect: 100-continue` with a body that never comes)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    interim: list[int] = field(default_factory=list)  # 1xx statuses received before the final one

    def json(self) -> object:
        return orjson.loads(self.body)


def _read_head(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytearray]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {bytes(buffer)[:200]!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    return head, bytearray(rest)


def request(
    base: str,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    send_body: bool = True,
    content_length: int | None = None,
    timeout: float = 30.0,
) -> RawResponse:
    """Send one request on a fresh connection and read the final answer (1xx lines are collected).

    `content_length` overrides the announced length; with `send_body=False` the body is withheld, as a
    client waiting for `100 Continue` does."""
    url = urlsplit(base)
    length = len(body) if content_length is None else content_length
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {url.netloc}".encode(), b"Connection: close",
             b"Content-Length: " + str(length).encode()]
    lines += [name + b": " + value for name, value in headers]
    wire = b"\r\n".join(lines) + b"\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(wire + (body if send_body else b""))
        buffer = bytearray()
        interim: list[int] = []
        while True:
            head, buffer = _read_head(sock, buffer)
            status_line, *header_lines = head.split(b"\r\n")
            status = int(status_line.split()[1])
            if 100 <= status < 200:
                interim.append(status)
                if not send_body:
                    break  # the server invited the body: the caller learns it did
                continue
            break
        parsed: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.decode("latin-1").partition(":")
            parsed[name.strip().lower()] = value.strip()
        if interim and not send_body:
            return RawResponse(status, parsed, b"", interim)
        wanted = int(parsed.get("content-length", "-1"))
        while wanted < 0 or len(buffer) < wanted:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            buffer += chunk
        return RawResponse(status, parsed, bytes(buffer if wanted < 0 else buffer[:wanted]), interim)
