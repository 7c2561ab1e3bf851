"""The edge in front of Workers AI: the checks it makes (credentials, body size) and the headers it adds."""

from __future__ import annotations

import hmac
import os
import random
import re

from aiohttp import hdrs, web

from emulator.errors import CFError, ErrorKind
from emulator.limits import ANSWER_HEADERS
from emulator.settings import Settings

_SPACE = re.compile(r"\s")
CF_RAY = "cf-ray"


def check_auth(request: web.Request, settings: Settings) -> str:
    """Return the credential used; raise the edge's 9106/10000 answers otherwise.

    Without `--token` any non-empty credential is accepted (the emulator cannot know real tokens);
    with it, only that token (as Bearer or as X-Auth-Key) passes.
    """
    headers = request.headers
    authorization = headers.get("Authorization")
    gateway_auth = headers.get("cf-aig-authorization")
    if authorization is None and gateway_auth is not None and request.path.startswith("/v1/"):
        authorization = gateway_auth
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or _SPACE.search(token):
            raise CFError(ErrorKind.MALFORMED_AUTH)
        _require(token, settings)
        return token
    email, key = headers.get("X-Auth-Email"), headers.get("X-Auth-Key")
    if key is not None or email is not None:
        if not email:
            raise CFError(ErrorKind.MISSING_AUTH)
        if not key:
            raise CFError(ErrorKind.MISSING_KEY)
        _require(key, settings)
        return key
    raise CFError(ErrorKind.MISSING_AUTH)


def _require(credential: str, settings: Settings) -> None:
    # surrogateescape: aiohttp hands header bytes that are not UTF-8 over as escapes; they simply differ.
    given = credential.encode("utf-8", "surrogateescape")
    if settings.token is not None and not hmac.compare_digest(given, settings.token.encode()):
        raise CFError(ErrorKind.AUTH)


def check_size(request: web.Request, settings: Settings) -> None:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise CFError(ErrorKind.TOO_LARGE)


# Every answer that leaves Cloudflare's edge, errors included, names the edge: `Server: cloudflare` and
# a `cf-ray` of 16 hex digits and the IATA code of the data centre that answered (fixtures/real/
# README.md, "Headers"). The emulator answers from one made-up colo.
SERVER = "cloudflare"
COLO = "SJC"
_rays = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _rays.seed(os.urandom(16)))


def new_ray() -> str:
    return f"{_rays.getrandbits(64):016x}-{COLO}"


def stamp_edge(response: web.StreamResponse) -> None:
    """The edge's headers on `response`."""
    response.headers[hdrs.SERVER] = SERVER
    response.headers.setdefault(CF_RAY, new_ray())


async def _edge_headers(request: web.Request, response: web.StreamResponse) -> None:
    stamp_edge(response)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(_edge_headers)
    app[ANSWER_HEADERS] = stamp_edge  # aiohttp's own error answers (`limits._CloudflareErrors`)
