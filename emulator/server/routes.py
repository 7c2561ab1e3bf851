"""The route table: every Cloudflare-namespace route once, with its handler and all its facts.

The dispatcher's handlers, the router's fixed paths under `…/ai/`, the cacheable and OpenAI-error
route sets, the request log's surface names, the endpoint list and surface table of docs/reference.md
and the paths of the OpenAPI description are all read from `ROUTES`. Adding a route is one `Kind`,
one entry here and its handler.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from emulator.server import (
    binding,
    catalog_api,
    finetunes,
    graphql,
    native,
    openai_surface,
    realtime,
    tomarkdown,
)
from emulator.server.paths import Kind, Route
from emulator.server.state import ServerState
from emulator.settings import DEFAULT_ACCOUNT

Handler = Callable[[web.Request, Route, ServerState, str], Awaitable[web.StreamResponse]]

# A placeholder account for the probe paths (any 32-hex id routes).
ACCOUNT = DEFAULT_ACCOUNT
_AI = f"/client/v4/accounts/{ACCOUNT}/ai"
_GW = f"/v1/{ACCOUNT}/my-gateway"
AI = "/client/v4/accounts/{account_id}/ai"  # OpenAPI path templates
GATEWAY = "/v1/{account_id}/{gateway_id}"


class Section(enum.Enum):
    """Which part of docs/reference.md's endpoint list a path belongs to."""

    ACCOUNT = "account"  # under /client/v4/accounts/{account_id}/
    GLOBAL = "global"  # elsewhere under /client/v4/
    GATEWAY = "gateway"  # AI Gateway forms under /v1/


@dataclass(frozen=True, slots=True)
class PathForm:
    """One way a client reaches a route, as Cloudflare documents it and as the router is asked."""

    method: str
    documented: str  # the path as Cloudflare's API reference writes it
    probe: str  # a concrete path the emulator's router is asked about
    note: str = ""
    section: Section = Section.ACCOUNT
    openapi: str | None = None  # the OpenAPI path, or None when the description leaves this form out
    operation_suffix: str = ""  # appended to the operationId of a second form of the same operation


@dataclass(frozen=True, slots=True)
class RouteSpec:
    kind: Kind
    handler: Handler
    description: str  # the "Supported surfaces" row of docs/reference.md
    forms: tuple[PathForm, ...]
    ai_path: str | None = None  # the fixed path under …/ai/ the router matches (None: parsed by shape)
    surface: str | None = None  # the request log's surface name (the kind's value if None)
    cacheable: bool = False  # a mock answer is a pure function of the request (answer_cache.py)
    openai_errors: bool = False  # failures answer OpenAI's error object, not Cloudflare's envelope

    @property
    def log_surface(self) -> str:
        return self.surface or self.kind.value


def _gateway(rest: str, note: str = "") -> PathForm:
    probe = f"{_GW}/" + rest.replace("{model}", "@cf/meta/llama-3-8b-instruct")
    documented = f"gateway `/v1/{{account_id}}/{{gateway_id}}/{rest}`"
    return PathForm("POST", documented, probe, note, Section.GATEWAY)


def _gateway_openapi(rest: str, suffix: str, note: str = "") -> PathForm:
    form = _gateway(rest, note)
    return PathForm(form.method, form.documented, form.probe, form.note, form.section,
                    openapi=f"{GATEWAY}/{rest}", operation_suffix=suffix)


def _ai(method: str, rest: str, note: str = "", *, probe: str | None = None,
        openapi: bool = True) -> PathForm:
    return PathForm(method, f"/accounts/{{account_id}}/ai/{rest}", f"{_AI}/{probe or rest}", note,
                    openapi=f"{AI}/{rest}" if openapi else None)


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        Kind.RUN, native.handle_run,
        "native `POST …/ai/run/{model}` (JSON, raw bytes, multipart; SSE with `stream: true`; "
        "`?queueRequest=true` async batch)",
        (
            _ai("POST", "run/{model}", "every catalog model; `?queueRequest=true` for async batch",
                probe="run/@cf/meta/llama-3-8b-instruct"),
            _gateway("workers-ai/{model}"),
            _gateway("workers-ai/run/{model}", "the form workers-ai-provider sends"),
        ),
        surface="native", cacheable=True,
    ),
    RouteSpec(
        Kind.CHAT, openai_surface.handle_chat,
        "OpenAI `POST …/ai/v1/chat/completions` (also through AI Gateway `workers-ai/v1/…`)",
        (_ai("POST", "v1/chat/completions"),
         _gateway_openapi("workers-ai/v1/chat/completions", "_gateway")),
        ai_path="v1/chat/completions", cacheable=True, openai_errors=True,
    ),
    RouteSpec(
        Kind.EMBEDDINGS, openai_surface.handle_embeddings,
        "OpenAI `POST …/ai/v1/embeddings` (also through AI Gateway)",
        (_ai("POST", "v1/embeddings"), _gateway_openapi("workers-ai/v1/embeddings", "_gateway")),
        ai_path="v1/embeddings", cacheable=True, openai_errors=True,
    ),
    RouteSpec(
        Kind.RESPONSES, openai_surface.handle_responses,
        "OpenAI `POST …/ai/v1/responses` (gpt-oss models)",
        (_ai("POST", "v1/responses", "gpt-oss models only"), _gateway("workers-ai/v1/responses")),
        ai_path="v1/responses", cacheable=True, openai_errors=True,
    ),
    RouteSpec(
        Kind.MODELS_SEARCH, catalog_api.handle_models_search,
        "catalog `GET …/ai/models/search` (task, author, search, paging)",
        (_ai("GET", "models/search"),), ai_path="models/search",
    ),
    RouteSpec(
        Kind.MODELS_SCHEMA, catalog_api.handle_models_schema, "catalog `GET …/ai/models/schema?model=`",
        (_ai("GET", "models/schema"),), ai_path="models/schema",
    ),
    RouteSpec(
        Kind.TASKS_SEARCH, catalog_api.handle_tasks_search, "catalog `GET …/ai/tasks/search`",
        (_ai("GET", "tasks/search"),), ai_path="tasks/search",
    ),
    RouteSpec(
        Kind.AUTHORS_SEARCH, catalog_api.handle_authors_search, "catalog `GET …/ai/authors/search`",
        (_ai("GET", "authors/search"),), ai_path="authors/search",
    ),
    RouteSpec(
        Kind.GRAPHQL, graphql.handle_graphql,
        "GraphQL Analytics `POST /client/v4/graphql` (`aiInferenceAdaptiveGroups` from the ledger)",
        (PathForm("POST", "/graphql", "/client/v4/graphql", "only `aiInferenceAdaptiveGroups`",
                  Section.GLOBAL, openapi="/client/v4/graphql"),),
    ),
    RouteSpec(
        Kind.COMPAT_CHAT, openai_surface.handle_chat,
        "AI Gateway unified `POST /v1/{account}/{gateway}/compat/chat/completions`",
        (_gateway_openapi("compat/chat/completions", "_compat", '`model: "workers-ai/@cf/…"`'),),
        cacheable=True, openai_errors=True,
    ),
    RouteSpec(
        Kind.COMPAT_EMBEDDINGS, openai_surface.handle_embeddings,
        "AI Gateway unified `POST /v1/{account}/{gateway}/compat/embeddings`",
        (_gateway("compat/embeddings"),),
        surface="embeddings", cacheable=True, openai_errors=True,
    ),
    RouteSpec(
        Kind.FINETUNES_LIST, finetunes.handle_list,
        "fine-tunes `GET …/ai/finetunes` (per account, kept in the data directory)",
        (_ai("GET", "finetunes"),), ai_path="finetunes",
    ),
    RouteSpec(
        Kind.FINETUNES_CREATE, finetunes.handle_create,
        "fine-tunes `POST …/ai/finetunes` (models whose catalog marks `lora`)",
        (_ai("POST", "finetunes"),), ai_path="finetunes",
    ),
    RouteSpec(
        Kind.FINETUNE_ASSETS, finetunes.handle_assets,
        "fine-tunes `POST …/ai/finetunes/{id}/finetune-assets` (multipart `file` + `file_name`; "
        "adapter checks)",
        (PathForm("POST", "/accounts/{account_id}/ai/finetunes/{id}/finetune-assets",
                  f"{_AI}/finetunes/abc/finetune-assets",
                  openapi=f"{AI}/finetunes/{{finetune_id}}/finetune-assets"),),
    ),
    RouteSpec(
        Kind.FINETUNES_PUBLIC, finetunes.handle_public,
        "fine-tunes `GET …/ai/finetunes/public` (the `cf-public-*` adapters)",
        (_ai("GET", "finetunes/public"),), ai_path="finetunes/public",
    ),
    RouteSpec(
        Kind.TOMARKDOWN_SUPPORTED, tomarkdown.handle_supported, "toMarkdown `GET …/ai/tomarkdown/supported`",
        (_ai("GET", "tomarkdown/supported"),), ai_path="tomarkdown/supported",
    ),
    RouteSpec(
        Kind.TOMARKDOWN, tomarkdown.handle_transform,
        "toMarkdown `POST …/ai/tomarkdown` (multipart `files`; images through the image models)",
        (_ai("POST", "tomarkdown"),), ai_path="tomarkdown",
    ),
    # A GET with `Upgrade: websocket` on `run/{model}` (server/router.py's WEBSOCKET method); its
    # OpenAPI operations are the `get` of each realtime model's run path (server/openapi.py).
    RouteSpec(
        Kind.REALTIME, realtime.handle_realtime,
        "WebSocket upgrade of `…/ai/run/{model}` for the realtime models (flux, nova-3, aura-1, "
        "aura-2-en/es, smart-turn-v2)",
        (PathForm("WEBSOCKET", "/accounts/{account_id}/ai/run/{model} (WebSocket upgrade)",
                  f"{_AI}/run/@cf/deepgram/flux", "flux, nova-3, aura, smart-turn"),),
    ),
    # Reached by its own aiohttp routes (binding.install: `/` and `/binding/{account}` carrying
    # `MF-Binding`), not by the router: no Cloudflare credentials, no Cloudflare path, and failures in
    # the shape the binding client reads. No path forms: it is not one of Cloudflare's REST endpoints.
    RouteSpec(
        Kind.BINDING, binding.handle_route,
        "a Worker's `env.AI` through Miniflare's AI binding: `/` (default account) and `/binding/{account}` "
        "with `MF-Binding: AI` (emulator/server/binding.py, docs/workers.md)",
        (),
    ),
)

# Cloudflare's Workers AI endpoints the emulator does not serve (listed `[ ]` in docs/reference.md).
NOT_EMULATED: tuple[PathForm, ...] = ()

ROUTE_BY_KIND: dict[Kind, RouteSpec] = {spec.kind: spec for spec in ROUTES}
HANDLERS: dict[Kind, Handler] = {spec.kind: spec.handler for spec in ROUTES}
CACHEABLE_KINDS = frozenset(spec.kind for spec in ROUTES if spec.cacheable)
OPENAI_ERROR_KINDS = frozenset(spec.kind for spec in ROUTES if spec.openai_errors)
SURFACE_BY_KIND: dict[Kind, str] = {spec.kind: spec.log_surface for spec in ROUTES}
# (method, path under …/ai/) → kind, for the router's fixed paths.
AI_ENDPOINTS: dict[tuple[str, str], Kind] = {
    (spec.forms[0].method, spec.ai_path): spec.kind for spec in ROUTES if spec.ai_path is not None
}
