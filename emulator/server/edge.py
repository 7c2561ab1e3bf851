"""Edge checks Cloudflare's API gateway makes before Workers AI sees a request: credentials, body size."""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from emulator.errors import CFError
from emulator.settings import Settings

_SPACE = re.compile(r"\s")


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
            raise CFError("malformed_auth")
        _require(token, settings)
        return token
    email, key = headers.get("X-Auth-Email"), headers.get("X-Auth-Key")
    if key is not None or email is not None:
        if not email:
            raise CFError("missing_auth")
        if not key:
            raise CFError("missing_key")
        _require(key, settings)
        return key
    raise CFError("missing_auth")


def _require(credential: str, settings: Settings) -> None:
    # surrogateescape: aiohttp hands header bytes that are not UTF-8 over as escapes; they simply differ.
    given = credential.encode("utf-8", "surrogateescape")
    if settings.token is not None and not hmac.compare_digest(given, settings.token.encode()):
        raise CFError("auth")


def check_size(request: web.Request, settings: Settings) -> None:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise CFError("too_large")
