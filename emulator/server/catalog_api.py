"""The catalog API: `models/search`, `models/schema`, `tasks/search` and `authors/search` under `…/ai/`.

Choices where Cloudflare's behaviour is undocumented, kept here in one place:

- Paging: `page` starts at 1, `per_page` defaults to `DEFAULT_PER_PAGE` (50) and may be 1…`MAX_PER_PAGE`
  (1000). `result_info` is `{page, per_page, count, total_count}`. A page past the end answers
  `result: []`, which is what makes the cloudflare SDK's auto-pagination stop.
- Deprecation: a record is *deprecated* when it says `"deprecated": true` or its
  `planned_deprecation_date` is more than three months (`DEPRECATION_GRACE`) before today (UTC, from
  the ledger's clock, so tests can move it): `include_deprecated=false` (the default) still lists a
  model for three months past its deprecation date, as the API reference documents; `true` shows
  every record.
- `hide_experimental=true` drops records whose `beta` property is `"true"`.
- `authors/search` (shape undocumented): one `{id, name, description}` per author slug, the id a
  stable UUID derived from the slug, sorted by name.
- Bad query values (`page=abc`, `per_page=0`, `per_page=10000`, `source=x`, unknown `format`) answer
  the edge-style `invalid_query` error (HTTP 400) instead of being ignored.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from emulator.catalog import Model
from emulator.errors import CFError, ErrorKind
from emulator.server.paths import Route
from emulator.server.render import json_response
from emulator.server.state import ServerState

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no", ""})


def _bad(name: str, detail: str) -> CFError:
    return CFError(ErrorKind.INVALID_QUERY, name=name, detail=detail)


def _int_param(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        # The SDK types `source` as a float, so "1.0" must read as 1.
        number = float(raw)
        value = int(number)
        if number != value:
            raise ValueError(raw)
    except (ValueError, OverflowError):
        raise _bad(name, f"'{raw}' is not an integer") from None
    if not lo <= value <= hi:
        raise _bad(name, f"must be between {lo} and {hi}")
    return value


def _bool_param(query: Any, name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad(name, f"'{raw}' is not a boolean")


DEPRECATION_GRACE = timedelta(days=92)


def is_deprecated(model: Model, today: date) -> bool:
    """`deprecated: true`, or a planned deprecation date more than the grace period ago."""
    if model.record.get("deprecated") is True:
        return True
    planned = model.prop("planned_deprecation_date")
    if not planned:
        return False
    try:
        return date.fromisoformat(str(planned)[:10]) + DEPRECATION_GRACE <= today
    except ValueError:
        return False


def _today(state: ServerState) -> date:
    return state.ledger.clock.now().date()


def search_models(state: ServerState, query: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Filter and page the catalog exactly as `models/search` answers it."""
    page = _int_param(query, "page", 1, 1, 1_000_000)
    per_page = _int_param(query, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    source = _int_param(query, "source", 0, 0, 1_000_000) if query.get("source") is not None else None
    hide_experimental = _bool_param(query, "hide_experimental", False)
    include_deprecated = _bool_param(query, "include_deprecated", False)
    if query.get("format") not in (None, ""):
        raise _bad("format", f"'{query.get('format')}' is not supported by the emulator")
    task = (query.get("task") or "").strip().lower()
    author = (query.get("author") or "").strip().lower()
    text = (query.get("search") or "").strip().lower()
    today = _today(state)
    matches = []
    for model in state.catalog:
        if task and task not in (model.task.name.lower(), model.task.id.lower()):
            continue
        if author and model.author.lower() != author:
            continue
        description = str(model.record.get("description", "")).lower()
        if text and text not in model.name.lower() and text not in description:
            continue
        if source is not None and model.source != source:
            continue
        if hide_experimental and model.beta:
            continue
        if not include_deprecated and is_deprecated(model, today):
            continue
        matches.append(model)
    start = (page - 1) * per_page
    chunk = [m.listing() for m in matches[start : start + per_page]]
    info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(matches)}
    return chunk, info


def author_record(slug: str, count: int) -> dict[str, str]:
    author_id = str(uuid.UUID(bytes=hashlib.md5(f"author:{slug}".encode()).digest()))
    noun = "model" if count == 1 else "models"
    return {"id": author_id, "name": slug, "description": f"{slug}: {count} {noun} in the Workers AI catalog"}


def _envelope(result: Any, info: dict[str, int] | None = None) -> web.Response:
    body: dict[str, Any] = {"result": result, "success": True, "errors": [], "messages": []}
    if info is not None:
        body["result_info"] = info
    return json_response(body)


async def handle_models_search(request: web.Request, route: Route, state: ServerState,
                               request_id: str) -> web.StreamResponse:
    records, info = search_models(state, request.query)
    return _envelope(records, info)


async def handle_models_schema(request: web.Request, route: Route, state: ServerState,
                               request_id: str) -> web.StreamResponse:
    name = (request.query.get("model") or "").strip()
    if not name:
        raise CFError(ErrorKind.MISSING_QUERY, name="model")
    model = state.catalog.get(name)
    if model is None:
        raise CFError(ErrorKind.NO_SUCH_MODEL, model=name)
    return _envelope({"input": model.input_schema, "output": model.output_schema})


async def handle_tasks_search(request: web.Request, route: Route, state: ServerState,
                              request_id: str) -> web.StreamResponse:
    tasks = sorted(state.catalog.tasks.values(), key=lambda t: t.name)
    return _envelope([t.record() for t in tasks])


async def handle_authors_search(request: web.Request, route: Route, state: ServerState,
                                request_id: str) -> web.StreamResponse:
    counts: dict[str, int] = {}
    for model in state.catalog:
        if model.author:
            counts[model.author] = counts.get(model.author, 0) + 1
    return _envelope([author_record(slug, counts[slug]) for slug in sorted(counts)])
