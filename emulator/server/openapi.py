"""The OpenAPI 3.1 description of the emulator's own HTTP surface, generated from the routes and the catalog.

Design (documented in the description's `info.description` as well):

- `POST …/ai/run/{model}` is one *path per catalog model* (the model name is a literal part of the
  path, slashes included), because a request body schema cannot depend on a path parameter's
  value: per-model paths give schemathesis and API tools the exact input schema of each model.
- Every operation lists the success answers (v4 envelope, raw binary, SSE) and every error status
  with the error envelope. JSON Schema cannot say "keys in this order", so the required key order
  of each envelope is given as `x-key-order` and in the schema descriptions.
- The AI Gateway forms that share the native/OpenAI bodies are listed for the OpenAI-compatible
  endpoints; the gateway run form (`/v1/{account}/{gateway}/workers-ai/{model}`) takes the same
  bodies as the native paths and is not repeated per model.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from emulator import __version__
from emulator.catalog import Catalog, Model, load_catalog
from emulator.server.paths import Kind
from emulator.server.routes import ROUTES, Section

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPENAPI_PATH = "/__emulator__/openapi.json"
ACCOUNT_PATTERN = "^[0-9a-f]{32}$"
JSON = "application/json"
SSE = "text/event-stream"
BINARY_TYPES = ("application/octet-stream", "audio/wav", "audio/mpeg", "image/png", "image/jpeg")
# Statuses any Cloudflare-namespace operation can answer with the error envelope (edge: auth 400/401/403,
# routing 400/404/405, size 413; model layer: 400 bad input, 408 timeout, 429 limits; 5xx in
# record/passthrough modes and from control-plane faults).
ERROR_STATUSES = ("400", "401", "403", "404", "405", "408", "413", "429", "500", "502", "503", "504")

# OpenAPI 3.1 tools (schemathesis among them) check text/event-stream answers one event at a time.
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `data: {json}`, the last one `data: [DONE]`",
    "required": ["data"],
    "properties": {"data": {"type": "string"}},
}
# The async batch answers (`?queueRequest=true`, then polls by `request_id`; emulator/server/batch.py) of a
# model whose catalog says `async_queue`, whatever its own output schema lists.
BATCH_STATUS = {
    "type": "object",
    "description": "Async batch still in progress",
    "required": ["status", "request_id", "model"],
    "properties": {
        "status": {"type": "string", "enum": ["queued", "running"]},
        "request_id": {"type": "string"},
        "model": {"type": "string"},
    },
}
BATCH_DONE = {
    "type": "object",
    "description": "Async batch finished: one entry per queued request, in order",
    "required": ["responses", "usage"],
    "properties": {
        "responses": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "result", "success"],
                "properties": {
                    "id": {"type": "integer"},
                    "result": {},
                    "success": {"type": "boolean"},
                    "external_reference": {"type": ["string", "null"]},
                },
            },
        },
        "usage": {
            "type": "object",
            "properties": {k: {"type": "integer"}
                           for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        },
    },
}
EDGE_ORDER = ["result", "success", "errors", "messages"]
MODEL_ORDER = ["errors", "success", "result", "messages"]
DESCRIPTION = """\
Local emulator of the Cloudflare Workers AI REST API (plus its OpenAI-compatible and AI Gateway
forms). `POST …/ai/run/<model>` is described once per catalog model so each carries that model's
own input schema; any 32-hex account id is accepted. Errors always come as a Cloudflare envelope
with a 4xx/5xx status; edge errors order keys `result, success, errors, messages`
(`result: null`), model-layer errors `errors, success, result, messages` (`result: {}`), AI Gateway
errors carry a singular `error` array (see `x-key-order` on each schema).
"""


def _error_schemas() -> dict[str, Any]:
    message = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    }
    edge = {
        "type": "object",
        "title": "Edge error envelope",
        "description": "Auth, routing and size errors from the API edge; key order " + ", ".join(EDGE_ORDER),
        "x-key-order": EDGE_ORDER,
        "required": EDGE_ORDER,
        "properties": {
            "result": {"type": "null"},
            "success": {"const": False},
            "errors": {"type": "array", "minItems": 1, "items": message},
            "messages": {"type": "array"},
        },
    }
    model = {
        "type": "object",
        "title": "Model-layer error envelope",
        "description": "Errors from Workers AI itself (carry cf-ai-req-id); key order "
        + ", ".join(MODEL_ORDER) + " (flux-1-schnell's stop after `success`: docs/errors.md)",
        "x-key-order": MODEL_ORDER,
        "required": ["errors", "success"],
        "properties": {
            "errors": {"type": "array", "minItems": 1, "items": message},
            "success": {"const": False},
            "result": {"type": "object"},
            "messages": {"type": "array"},
            "error": {"type": "object", "description": "OpenAI-style error (v1 paths, quirk off)"},
        },
    }
    gateway = {
        "type": "object",
        "title": "AI Gateway error",
        "x-key-order": ["success", "result", "messages", "error"],
        "required": ["success", "error"],
        "properties": {
            "success": {"const": False},
            "error": {"type": "array", "minItems": 1, "items": message},
        },
    }
    graphql = {
        "type": "object",
        "title": "GraphQL error",
        "required": ["data", "errors"],
        "properties": {
            "data": {"type": "null"},
            "errors": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                },
            },
        },
    }
    return {
        "GraphQLError": graphql,
        "EdgeError": edge,
        "ModelError": model,
        "GatewayError": gateway,
        "Error": {
            "oneOf": [
                {"$ref": "#/components/schemas/EdgeError"},
                {"$ref": "#/components/schemas/ModelError"},
                {"$ref": "#/components/schemas/GatewayError"},
            ]
        },
    }


def _error_responses() -> dict[str, Any]:
    content = {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        status: {"description": "Cloudflare error envelope", "content": content} for status in ERROR_STATUSES
    }


def _envelope(result: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "v4 success envelope (key order result, success, errors, messages)",
        "x-key-order": EDGE_ORDER,
        "required": ["result", "success", "errors", "messages"],
        "properties": {
            "result": result,
            "success": {"const": True},
            "errors": {"type": "array", "maxItems": 0},
            "messages": {"type": "array"},
        },
    }


def _is_stream_branch(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("contentType") == SSE


def _binary_type(schema: Any) -> str | None:
    if (
        isinstance(schema, dict)
        and schema.get("format") == "binary"
        and schema.get("contentType") not in (None, JSON, SSE)
    ):
        return str(schema["contentType"])
    return None


def _strip(schema: Any, *, any_of: bool = False) -> Any:
    """Catalog schemas use `contentType` inside schemas (not a JSON Schema keyword); drop it so tools
    that are strict about unknown keywords accept the description.

    With `any_of`, every `oneOf` is also read as `anyOf`, as Cloudflare's validator and ours read it
    (emulator/validation/schema.py). The catalog's output branches overlap: gpt-oss's Responses output
    items are a oneOf of Message and FunctionCall with no required keys, so every item matches both
    and a strict oneOf would reject any answer the real API gives."""
    if isinstance(schema, dict):
        # Only the keyword (a list of branches) is renamed, never a property called oneOf.
        return {("anyOf" if any_of and k == "oneOf" and isinstance(v, list) else k): _strip(v, any_of=any_of)
                for k, v in schema.items() if k != "contentType"}
    if isinstance(schema, list):
        return [_strip(v, any_of=any_of) for v in schema]
    return schema


def _declares_stream(schema: Any) -> bool:
    branches = [schema, *(schema.get("oneOf") or [])] if isinstance(schema, dict) else []
    return any("stream" in (b.get("properties") or {}) for b in branches if isinstance(b, dict))


def _run_responses(model: Model) -> dict[str, Any]:
    output = model.output_schema
    branches = list(output.get("oneOf") or [output]) if isinstance(output, dict) else [{}]
    json_branches = [b for b in branches if not _is_stream_branch(b) and _binary_type(b) is None]
    if model.supports_batch:
        json_branches += [BATCH_STATUS, BATCH_DONE]
    content: dict[str, Any] = {}
    if json_branches:
        result = _strip(json_branches[0] if len(json_branches) == 1 else {"anyOf": json_branches},
                        any_of=True)
        content[JSON] = {"schema": _envelope(result or {})}
    # Models whose input takes `stream` answer SSE even when their output schema forgets to say so.
    if any(_is_stream_branch(b) for b in branches) or _declares_stream(model.input_schema):
        content[SSE] = {"schema": SSE_EVENT}
    for branch in branches:
        kind = _binary_type(branch)
        if kind is not None:
            content[kind] = {"schema": {"type": "string", "format": "binary"}}
    if not content:
        content[JSON] = {"schema": _envelope({})}
    return {"200": {"description": "Model output", "content": content}, **_error_responses()}


def _accepts_binary(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "string" and schema.get("format") == "binary":
        return True
    return any(_accepts_binary(b) for b in schema.get("oneOf") or [])


def _json_body(schema: Any) -> Any:
    """The JSON-object part of an input schema (binary-only branches removed)."""
    schema = _strip(schema)
    if isinstance(schema, dict) and "oneOf" in schema:
        branches = [b for b in schema["oneOf"] if not (isinstance(b, dict) and b.get("format") == "binary")]
        if len(branches) == 1:
            rest = {k: v for k, v in schema.items() if k != "oneOf"}
            return _text_binary({**rest, **branches[0]})
        return _text_binary({**schema, "oneOf": branches})
    return _text_binary(schema)


def _text_binary(schema: Any) -> Any:
    """Inside a JSON body a "binary" string is still JSON text: drop `format: binary` there, or tools
    generate raw bytes that cannot be serialised as JSON."""
    if isinstance(schema, dict):
        return {
            k: _text_binary(v)
            for k, v in schema.items()
            if not (k == "format" and v == "binary" and schema.get("type") == "string")
        }
    if isinstance(schema, list):
        return [_text_binary(v) for v in schema]
    return schema


def _multipart(schema: Any) -> bool:
    branches = [schema, *(schema.get("oneOf") or [])] if isinstance(schema, dict) else []
    return any("multipart" in (b.get("properties") or {}) for b in branches if isinstance(b, dict))


def _run_operation(model: Model) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if _multipart(model.input_schema):
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {"prompt": {"type": "string", "minLength": 1}},
                "required": ["prompt"],
            }
        }
    else:
        content[JSON] = {"schema": _json_body(copy.deepcopy(model.input_schema))}
    if _accepts_binary(model.input_schema):
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {
        "operationId": "run_" + model.name.strip("@").replace("/", "_").replace("-", "_").replace(".", "_"),
        "summary": f"Run {model.name} ({model.task.name})",
        "tags": ["run", model.task.name],
        "parameters": [_account_param(), _query("queueRequest", {"type": "boolean"}, "Async batch: https://developers.cloudflare.com/workers-ai/features/batch-api/")],
        "requestBody": {"required": True, "content": content},
        "responses": _run_responses(model),
    }


def _account_param() -> dict[str, Any]:
    return {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ACCOUNT_PATTERN},
    }


def _query(
    name: str, schema: dict[str, Any], description: str = "", required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _list_ok(items: dict[str, Any], *, paged: bool = False) -> dict[str, Any]:
    schema = _envelope({"type": "array", "items": items})
    if paged:
        schema["properties"]["result_info"] = {"type": "object"}
    return {"200": {"description": "OK", "content": {JSON: {"schema": schema}}}, **_error_responses()}


def _openai_body(models: list[str], extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["model", *required],
                    "properties": {"model": {"type": "string", "enum": models}, **extra},
                }
            }
        },
    }


def _openai_ok(stream: bool) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": {"type": "object", "description": "OpenAI-shaped object"}}}
    if stream:
        content[SSE] = {"schema": SSE_EVENT}
    return {
        "200": {"description": "OpenAI-compatible answer (no v4 envelope)", "content": content},
        **_error_responses(),
    }


def _openai_operations(catalog: Catalog) -> dict[str, dict[str, Any]]:
    chat_models = sorted(m.name for m in catalog if m.task.name == "Text Generation")
    embed_models = sorted(m.name for m in catalog if m.task.name == "Text Embeddings")
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string"},
        },
    }
    chat = _openai_body(
        chat_models,
        {
            "messages": {"type": "array", "minItems": 1, "items": message},
            "stream": {"type": "boolean"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
        ["messages"],
    )
    embeddings = _openai_body(
        embed_models,
        {
            "input": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 100,
                        "items": {"type": "string", "minLength": 1},
                    },
                ]
            }
        },
        ["input"],
    )
    responses = _openai_body(
        ["@cf/openai/gpt-oss-120b", "@cf/openai/gpt-oss-20b"],
        {"input": {"type": "string", "minLength": 1}},
        ["input"],
    )
    ops = {
        "chat": {
            "operationId": "openai_chat_completions",
            "tags": ["openai"],
            "requestBody": chat,
            "responses": _openai_ok(stream=True),
        },
        "embeddings": {
            "operationId": "openai_embeddings",
            "tags": ["openai"],
            "requestBody": embeddings,
            "responses": _openai_ok(stream=False),
        },
        "responses": {
            "operationId": "openai_responses",
            "tags": ["openai"],
            "requestBody": responses,
            "responses": _openai_ok(stream=False),
        },
    }
    return ops


def _with_params(op: dict[str, Any], params: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return {**op, "operationId": op["operationId"] + suffix, "parameters": params}


def _graphql_operation() -> dict[str, Any]:
    return {
        "operationId": "graphql",
        "tags": ["accounting"],
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {"query": {"type": "string"}, "variables": {"type": "object"}},
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "GraphQL answer (`data` and/or `errors`)",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
            **_error_responses(),
            # Query errors come GraphQL-shaped (`data: null, errors: [...]`), auth errors as the edge's.
            "400": {
                "description": "GraphQL query error or Cloudflare edge error",
                "content": {
                    JSON: {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/Error"},
                                {"$ref": "#/components/schemas/GraphQLError"},
                            ]
                        }
                    }
                },
            },
        },
    }


FINETUNE = {
    "type": "object",
    "required": ["id", "name", "model", "created_at", "modified_at"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "model": {"type": "string"},
        "public": {"type": "boolean"},
        "created_at": {"type": "string"},
        "modified_at": {"type": "string"},
    },
}
MARKDOWN_RESULT = {
    "oneOf": [
        {
            "type": "object",
            "required": ["name", "mimeType", "format", "tokens", "data"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "mimeType": {"type": "string"},
                "format": {"const": "markdown"},
                "tokens": {"type": "integer", "minimum": 0},
                "data": {"type": "string"},
            },
        },
        {
            "type": "object",
            "required": ["name", "mimeType", "format", "error"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "mimeType": {"type": "string"},
                "format": {"const": "error"},
                "error": {"type": "string"},
            },
        },
    ]
}


def _ok(result: Any, description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description, "content": {JSON: {"schema": _envelope(result)}}},
            **_error_responses()}


def _finetune_operations(account: list[dict[str, Any]]) -> dict[Kind, dict[str, Any]]:
    """Fine-tunes (emulator/server/finetunes.py; cloudflare-python `types/ai/finetune*`)."""
    create_body = {
        "type": "object",
        "required": ["model", "name"],
        "properties": {"model": {"type": "string"}, "name": {"type": "string"},
                       "description": {"type": "string"}, "public": {"type": "boolean"}},
    }
    asset_body = {
        "type": "object",
        "required": ["file", "file_name"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "file_name": {"type": "string", "enum": ["adapter_config.json", "adapter_model.safetensors"]},
        },
    }
    finetune_id = {"name": "finetune_id", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                   "description": "The fine-tune's id or name"}
    paging = [_query("limit", {"type": "integer", "minimum": 0, "maximum": 1000}),
              _query("offset", {"type": "integer", "minimum": 0, "maximum": 1000}),
              _query("orderBy", {"type": "string", "enum": sorted(FINETUNE["properties"])})]
    listed = _ok({"type": "array", "items": FINETUNE})
    return {
        Kind.FINETUNES_LIST: {"operationId": "finetunes_list", "tags": ["finetunes"],
                              "parameters": account, "responses": listed},
        Kind.FINETUNES_CREATE: {"operationId": "finetunes_create", "tags": ["finetunes"],
                                "parameters": account,
                                "requestBody": {"required": True, "content": {JSON: {"schema": create_body}}},
                                "responses": _ok(FINETUNE)},
        Kind.FINETUNE_ASSETS: {"operationId": "finetune_assets_create", "tags": ["finetunes"],
                               "parameters": [*account, finetune_id],
                               "requestBody": {"required": True,
                                               "content": {"multipart/form-data": {"schema": asset_body}}},
                               "responses": _ok({"type": "object",
                                                 "properties": {"success": {"type": "boolean"}}})},
        Kind.FINETUNES_PUBLIC: {"operationId": "finetunes_public", "tags": ["finetunes"],
                                "parameters": [*account, *paging], "responses": listed},
    }


def _tomarkdown_operations(account: list[dict[str, Any]]) -> dict[Kind, dict[str, Any]]:
    """toMarkdown (emulator/server/tomarkdown.py)."""
    body = {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
            "conversionOptions": {"type": "string", "description": "JSON: {html, pdf, image} options"},
        },
    }
    supported = {"type": "object", "required": ["extension", "mimeType"],
                 "properties": {"extension": {"type": "string"}, "mimeType": {"type": "string"}}}
    return {
        Kind.TOMARKDOWN_SUPPORTED: {"operationId": "tomarkdown_supported", "tags": ["tomarkdown"],
                                    "parameters": account,
                                    "responses": _ok({"type": "array", "items": supported})},
        Kind.TOMARKDOWN: {"operationId": "tomarkdown", "tags": ["tomarkdown"], "parameters": account,
                          "requestBody": {"required": True,
                                          "content": {"multipart/form-data": {"schema": body}}},
                          "responses": _ok({"type": "array", "items": MARKDOWN_RESULT})},
    }


def _realtime_operation(model: Model) -> dict[str, Any]:
    """The WebSocket upgrade of a realtime model's run path (emulator/server/realtime.py)."""
    from emulator.server.realtime import PROTOCOLS

    responses: dict[str, Any] = {"101": {"description": "Switching Protocols: the WebSocket session"}}
    return {
        "operationId": "realtime_" + re.sub(r"[/.-]", "_", model.name.strip("@")),
        "summary": f"{model.name} over a WebSocket (send `Upgrade: websocket`)",
        "description": PROTOCOLS[model.name],
        "tags": ["realtime", model.task.name],
        "parameters": [_account_param()],
        "x-websocket": {"server_messages": _strip(copy.deepcopy(model.output_schema))},
        "responses": {**responses, **_error_responses()},
    }


def build_spec(catalog: Catalog | None = None) -> dict[str, Any]:
    """The whole description as a JSON-able dict (deterministic for a given catalog)."""
    catalog = catalog or load_catalog()
    account = [_account_param()]
    gateway = [
        {
            "name": "account_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": ACCOUNT_PATTERN},
        },
        {
            "name": "gateway_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"},
        },
    ]
    openai = _openai_operations(catalog)
    compat_chat = copy.deepcopy(openai["chat"])
    compat_chat["requestBody"]["content"][JSON]["schema"]["properties"]["model"]["enum"] = [
        "workers-ai/" + name for name in sorted(m.name for m in catalog if m.task.name == "Text Generation")
    ]
    record = {
        "type": "object",
        "required": ["id", "name", "task"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "task": {"type": "object"}},
    }
    task_names = sorted({m.task.name for m in catalog})
    models_search = {
        "operationId": "models_search",
        "tags": ["catalog"],
        "parameters": [
            *account,
            _query("task", {"type": "string"}, f"Task name, one of: {', '.join(task_names)}"),
            _query("author", {"type": "string"}),
            _query("search", {"type": "string"}),
            _query("source", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
            _query("hide_experimental", {"type": "boolean"}),
            _query("include_deprecated", {"type": "boolean"}),
            _query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
            _query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ],
        "responses": _list_ok(record, paged=True),
    }
    models_schema = {
        "operationId": "models_schema",
        "tags": ["catalog"],
        "parameters": [
            *account,
            _query("model", {"type": "string", "enum": sorted(m.name for m in catalog)}, required=True),
        ],
        "responses": {
            "200": {
                "description": "Input and output JSON Schemas",
                "content": {
                    JSON: {"schema": _envelope({"type": "object", "required": ["input", "output"]})}
                },
            },
            **_error_responses(),
        },
    }

    def listing(name: str) -> dict[str, Any]:
        return {"operationId": f"{name}_search", "tags": ["catalog"], "parameters": account,
                "responses": _list_ok({})}

    # The operation each kind of route answers; a second path form of one reuses it under its own id.
    operations: dict[Kind, dict[str, Any]] = {
        Kind.CHAT: openai["chat"],
        Kind.EMBEDDINGS: openai["embeddings"],
        Kind.RESPONSES: openai["responses"],
        Kind.COMPAT_CHAT: compat_chat,
        Kind.MODELS_SEARCH: models_search,
        Kind.MODELS_SCHEMA: models_schema,
        Kind.TASKS_SEARCH: listing("tasks"),
        Kind.AUTHORS_SEARCH: listing("authors"),
        Kind.GRAPHQL: _graphql_operation(),
        **_finetune_operations(account),
        **_tomarkdown_operations(account),
    }
    with_params = {Kind.CHAT, Kind.EMBEDDINGS, Kind.RESPONSES, Kind.COMPAT_CHAT}
    paths: dict[str, Any] = {}
    for spec in ROUTES:
        for form in spec.forms:
            if form.openapi is None:
                continue
            if spec.kind is Kind.RUN:
                for model in sorted(catalog, key=lambda m: m.name):
                    item = {"post": _run_operation(model)}
                    if model.flag("realtime"):
                        item["get"] = _realtime_operation(model)
                    paths[form.openapi.replace("{model}", model.name)] = item
                continue
            op = operations[spec.kind]
            if spec.kind in with_params:
                params = gateway if form.section is Section.GATEWAY else account
                op = _with_params(op, params, form.operation_suffix)
            paths.setdefault(form.openapi, {})[form.method.lower()] = op  # GET and POST may share a path
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "emulator_openapi",
            "tags": ["emulator"],
            "security": [],
            "responses": {
                "200": {"description": "This document", "content": {JSON: {"schema": {"type": "object"}}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "workers-ai-emulator", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "http://127.0.0.1:8787"}],
        "security": [{"bearerAuth": []}, {"authEmail": [], "authKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "authEmail": {"type": "apiKey", "in": "header", "name": "X-Auth-Email"},
                "authKey": {"type": "apiKey", "in": "header", "name": "X-Auth-Key"},
            },
            "schemas": _error_schemas(),
        },
    }


@functools.cache
def spec_bytes() -> bytes:
    # The catalog is package data, so the description never changes within a process.
    return orjson.dumps(build_spec(), option=orjson.OPT_INDENT_2)


async def serve_openapi(_request: web.Request) -> web.Response:
    return web.Response(body=spec_bytes(), content_type=JSON)


def install(app: web.Application, control_plane: bool,
            guard: Callable[[Handler], Handler] = lambda handler: handler) -> None:
    """Serve the description under the control plane's prefix (off with --no-control-plane), behind
    `guard` (the control plane's: with --token, only that token reads it, like every control route
    but health)."""
    if control_plane:
        app.router.add_get(OPENAPI_PATH, guard(serve_openapi))
