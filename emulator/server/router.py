"""Turns a raw request path into a `Route` (which surface, account, model), or a Cloudflare edge error.

aiohttp's router cannot express Cloudflare's quirks (a doubled slash before `ai`, model names with
slashes, percent-encoded or not), so the emulator parses the path itself. The fixed paths under
`…/ai/` come from the route table (server/routes.py).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

from emulator.errors import CFError, ErrorKind
from emulator.server.paths import ACCOUNT_ID, API_PREFIX, Kind, Route
from emulator.server.routes import AI_ENDPOINTS

# A WebSocket upgrade (GET with `Upgrade: websocket`) reaches `parse` as this method.
WEBSOCKET = "WEBSOCKET"
FINETUNE_ASSETS = re.compile(r"^finetunes/([^/]+)/finetune-assets/?$")


def _model_from(rest: str) -> str:
    # The cloudflare SDK sends `@cf%2Fmeta%2F…`; aiohttp may or may not have decoded it already.
    return unquote(rest).strip("/")


def parse(method: str, raw_path: str, *, allow_double_slash: bool = True) -> Route:
    """Route a Cloudflare-namespace path; raises CFError with the edge's own codes otherwise."""
    return _parse(method, raw_path, allow_double_slash)


# Routes are immutable and clients repeat their paths: remember the last few thousand (a path that
# fails raises, and failures are not remembered).
@functools.lru_cache(maxsize=1024)
def _parse(method: str, raw_path: str, allow_double_slash: bool) -> Route:
    path = raw_path.split("?", 1)[0]
    if path.startswith("/v1/"):
        return _parse_gateway(method, path)
    if path == f"{API_PREFIX}/graphql" and method == "POST":
        return Route(Kind.GRAPHQL)
    if not path.startswith(API_PREFIX + "/"):
        raise CFError(ErrorKind.NO_ROUTE)
    rest = path[len(API_PREFIX) + 1 :]
    if not rest.startswith("accounts/"):
        raise CFError(ErrorKind.NO_ROUTE)
    account_id, _, tail = rest[len("accounts/") :].partition("/")
    if not ACCOUNT_ID.match(account_id):
        raise CFError(ErrorKind.COULD_NOT_ROUTE, path=unquote(path))
    doubled = False
    if tail.startswith("/"):
        if not allow_double_slash:
            raise CFError(ErrorKind.NO_ROUTE)
        doubled = True
        tail = tail.lstrip("/")
    if not tail.startswith("ai/"):
        raise CFError(ErrorKind.NO_ROUTE)
    ai_path = tail[3:]
    if ai_path.startswith("run/") or ai_path.startswith("run%2F"):
        if method not in ("POST", WEBSOCKET):
            raise CFError(ErrorKind.METHOD_NOT_ALLOWED)
        model = _model_from(ai_path[4:])
        if not model:
            raise CFError(ErrorKind.NO_ROUTE)
        run_kind = Kind.REALTIME if method == WEBSOCKET else Kind.RUN
        return Route(run_kind, account_id, model, doubled_slash=doubled)
    assets = FINETUNE_ASSETS.match(ai_path)
    if assets is not None:
        if method != "POST":
            raise CFError(ErrorKind.METHOD_NOT_ALLOWED)
        return Route(Kind.FINETUNE_ASSETS, account_id, doubled_slash=doubled, resource=unquote(assets[1]))
    endpoint = AI_ENDPOINTS.get((method, ai_path.rstrip("/")))
    if endpoint is None:
        if any(p == ai_path.rstrip("/") for _, p in AI_ENDPOINTS):
            raise CFError(ErrorKind.METHOD_NOT_ALLOWED)
        raise CFError(ErrorKind.NO_ROUTE)
    return Route(endpoint, account_id, doubled_slash=doubled)


def _parse_gateway(method: str, path: str) -> Route:
    """AI Gateway forms: /v1/{account}/{gateway}/workers-ai/{model|run/model|v1/...} and /compat/..."""
    parts = path[len("/v1/") :].split("/", 3)
    if len(parts) < 4 or method != "POST":
        raise CFError(ErrorKind.NO_ROUTE)
    account_id, gateway_id, provider, rest = parts
    if not ACCOUNT_ID.match(account_id):
        raise CFError(ErrorKind.COULD_NOT_ROUTE, path=unquote(path))
    rest = rest.strip("/")
    if provider == "compat":
        if rest == "chat/completions":
            return Route(Kind.COMPAT_CHAT, account_id, gateway_id=gateway_id)
        if rest == "embeddings":
            return Route(Kind.COMPAT_EMBEDDINGS, account_id, gateway_id=gateway_id)
        raise CFError(ErrorKind.NO_ROUTE)
    if provider != "workers-ai":
        raise CFError(ErrorKind.NO_ROUTE)
    if rest == "v1/chat/completions":
        return Route(Kind.CHAT, account_id, gateway_id=gateway_id)
    if rest == "v1/embeddings":
        return Route(Kind.EMBEDDINGS, account_id, gateway_id=gateway_id)
    if rest == "v1/responses":
        return Route(Kind.RESPONSES, account_id, gateway_id=gateway_id)
    if rest.startswith("run/"):
        rest = rest[4:]
    model = _model_from(rest)
    if not model:
        raise CFError(ErrorKind.NO_ROUTE)
    return Route(Kind.RUN, account_id, model, gateway_id=gateway_id)
