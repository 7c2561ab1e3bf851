"""The Workers AI binding (`env.AI`) as Miniflare's remote proxy delivers it.

Miniflare's AI plugin gives a Worker workerd's `cloudflare-internal:ai-api` client over a fetcher
that sends every request to the `remoteProxyConnectionString` URL itself (path kept), with the
binding's own URL in `MF-URL` (`https://workers-binding.ai/run?version=3`, `/ai-gateway/run`,
`/ai-api/models/search`, `/to-everything/markdown/…`), its headers renamed `MF-Header-<name>` and
`MF-Binding: AI` (cloudflare/workers-sdk, packages/miniflare/src/workers/shared/
remote-bindings-utils.ts). The client (cloudflare/workerd, src/cloudflare/internal/ai-api.ts) parses
an answer as JSON only when its content type is exactly `application/json`, hands any other body to
user code as a byte stream, and turns a failure into `InferenceUpstreamError` from
`{internalCode, description}` (or a v4 `errors` array); `cf-ai-req-id` becomes `lastRequestId`.

Connection strings: `http://HOST:PORT/` charges the default account (the banner's) and
`http://HOST:PORT/binding/<32-hex account id>` charges that account, which is how parallel tests keep
their stubs, faults, request log and usage apart (docs/workers.md). A call whose options carry
`extraHeaders: {"x-workers-ai-emulator-account": id}` is charged to that account instead.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from yarl import URL

from emulator.call import BinaryInput, Call, Surface
from emulator.errors import CFError, ErrorKind, Layer
from emulator.fakes.seed import dumps_joined
from emulator.limits import (
    INCREMENTAL_JSON_BYTES,
    LOOP_SLICE_SECONDS,
    expect_within_limit,
    off_loop,
    read_body,
)
from emulator.server import binding_markdown, native
from emulator.server.catalog_api import search_models
from emulator.server.edge import check_size
from emulator.server.gateway import gateway_headers
from emulator.server.inputs import parse_form, parse_json_body, validate
from emulator.server.native import lookup_model
from emulator.server.paths import ACCOUNT_ID, Kind, Route
from emulator.server.pipeline import Executed, answered, execute
from emulator.server.render import (
    JSON,
    REQ_ID,
    dumps,
    json_response,
    new_request_id,
    reporting,
    stream_events,
)
from emulator.server.stamps import Stamper
from emulator.server.state import REQUEST_ID, ROUTE, STATE, ServerState
from emulator.settings import DEFAULT_ACCOUNT

log = logging.getLogger("workers_ai_emulator.binding")

BINDING_HEADER = "MF-Binding"
URL_HEADER = "MF-URL"
HEADER_PREFIX = "mf-header-"
PATH = "/binding/{account}"
ACCOUNT_HEADER = "x-workers-ai-emulator-account"
# Query keys of the ReadableStream form that are the client's own, not model inputs.
STREAM_FORM_KEYS = frozenset({"version", "userInputs"})
REQUEST_ID_SUFFIX = re.compile(r" \([0-9a-f-]{36}\)$")
AI_ERROR_PREFIX = "AiError: "
BAD_INPUT_PREFIX = "Bad input: "

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The RPC sockets a server holds open, closed when it shuts down (else shutdown waits for them).
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("binding_sockets")


def connection_string(base: str, account: str | None = None) -> str:
    """What to give Miniflare as `ai.remoteProxyConnectionString` (the default account without one)."""
    base = base.rstrip("/")
    return f"{base}/binding/{account}" if account else f"{base}/"


def is_binding_request(request: web.Request) -> bool:
    return BINDING_HEADER in request.headers or BINDING_HEADER in request.query


def install(app: web.Application, fallback: Handler) -> None:
    """Route `/` and `/binding/{account}`; a request without `MF-Binding` goes to `fallback`."""

    async def entry(request: web.Request) -> web.StreamResponse:
        if not is_binding_request(request):
            return await fallback(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await hold_rpc_socket(request)
        state = request.app[STATE]
        if state.request_log is None:
            return await answer(request)
        return await state.request_log.record(request, answer)

    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_sockets)
    for path in ("/", PATH, PATH + "/"):
        app.router.add_route("*", path, entry, expect_handler=expect_within_limit)


async def hold_rpc_socket(request: web.Request) -> web.StreamResponse:
    """Miniflare's proxy client opens a capnweb RPC WebSocket next to its HTTP fetches; the emulator
    accepts it (so the session starts cleanly) and closes it on the first RPC message, since the
    methods it would carry (`aiSearch`, `gateway(…, {beta: true})`) are not emulated."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    async for message in ws:
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await ws.close(code=1011, message=b"workers-ai-emulator: env.AI RPC methods are not emulated")
            break
    return ws


async def _close_sockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"workers-ai-emulator is shutting down")


async def handle_route(request: web.Request, route: Route, state: ServerState,
                       request_id: str) -> web.StreamResponse:
    """The route table's handler signature for this surface (its requests arrive through `install`)."""
    return await answer(request)


def account_of(request: web.Request) -> str:
    """The connection string's account; a call's own `extraHeaders` account wins (a test that wraps
    `env.AI` with the JS helper's `withAccount`, when it cannot change the connection string)."""
    account = request.headers.get(f"MF-Header-{ACCOUNT_HEADER}") or request.match_info.get("account")
    if account is None:
        return DEFAULT_ACCOUNT
    if not ACCOUNT_ID.match(account):
        raise CFError(ErrorKind.COULD_NOT_ROUTE, path=request.path)
    return account


async def answer(request: web.Request) -> web.StreamResponse:
    """One binding request; every failure leaves in the shape the binding client reads errors from."""
    state = request.app[STATE]
    request_id = request[REQUEST_ID] = new_request_id()
    gateway = False
    try:
        account = account_of(request)
        request[ROUTE] = Route(Kind.BINDING, account)
        check_size(request, state.settings)
        target = URL(request.headers.get(URL_HEADER, ""))
        path = target.path.rstrip("/")
        gateway = path == "/ai-gateway/run"
        if path in ("/run", "/ai-gateway/run") and request.method == "POST":
            return await run(request, state, account, target, request_id, gateway=gateway)
        if path == "/ai-api/models/search" and request.method == "GET":
            records, _info = search_models(state, target.query)
            return json_response({"result": records, "success": True, "errors": [], "messages": []})
        if path.startswith(binding_markdown.PREFIX):
            return await binding_markdown.handle(request, path, state, account, request_id)
        raise CFError(ErrorKind.NO_ROUTE)
    except CFError as error:
        return error_response(error, request_id, gateway=gateway)
    except web.HTTPRequestEntityTooLarge:
        return error_response(CFError(ErrorKind.TOO_LARGE), request_id, gateway=gateway)
    except (web.HTTPException, ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unexpected error on a binding request (%s)", request.headers.get(URL_HEADER))
        return error_response(CFError(ErrorKind.SERVER_ERROR), request_id, gateway=gateway)


def inner_headers(request: web.Request) -> dict[str, str]:
    """The binding's own request headers, unwrapped from `MF-Header-<name>`."""
    return {
        name[len(HEADER_PREFIX):].lower(): value
        for name, value in request.headers.items()
        if name.lower().startswith(HEADER_PREFIX)
    }


def model_id(headers: dict[str, str]) -> str:
    """`cf-consn-model-id`, without the `prefix:` the binding's `prefix` option puts before it."""
    name = headers.get("cf-consn-model-id", "").strip()
    if not name:
        raise CFError(ErrorKind.INCOMPLETE_REQUEST, what="cf-consn-model-id header")
    prefix, sep, rest = name.partition(":")
    return rest if sep and not prefix.startswith("@") else name


async def read_call_inputs(
    request: web.Request, target: URL, headers: dict[str, str]
) -> tuple[dict[str, Any] | BinaryInput, dict[str, Any], dict[str, str], bytes, str]:
    """(inputs, options, REST query, REST body, content type) of a `run` request, in either form.

    JSON form: `{"inputs": {...}, "options": {...}}`. ReadableStream form: the stream is the raw body
    (its `contentType` in the content type), the other inputs are JSON in `?userInputs=` and the
    options are the other query keys, which is what REST takes as query parameters."""
    raw = await read_body(request)
    if "userInputs" in target.query:
        content_type = headers.get("content-type") or "application/octet-stream"
        try:
            extra = orjson.loads(target.query["userInputs"] or "{}")
        except orjson.JSONDecodeError:
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: userInputs is not valid JSON") from None
        if not isinstance(extra, dict):
            raise CFError(ErrorKind.BAD_INPUT, detail="Error: userInputs must be a JSON object")
        options = {k: v for k, v in target.query.items() if k not in STREAM_FORM_KEYS}
        query = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in extra.items()}
        form = parse_form(content_type, raw) if content_type.startswith("multipart/") else None
        return BinaryInput(raw, content_type, form=form), options, query, raw, content_type
    body = await parse_json_body(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: Type mismatch of '/', 'object' not in 'array'")
    inputs = body.get("inputs")
    options = body.get("options") or {}
    if not isinstance(inputs, dict):
        raise CFError(ErrorKind.BAD_INPUT, detail="Error: Type mismatch of '/', 'object' not in 'null'")
    if not isinstance(options, dict):
        options = {}
    large = len(raw) >= INCREMENTAL_JSON_BYTES  # the REST body serialised in slices, as `dumps` would
    rest_body = (await dumps_joined(inputs, orjson.OPT_SERIALIZE_NUMPY, slice_seconds=LOOP_SLICE_SECONDS)
                 if large else dumps(inputs))
    return inputs, options, {}, rest_body, JSON


def gateway_id_of(options: dict[str, Any]) -> str | None:
    gateway = options.get("gateway")
    if isinstance(gateway, dict) and isinstance(gateway.get("id"), str) and gateway["id"]:
        return str(gateway["id"])
    return None


async def run(request: web.Request, state: ServerState, account: str, target: URL, request_id: str, *,
              gateway: bool) -> web.StreamResponse:
    headers = inner_headers(request)
    name = model_id(headers)
    inputs, options, query, raw_body, content_type = await read_call_inputs(request, target, headers)
    request[ROUTE] = Route(Kind.BINDING, account, name)  # the request log shows the model even on a 5007
    model = lookup_model(state, name)
    await off_loop(len(raw_body), validate, model, inputs, state.quirks)
    gateway_id = gateway_id_of(options) if gateway else None
    # The REST request this call is: what record mode forwards and replay matches cassettes on.
    path = (f"/v1/{account}/{gateway_id}/workers-ai/{model.name}" if gateway_id
            else f"/client/v4/accounts/{account}/ai/run/{model.name}")
    call = Call(
        model=model,
        inputs=inputs,
        surface=Surface.BINDING,
        account_id=account,
        request_id=request_id,
        path=path,
        query=query,
        stream=isinstance(inputs, dict) and inputs.get("stream") is True,
        gateway_id=gateway_id,
        raw_body=raw_body,
        raw_content_type=content_type,
        raw_json=inputs if isinstance(inputs, dict) else None,  # what `raw_body` serialises
        headers={"Content-Type": content_type},
    )
    executed = await execute(state, call)
    return answered(await render(request, call, executed), executed)


def answer_headers(call: Call, executed: Executed, quirks: dict[str, bool]) -> dict[str, str]:
    """REST's answer headers (cf-ai-req-id, cf-ai-neurons), the gateway's ids on the gateway form;
    the body's own content type is set where the body is."""
    headers = {k: v for k, v in native.answer_headers(call, executed, quirks).items()
               if k.lower() != "content-type"}
    headers[REQ_ID] = call.request_id  # this call's id, also over a recorded answer
    if call.gateway_id:
        headers.update(gateway_headers())
    return headers


async def render(request: web.Request, call: Call, executed: Executed) -> web.StreamResponse:
    """The answer as the binding client reads it: bare result objects as exactly `application/json`,
    images, audio and SSE streams as bytes (user code gets a ReadableStream)."""
    outcome = executed.outcome
    state = request.app[STATE]
    headers = answer_headers(call, executed, state.quirks)
    if outcome.events is not None:
        return await stream_events(request, executed.events(outcome.events), headers=headers,
                                   status=outcome.status, report=executed.report)
    content_type = outcome.content_type.split(";")[0].strip() or "application/octet-stream"
    if outcome.body is not None and not (outcome.rendered and content_type == JSON):
        return web.Response(body=outcome.body, status=outcome.status, headers=headers,
                            content_type=content_type)
    if outcome.rendered:  # a REST answer (replayed or recorded): unwrap the v4 envelope
        body = outcome.body or b""
        if len(body) >= INCREMENTAL_JSON_BYTES and outcome.status < 400:
            return await unwrap_large_rest(body, outcome.status, headers)
        return unwrap_rest(body, outcome.status, headers)
    if outcome.status >= 400:
        return unwrap_rest(dumps(outcome.result), outcome.status, headers)
    # This call's ids and timestamps in place of the fake's placeholders, as over REST (server/stamps.py).
    stamper = Stamper(state.clock) if native.stamped(call.model) else None
    return json_response(outcome.result, status=outcome.status, headers=headers, stamper=stamper)


async def unwrap_large_rest(body: bytes, status: int, headers: dict[str, str]) -> web.Response:
    """`unwrap_rest` for a successful answer of INCREMENTAL_JSON_BYTES or more (a 20 MB embeddings
    result held the loop 0.7-1 s parsed, serialised and freed in one step each): parsed in slices
    (`parse_json_body`, which also frees it in slices, the result picked out of it included), the
    result serialised in slices."""
    try:
        parsed = await parse_json_body(body)
    except CFError:
        return unwrap_rest(body, status, headers)  # not JSON the sliced parser reads: as a small one
    if isinstance(parsed, dict) and "result" in parsed and "success" in parsed:
        parsed = parsed["result"]
    data = await dumps_joined(parsed, orjson.OPT_SERIALIZE_NUMPY, slice_seconds=LOOP_SLICE_SECONDS)
    return web.Response(body=data, status=status, content_type=JSON, headers=headers)


def unwrap_rest(body: bytes, status: int, headers: dict[str, str]) -> web.Response:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.Response(body=body, status=status, headers=headers, content_type=JSON)
    if status >= 400:
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        code, message = first.get("code", 1000), str(first.get("message", "Server Error"))
        return json_response(error_body(code, status, message), status=status, headers=headers)
    if isinstance(parsed, dict) and "result" in parsed and "success" in parsed:
        parsed = parsed["result"]
    return json_response(parsed, status=status, headers=headers)


def description(message: str) -> str:
    """The REST message as the binding words it: `4006: you have used up …`, `5006: Error: …`."""
    text = REQUEST_ID_SUFFIX.sub("", message)
    while text.startswith(AI_ERROR_PREFIX):
        text = text[len(AI_ERROR_PREFIX):]
    return text.removeprefix(BAD_INPUT_PREFIX)


def error_body(code: int, status: int, message: str, name: str | None = None) -> dict[str, Any]:
    """What the binding client reads a failure from: `internalCode` and `description` make the thrown
    `InferenceUpstreamError`'s message; `name` (AI Gateway's `AiGatewayError`) its name when given."""
    body: dict[str, Any] = {
        "errors": [{"message": message, "code": code}],
        "success": False,
        "result": {},
        "messages": [],
        "internalCode": code,
        "httpCode": status,
        "message": message,
        "description": description(message),
    }
    if name is not None:
        body["name"] = name
    return body


def error_response(error: CFError, request_id: str, *, gateway: bool = False) -> web.Response:
    name = "AiGatewayError" if error.layer is Layer.GATEWAY else None
    headers = {REQ_ID: request_id}
    if gateway:
        headers.update(gateway_headers())
    return reporting(json_response(error_body(error.code, error.status, error.message, name),
                                   status=error.status, headers=headers), error)
