"""Requests a hostile tester sent that once got a 5xx or an early `100 Continue`: each is now a
Cloudflare-shaped 4xx (or a control-plane 400), over real HTTP against a server with `--token`."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulator.launch.background import BackgroundServer
from tests.conftest import ACCOUNT
from tests.live_server import live_server
from tests.rawhttp import request
from tests.serving import serve

TOKEN = "hostile-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN = f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/meta/llama-3.1-8b-instruct"
ROUTES = [
    RUN,
    f"/client/v4/accounts/{ACCOUNT}/ai/v1/chat/completions",
    f"/client/v4/accounts/{ACCOUNT}/ai/models/search",
    "/client/v4/graphql",
    f"/v1/{ACCOUNT}/gw/workers-ai/@cf/meta/llama-3.1-8b-instruct",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    data_dir: Path = tmp_path_factory.mktemp("hostile")
    with live_server(data_dir=data_dir, token=TOKEN) as live:
        yield live


def assert_cloudflare_4xx(status: int, body: object, code: int | None = None) -> None:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and body["success"] is False, body
    assert body["errors"] and all(isinstance(e["code"], int) for e in body["errors"]), body
    if code is not None:
        assert body["errors"][0]["code"] == code, body


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("auth", [True, False], ids=["with-token", "without-auth"])
@pytest.mark.parametrize("encoding", [b"gzip", b"deflate", b"br", b"x-nonsense"])
def test_a_body_that_is_not_its_content_encoding_is_a_clean_4xx(
    server: BackgroundServer, path: str, auth: bool, encoding: bytes
) -> None:
    headers = [(b"Content-Type", b"application/json"), (b"Content-Encoding", encoding)]
    if auth:
        headers.append((b"Authorization", f"Bearer {TOKEN}".encode()))
    answer = request(server.base, "POST", path, headers, b'{"prompt": "not gzip at all"}')
    if encoding == b"br":
        # Refused by aiohttp's HTTP parser before any handler runs (no brotli decoder is installed);
        # answered by the runner's connection handler (limits._CloudflareErrors).
        assert answer.status == 400 and answer.json()["errors"][0]["code"] == 6003, answer
    if encoding == b"x-nonsense":
        assert answer.status < 500, answer  # an unknown coding is passed through as is
        return
    assert answer.headers["content-type"].startswith("application/json"), answer
    assert_cloudflare_4xx(answer.status, answer.json())


def test_a_real_gzip_body_is_decoded(server: BackgroundServer) -> None:
    headers = [(b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip"),
               (b"Authorization", f"Bearer {TOKEN}".encode())]
    answer = request(server.base, "POST", RUN, headers, gzip.compress(b'{"prompt": "hi"}'))
    assert answer.status == 200, answer.body[:300]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Authorization", b"Bearer \xff")],
        [(b"Authorization", b"Bearer \xc3\x28abc")],
        [(b"X-Auth-Key", b"\xff\xfe"), (b"X-Auth-Email", b"a@example.com")],
        [(b"X-Auth-Key", b"key"), (b"X-Auth-Email", b"\xff@example.com")],
        [(b"cf-aig-authorization", b"Bearer \xff")],
    ],
    ids=["bearer-ff", "bearer-bad-utf8", "auth-key-ff", "auth-email-ff", "gateway-ff"],
)
def test_non_utf8_credentials_are_refused_not_crashed(
    server: BackgroundServer, headers: list[tuple[bytes, bytes]]
) -> None:
    for path in (RUN, f"/v1/{ACCOUNT}/gw/workers-ai/@cf/meta/llama-3.1-8b-instruct"):
        answer = request(server.base, "POST", path, [(b"Content-Type", b"application/json"), *headers],
                         b'{"prompt": "hi"}')
        assert_cloudflare_4xx(answer.status, answer.json())


def test_non_utf8_control_plane_token_is_a_401(server: BackgroundServer) -> None:
    answer = request(server.base, "GET", "/__emulator__/requests", [(b"Authorization", b"Bearer \xff")])
    assert answer.status == 401, answer


BIG = "9" * 5000


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/__emulator__/usage?day=9999-12-31", None, 400),
        ("GET", "/__emulator__/usage?day=0001-01-01", None, 400),
        ("GET", "/__emulator__/usage/hourly?day=9999-12-31", None, 400),
        ("GET", f"/__emulator__/requests/{BIG}", None, 404),
        ("GET", f"/__emulator__/requests?limit={BIG}", None, 400),
        ("POST", "/__emulator__/clock", {"now": "9999-12-31T23:00:00Z"}, 400),
        ("POST", "/__emulator__/clock", {"now": "0001-01-01T00:00:00+05:00"}, 400),
        ("POST", "/__emulator__/clock", {"now": 12345}, 400),
        ("POST", "/__emulator__/clock", {"advance_seconds": 1e300}, 400),
        ("POST", "/__emulator__/clock", {"advance_seconds": -1e300}, 400),
        ("POST", "/__emulator__/clock", {"advance_seconds": 10**400}, 400),
    ],
    ids=["usage-day-9999", "usage-day-0001", "hourly-day-9999", "request-id-5000-digits",
         "limit-5000-digits", "clock-9999", "clock-0001-offset", "clock-number", "advance-1e300",
         "advance-minus-1e300", "advance-10e400"],
)
def test_control_plane_out_of_range_values_are_400s(
    server: BackgroundServer, method: str, path: str, body: object, status: int
) -> None:
    answer = requests.request(method, server.base + path, json=body, headers=AUTH, timeout=30)
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["success"] is False
    # Nothing was accepted: usage and the dashboard still answer.
    for after in ("/__emulator__/usage", "/__emulator__/usage/hourly", "/__emulator__/"):
        assert requests.get(server.base + after, headers=AUTH, timeout=30).status_code == 200, after


GRAPHQL_LIMIT = ('{ viewer { accounts(filter: {accountTag: "%s"}) { aiInferenceAdaptiveGroups(limit: %s, '
                 'filter: {date_geq: "2026-01-01"}) { sum { totalNeurons } } } } }')


@pytest.mark.parametrize(
    ("method", "path", "body", "files", "status"),
    [
        ("GET", f"/__emulator__/?request={BIG}", None, None, 200),
        ("GET", f"/__emulator__/dashboard/parts?request={BIG}", None, None, 200),
        ("POST", "/client/v4/graphql", {"query": GRAPHQL_LIMIT % (ACCOUNT, BIG)}, None, 200),
        ("GET", f"/client/v4/accounts/{ACCOUNT}/ai/finetunes/public?limit=1e400", None, None, 400),
        ("POST", f"/client/v4/accounts/{ACCOUNT}/ai/run/@cf/black-forest-labs/flux-2-dev", None,
         {"prompt": (None, "a cat"), "width": (None, BIG)}, None),
        ("POST", "/__emulator__/faults", {"kind": BIG}, None, 400),
        ("POST", "/__emulator__/stubs", {"error": "\u00b2"}, None, 400),
    ],
    ids=["dashboard-request", "dashboard-parts-request", "graphql-limit", "finetunes-limit-1e400",
         "multipart-width", "fault-code", "stub-code-superscript"],
)
def test_integers_from_clients_past_int_limits_are_refused_not_500s(
    server: BackgroundServer, method: str, path: str, body: object, files: object, status: int | None
) -> None:
    """int() refuses 4,300 digits (and "\u00b2", a digit to str.isdigit): every integer a client
    writes is checked with limits.is_number_text first (a multipart width that is not a number is
    left to the model's defaults)."""
    answer = requests.request(method, server.base + path, json=body, files=files, headers=AUTH, timeout=30)
    assert answer.status_code == status if status else answer.status_code < 500, answer.text[:300]
    if path.startswith("/__emulator__/?"):
        assert "is not in the log" in answer.text or "Request 9" in answer.text
    elif "graphql" in path:
        errors = answer.json()["errors"]
        assert errors and "more than 18 digits" in errors[0]["message"], errors
    elif path.startswith("/client/v4/accounts") and status:
        assert_cloudflare_4xx(answer.status_code, answer.json())
    elif status == 400:
        assert answer.json()["success"] is False


def test_clock_at_the_last_allowed_moment_keeps_usage_and_dashboard_working(server: BackgroundServer) -> None:
    try:
        moved = requests.post(server.base + "/__emulator__/clock", json={"now": "9998-12-31T23:00:00Z"},
                              headers=AUTH, timeout=30)
        assert moved.status_code == 200, moved.text
        assert requests.post(server.base + RUN, json={"prompt": "hi"}, headers=AUTH, timeout=30).ok
        for after in ("/__emulator__/usage", "/__emulator__/usage/hourly", "/__emulator__/"):
            assert requests.get(server.base + after, headers=AUTH, timeout=30).status_code == 200, after
        past = requests.post(server.base + "/__emulator__/clock", json={"advance_seconds": 7200},
                             headers=AUTH, timeout=30)
        assert past.status_code == 400, past.text
    finally:
        requests.post(server.base + "/__emulator__/clock", json={"real": True}, headers=AUTH, timeout=30)


def test_openapi_needs_the_token_like_every_control_route_but_health(server: BackgroundServer) -> None:
    assert requests.get(server.base + "/__emulator__/openapi.json", timeout=30).status_code == 401
    assert requests.get(server.base + "/__emulator__/openapi.json", headers=AUTH, timeout=60).ok
    assert requests.get(server.base + "/__emulator__/health", timeout=30).ok


def test_expect_continue_with_an_oversized_length_gets_413_without_100(server: BackgroundServer) -> None:
    headers = [(b"Authorization", f"Bearer {TOKEN}".encode()), (b"Content-Type", b"application/json"),
               (b"Expect", b"100-continue")]
    answer = request(server.base, "POST", RUN, headers, send_body=False, content_length=30_000_000)
    assert answer.interim == [], "the client was invited to send 30 MB it would be refused"
    assert_cloudflare_4xx(answer.status, answer.json(), 3006)
    assert answer.status == 413


def test_expect_continue_with_an_allowed_length_gets_100_then_the_answer(server: BackgroundServer) -> None:
    body = b'{"prompt": "hi"}'
    headers = [(b"Authorization", f"Bearer {TOKEN}".encode()), (b"Content-Type", b"application/json"),
               (b"Expect", b"100-continue")]
    invited = request(server.base, "POST", RUN, headers, body, send_body=False)
    assert invited.interim == [100]
    answer = request(server.base, "POST", RUN, headers, body)
    assert answer.interim == [100] and answer.status == 200, answer


@pytest.mark.parametrize("path", ["/__emulator__/stubs", "/__emulator__/clock", "/__emulator__/reset",
                                  "/__emulator__/usage", "/", f"/binding/{ACCOUNT}"])
@pytest.mark.parametrize("auth", [True, False], ids=["with-token", "without-auth"])
def test_expect_continue_past_the_limit_on_other_routes_gets_413_without_100(
    server: BackgroundServer, path: str, auth: bool
) -> None:
    headers = [(b"Content-Type", b"application/json"), (b"Expect", b"100-continue")]
    if auth:
        headers.append((b"Authorization", f"Bearer {TOKEN}".encode()))
    answer = request(server.base, "POST", path, headers, send_body=False, content_length=30_000_000)
    assert answer.interim == [], f"{path} invited the client to send 30 MB it would refuse"
    assert answer.status == 413, answer
    assert_cloudflare_4xx(answer.status, answer.json(), 3006)


def test_expect_continue_within_the_limit_on_the_control_plane_gets_100_then_the_answer(
    server: BackgroundServer,
) -> None:
    body = b'{"prompt": "x", "text": "y"}'
    headers = [(b"Authorization", f"Bearer {TOKEN}".encode()), (b"Content-Type", b"application/json"),
               (b"Expect", b"100-continue")]
    answer = request(server.base, "POST", "/__emulator__/stubs", headers, body)
    assert answer.interim == [100] and answer.status == 201, answer
    assert requests.delete(server.base + "/__emulator__/stubs", headers=AUTH, timeout=30).ok


def test_a_chunked_control_plane_body_past_the_limit_is_a_cloudflare_413(tmp_path: Path) -> None:
    with live_server(data_dir=tmp_path, token=TOKEN, max_body_bytes=1000) as live:
        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            yield b'{"prompt": "x", "text": "'
            yield b"y" * 5000
            yield b'"}'
        answer = requests.post(live.base + "/__emulator__/stubs", data=chunks(), timeout=30,
                               headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert_cloudflare_4xx(answer.status_code, answer.json(), 3006)


def test_a_parse_error_log_line_does_not_print_credential_headers(tmp_path: Path) -> None:
    cookie, key = "session=SUPERSECRETCOOKIE42", "KEYSECRET-0987654321"
    with serve("--token", TOKEN, data_dir=tmp_path) as (base, proc):
        for line in (f"Cookie: {cookie}\x01x", f"X-Auth-Key: {key}\x01", f"Authorization: Bearer {key}\x7f"):
            answer = request(base, "POST", RUN, [tuple(line.encode("latin-1").split(b": ", 1))], b"{}")
            assert answer.status == 400
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "Invalid header value char" in stderr  # the parse errors were logged
    assert "SUPERSECRETCOOKIE42" not in stderr and key not in stderr, stderr[-3000:]


def test_an_over_long_credential_header_is_not_printed_in_the_log(tmp_path: Path) -> None:
    cookie, key, bearer = "session=COOKIESECRET4", "LONGXAUTHSECRET", "LONGBEARERSECRET"
    with serve("--token", TOKEN, data_dir=tmp_path) as (base, proc):
        sent = ((b"Cookie", cookie), (b"X-Auth-Key", key), (b"Authorization", f"Bearer {bearer}"))
        for name, value in sent:
            # Past aiohttp's 8190-byte line limit: its error quotes the start of the value.
            answer = request(base, "POST", RUN, [(name, value.encode() + b"Q" * 9000)], b"{}")
            assert answer.status == 400
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert "Got more than 8190 bytes when reading" in stderr  # the parse errors were logged
    for secret in (cookie, key, bearer):
        assert secret not in stderr, stderr[-3000:]


def test_aborted_streams_are_logged_as_cut_with_their_status(tmp_path: Path) -> None:
    import socket
    import time

    with live_server(data_dir=tmp_path, plan="paid") as live:
        # Each event 20 ms apart: the client is gone long before the stream ends.
        requests.post(live.base + "/__emulator__/faults", json={"kind": "slow_stream", "delay_ms": 20},
                      timeout=30).raise_for_status()
        body = b'{"prompt": "a long story", "stream": true, "max_tokens": 500}'
        port = int(live.base.rsplit(":", 1)[1])
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"POST " + RUN.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                             b"Content-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            entries = requests.get(live.base + "/__emulator__/requests", timeout=30).json()["requests"]
            if len(entries) == 20 and all(e["status"] for e in entries):
                break
            time.sleep(0.1)
        assert len(entries) == 20
        assert all(e["status"] == 200 and e["cut"] for e in entries), [(e["status"], e["cut"])
                                                                        for e in entries]
