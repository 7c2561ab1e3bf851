"""Requests aiohttp's own HTTP parser refuses (bad request lines, header lines, chunked framing, a
Content-Encoding it cannot decode) get a Cloudflare-shaped JSON error, not aiohttp's plain-text 400.
Sent as raw bytes over asyncio streams to a real server with `--token`."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from emulator.launch.background import BackgroundServer
from tests.live_server import live_server
from tests.serving import serve

TOKEN = "parser-error-token"
ACCOUNT = "0123456789abcdef0123456789abcdef"
RUN = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
PATHS = [RUN, f"/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions", "/__emulator__/stubs", "/"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    data_dir: Path = tmp_path_factory.mktemp("parser")
    with live_server(data_dir=data_dir, token=TOKEN) as live:
        yield live


async def _exchange(base: str, wire: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(wire)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines if line)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 30)
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


def exchange(base: str, wire: bytes) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(_exchange(base, wire))


def post(path: str, headers: list[bytes], body: bytes = b'{"prompt": "hi"}', *, length: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: localhost", b"Connection: close",
             f"Authorization: Bearer {TOKEN}".encode(), *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_cloudflare_400(answer: tuple[int, dict[str, str], bytes]) -> dict:
    status, headers, body = answer
    assert status == 400, answer
    assert headers["content-type"].startswith("application/json"), answer
    assert headers["server"] == "cloudflare" and "cf-ray" in headers, headers  # the edge's, as every answer
    envelope = orjson.loads(body)
    assert list(envelope) == ["result", "success", "errors", "messages"], envelope  # edge key order
    assert envelope["success"] is False and envelope["result"] is None
    return envelope["errors"][0]


HOSTILE = {
    "br-encoding": post(RUN, [b"Content-Type: application/json", b"Content-Encoding: br"]),
    "header-without-colon": post(RUN, [b"Content-Type application/json"]),
    "control-char-in-header": post(RUN, [b"X-Thing: a\x01b"]),
    "length-and-chunked": post(RUN, [b"Transfer-Encoding: chunked"]),
    "bad-request-line": b"GARBAGE\r\n\r\n",
    "bad-http-version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "header-line-too-long": post(RUN, [b"X-Long: " + b"a" * 20_000]),
    "bad-chunk-size-line": post(RUN, [b"Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n", length=False),
}


@pytest.mark.parametrize("wire", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_request_the_http_parser_refuses_is_a_cloudflare_400(server: BackgroundServer, wire: bytes) -> None:
    error = assert_cloudflare_400(exchange(server.base, wire))
    assert error["code"] == 6003 and error["message"].startswith("Invalid request: "), error
    assert not error["message"].endswith(":") and "aaaa" not in error["message"], error


@pytest.mark.parametrize("path", PATHS)
def test_brotli_bodies_are_a_cloudflare_400_on_every_route(server: BackgroundServer, path: str) -> None:
    error = assert_cloudflare_400(
        exchange(server.base, post(path, [b"Content-Type: application/json", b"Content-Encoding: br"])))
    assert error == {"code": 6003,
                     "message": "Invalid request: the body's Content-Encoding is not supported"}, error


def test_bad_chunked_framing_after_the_head_is_a_cloudflare_400(server: BackgroundServer) -> None:
    # The head parses; the framing fails while the handler reads the body.
    wire = post(RUN, [b"Content-Type: application/json", b"Transfer-Encoding: chunked"],
                b"4\r\n{}\r\n", length=False) + b"zz\r\n\r\n"
    status, headers, body = exchange(server.base, wire)
    assert status == 400 and headers["content-type"].startswith("application/json"), (status, body)
    error = orjson.loads(body)["errors"][0]
    assert error["code"] in (5006, 6003), error


def test_the_server_keeps_answering_after_parser_errors(server: BackgroundServer) -> None:
    for wire in HOSTILE.values():
        exchange(server.base, wire)
    health = b"GET /__emulator__/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, _, body = exchange(server.base, health)
    assert status == 200, body


def test_a_refused_request_is_one_log_line_without_a_traceback(tmp_path: Path) -> None:
    json_type = b"Content-Type: application/json"
    multipart = b"Content-Type: multipart/form-data; boundary=XX"
    form = (b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--XX--\r\n")
    refused = [  # what is sent, the codes its answer may carry
        (post(RUN, [json_type, b"Content-Encoding: gzip"]), {5006}),  # not gzip at all
        (post(RUN, [json_type, b"Content-Encoding: gzip"], gzip.compress(b'{"prompt": "hi"}')[:-12]), {5006}),
        (post(RUN, [json_type, b"Content-Encoding: deflate"]), {5006}),
        (post(RUN, [json_type, b"Content-Encoding: br"]), {6003}),
        (post(RUN, [json_type, b"Content-Encoding: zstd"]), {6003}),
        # Framing that fails after the head: the parser's error, or the handler's while it reads.
        (post(RUN, [json_type, b"Transfer-Encoding: chunked"], b"4\r\n{}\r\n", length=False) + b"zz\r\n\r\n",
         {5006, 6003}),
        (b"GET /x\x01y HTTP/1.1\r\nHost: x\r\n\r\n", {6003}),
        (post(RUN, [b"X-Thing: a\x01b"]), {6003}),
        (post(RUN, [b"X-Long: " + b"a" * 20_000]), {6003}),
        # Multipart routes read their body with aiohttp's multipart reader.
        (post(f"/client/v4/accounts/{ACCOUNT}/ai/tomarkdown", [multipart, b"Content-Encoding: gzip"], form),
         {5006}),
        (post(f"/client/v4/accounts/{ACCOUNT}/ai/finetunes/lora-x/finetune-assets",
              [multipart, b"Content-Encoding: gzip"], form), {5006}),
    ]
    with serve("--token", TOKEN, data_dir=tmp_path) as (base, proc):
        finetune = b'{"model": "@cf/mistral/mistral-7b-instruct-v0.2-lora", "name": "lora-x"}'
        created = exchange(base, post(f"/client/v4/accounts/{ACCOUNT}/ai/finetunes", [json_type], finetune))
        assert created[0] == 200, created
        for wire, code in refused:
            status, headers, body = exchange(base, wire)
            assert status == 400 and headers["content-type"].startswith("application/json"), (wire[:80], body)
            assert orjson.loads(body)["errors"][0]["code"] in code, (wire[:80], body)
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "Traceback" not in stderr and " ERROR " not in stderr, stderr[-3000:]
    # One line each: the method, path and reason of a body that fails its Content-Encoding, the reason of
    # a parser refusal (a gzip body cut short decodes to broken JSON, which is no HTTP fault).
    refused_body = "POST /client/v4/accounts/{account_id}/ai/run/@cf/meta/llama-3.1-8b-instruct: body refused"
    assert stderr.count(refused_body) == 2 and "Content-Encoding 'gzip'" in stderr, stderr
    assert stderr.count(": body refused") == 4, stderr
    assert stderr.count("refused by the HTTP parser: 400") == 6, stderr
