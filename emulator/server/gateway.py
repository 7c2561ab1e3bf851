"""AI Gateway response headers (`cf-aig-*`), added in one place to every answer on a gateway path."""

from __future__ import annotations

import os
import time
import uuid

from aiohttp import web

GATEWAY_PREFIX = "/v1/"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def log_id() -> str:
    """A ULID like the recorded `cf-aig-log-id` (01M3YRNVFEX2F0PM3CE8T8F2FW): ms time + 80 random bits."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def gateway_headers() -> dict[str, str]:
    # The header set of fixtures/observations/gateway-errors-2021-2045-2003-5017.json; step 0 is the
    # first provider tried.
    return {"cf-aig-log-id": log_id(), "cf-aig-event-id": str(uuid.uuid4()),
            "cf-aig-request-id": str(uuid.uuid4()), "cf-aig-step": "0"}


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Keyed on the raw path, not the parsed route, so errors raised while routing get them too.
    if request.raw_path.startswith(GATEWAY_PREFIX):
        for name, value in gateway_headers().items():
            response.headers.setdefault(name, value)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)
