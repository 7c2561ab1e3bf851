"""The error catalogue: every Cloudflare error code the emulator can answer, with its status and wording.

Three kinds exist on the wire; each entry below says which one it is (docs/errors.md gives the evidence
for each):

- *edge* (Cloudflare's v4 API in front of Workers AI: auth, routing, an unavailable upstream):
  `{"result": null, "success": false, "errors": [{"code", "message"}], "messages": []}`, no
  `cf-ai-req-id` (fixtures/real/err-10000-auth.json, err-7003-could-not-route-v1.json;
  fixtures/observations/err-rest-envelopes-notebook-2024.json for 7009).
- *model layer* (Workers AI itself: validation, unknown model, limits, inference failures): `errors`
  first with items `{"message", "code"}`, then `success`, `result: {}`, `messages: []`, and
  `cf-ai-req-id` (fixtures/real/err-5006-schema-v1-content-array.json). flux-1-schnell's answers stop
  after `success` (fixtures/real/err-5006-flux-width-height.json; the `flux-short-error-body` quirk).
- *AI Gateway*: the AiGatewayError shape with a singular `error` array
  (fixtures/real/err-aigateway-2008-invalid-provider.json).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from emulator.call import CallReport


class Layer(enum.Enum):
    EDGE = "edge"  # the API gateway in front of Workers AI: no cf-ai-req-id, result null first
    MODEL = "model"  # Workers AI itself: errors first, result {}, cf-ai-req-id present
    GATEWAY = "gateway"  # AI Gateway itself: the AiGatewayError shape (singular `error` array)


class ErrorKind(enum.StrEnum):
    """The catalogue's keys: a kind mistyped at a `CFError(...)` call fails the type check (mypy)."""

    AUTH = "auth"
    MISSING_AUTH = "missing_auth"
    MISSING_KEY = "missing_key"
    MALFORMED_AUTH = "malformed_auth"
    COULD_NOT_ROUTE = "could_not_route"
    NO_ROUTE = "no_route"
    MALFORMED_HTTP = "malformed_http"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    BODY_TIMEOUT = "body_timeout"
    BAD_INPUT = "bad_input"
    INVALID_JSON = "invalid_json"
    NO_SUCH_MODEL = "no_such_model"
    INVALID_BASE64 = "invalid_base64"
    INCOMPLETE_REQUEST = "incomplete_request"
    REQUIRES_PAID = "requires_paid"
    LORA_UNSUPPORTED = "lora_unsupported"
    FINETUNE_INCOMPLETE = "finetune_incomplete"
    FINETUNE_NOT_FOUND = "finetune_not_found"
    INVALID_MODEL_ID = "invalid_model_id"
    TIMEOUT = "timeout"
    ABORTED = "aborted"
    DAILY_LIMIT = "daily_limit"
    CAPACITY = "capacity"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    SERVER_ERROR = "server_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    NO_CASSETTE_MATCH = "no_cassette_match"
    UPSTREAM_BUDGET = "upstream_budget"
    UPSTREAM_TOO_LARGE = "upstream_too_large"
    NOT_SUPPORTED = "not_supported"
    MISSING_MODEL = "missing_model"
    RESPONSES_MODEL = "responses_model"
    RESPONSES_STREAM = "responses_stream"
    INVALID_PROVIDER = "invalid_provider"
    INVALID_QUERY = "invalid_query"
    MISSING_QUERY = "missing_query"
    BATCH_UNSUPPORTED = "batch_unsupported"
    BATCH_TOO_LARGE = "batch_too_large"
    UNKNOWN_BATCH = "unknown_batch"
    NOT_REALTIME = "not_realtime"
    WEBSOCKET_ONLY = "websocket_only"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: int
    status: int
    template: str
    layer: Layer = Layer.MODEL


# One place for every code. Templates use str.format fields.
CATALOGUE: dict[ErrorKind, ErrorSpec] = {
    # Edge
    ErrorKind.AUTH: ErrorSpec(10000, 401, "Authentication error", Layer.EDGE),
    ErrorKind.MISSING_AUTH: ErrorSpec(9106, 403, "Missing X-Auth-Email header", Layer.EDGE),
    ErrorKind.MISSING_KEY: ErrorSpec(9106, 403, "Missing X-Auth-Key header", Layer.EDGE),
    ErrorKind.MALFORMED_AUTH: ErrorSpec(9106, 400, "Authentication failed (status: 400)", Layer.EDGE),
    ErrorKind.COULD_NOT_ROUTE: ErrorSpec(
        7003, 404, "Could not route to {path}, perhaps your object identifier is invalid?", Layer.EDGE
    ),
    ErrorKind.NO_ROUTE: ErrorSpec(7000, 400, "No route for that URI", Layer.EDGE),
    # A request aiohttp's HTTP parser refuses (header lines, chunked framing, Content-Encoding).
    ErrorKind.MALFORMED_HTTP: ErrorSpec(6003, 400, "Invalid request: {detail}", Layer.EDGE),
    ErrorKind.METHOD_NOT_ALLOWED: ErrorSpec(10405, 405, "Method not allowed", Layer.EDGE),
    ErrorKind.TOO_LARGE: ErrorSpec(3006, 413, "Request is too large", Layer.EDGE),
    # The body trickled in too slowly.
    ErrorKind.BODY_TIMEOUT: ErrorSpec(3007, 408, "Request timeout", Layer.EDGE),
    # Model layer
    ErrorKind.BAD_INPUT: ErrorSpec(5006, 400, "AiError: Bad input: {detail}"),
    ErrorKind.INVALID_JSON: ErrorSpec(
        5006, 400, "AiError: Bad input: Error: request body is not valid JSON ({detail})"
    ),
    ErrorKind.NO_SUCH_MODEL: ErrorSpec(5007, 400, "No such model {model} or task"),
    ErrorKind.INVALID_BASE64: ErrorSpec(5004, 400, "Invalid data type for base64 input: {type}"),
    ErrorKind.INCOMPLETE_REQUEST: ErrorSpec(3003, 400, "Request is missing headers or body: {what}"),
    ErrorKind.REQUIRES_PAID: ErrorSpec(
        5035, 403, "This model requires a Workers Paid plan. See pricing for details."
    ),
    ErrorKind.LORA_UNSUPPORTED: ErrorSpec(5005, 405, "The model {model} does not support LoRa inference"),
    ErrorKind.FINETUNE_INCOMPLETE: ErrorSpec(
        3039, 400, "Finetune is missing required files (model.safetensors and config.json)"
    ),
    # Fine-tunes (emulator/finetunes/lora.py: real wording from cloudflare-docs#14757, status inferred).
    ErrorKind.FINETUNE_NOT_FOUND: ErrorSpec(
        3037, 404, "AiError: AiError: Finetune {finetune} not found ({request_id})"
    ),
    ErrorKind.INVALID_MODEL_ID: ErrorSpec(3042, 404, "The model name is invalid"),
    ErrorKind.TIMEOUT: ErrorSpec(3007, 408, "AiError: AiError: Request timeout ({request_id})"),
    ErrorKind.ABORTED: ErrorSpec(3008, 408, "Request was aborted"),
    ErrorKind.DAILY_LIMIT: ErrorSpec(
        4006,
        429,
        "AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please upgrade to "
        "Cloudflare's Workers Paid plan if you would like to continue usage. ({request_id})",
    ),
    ErrorKind.CAPACITY: ErrorSpec(3040, 429, "Capacity temporarily exceeded, please try again."),
    ErrorKind.RATE_LIMITED: ErrorSpec(3040, 429, "Capacity temporarily exceeded, please try again."),
    ErrorKind.UPSTREAM_UNAVAILABLE: ErrorSpec(7009, 502, "Upstream service unavailable", Layer.EDGE),
    ErrorKind.SERVER_ERROR: ErrorSpec(1000, 500, "Server Error"),
    ErrorKind.UPSTREAM_TIMEOUT: ErrorSpec(3007, 504, "Upstream request timed out: {detail}"),
    ErrorKind.UPSTREAM_UNREACHABLE: ErrorSpec(
        7009, 502, "Upstream service unavailable: {detail}", Layer.EDGE),
    ErrorKind.NO_CASSETTE_MATCH: ErrorSpec(7404, 404, "Emulator replay: {detail}"),
    ErrorKind.UPSTREAM_BUDGET: ErrorSpec(7429, 429, "Emulator upstream budget exhausted: {detail}"),
    ErrorKind.UPSTREAM_TOO_LARGE: ErrorSpec(7413, 502, "Emulator upstream answer too large: {detail}"),
    ErrorKind.NOT_SUPPORTED: ErrorSpec(5019, 405, "{detail}"),
    # OpenAI-compatible surface (codes for undocumented cases are the emulator's choice, see
    # emulator/server/openai_surface.py and docs/openai-compatible.md).
    ErrorKind.MISSING_MODEL: ErrorSpec(
        5006, 400, "AiError: Bad input: Error: required properties at '/' are 'model'"
    ),
    ErrorKind.RESPONSES_MODEL: ErrorSpec(
        5007,
        400,
        "No such model {model} or task: /v1/responses serves only @cf/openai/gpt-oss-120b and "
        "@cf/openai/gpt-oss-20b",
    ),
    ErrorKind.RESPONSES_STREAM: ErrorSpec(
        5006, 400, "AiError: Bad input: Error: /v1/responses supports only stream: false"
    ),
    # AI Gateway (fixtures/observations/err-aigateway-2005-2008-compat.json).
    ErrorKind.INVALID_PROVIDER: ErrorSpec(2008, 400, "Invalid provider", Layer.GATEWAY),
    # Catalog API query errors (codes undocumented: emulator's choice, see server/catalog_api.py).
    ErrorKind.INVALID_QUERY: ErrorSpec(1001, 400, "Invalid query parameter '{name}': {detail}", Layer.EDGE),
    ErrorKind.MISSING_QUERY: ErrorSpec(1001, 400, "Missing required query parameter '{name}'", Layer.EDGE),
    # Async batch (codes are the emulator's choice, see emulator/server/batch.py).
    ErrorKind.BATCH_UNSUPPORTED: ErrorSpec(
        5006, 400, "AiError: Bad input: Error: {model} does not support async batch requests (queueRequest)"
    ),
    ErrorKind.BATCH_TOO_LARGE: ErrorSpec(
        3006, 413, "Request is too large: async batch payloads must be under 10 MB"),
    ErrorKind.UNKNOWN_BATCH: ErrorSpec(
        404, 404, "AiError: No async batch request with request_id '{request_id}'"),
    ErrorKind.NOT_REALTIME: ErrorSpec(
        5006, 400,
        "AiError: Bad input: Error: {model} has no realtime (WebSocket) interface; use POST /ai/run",
    ),
    ErrorKind.WEBSOCKET_ONLY: ErrorSpec(
        5006,
        400,
        "AiError: Bad input: Error: {model} is only available over WebSocket; "
        "connect with a WebSocket upgrade instead of POST /ai/run",
    ),
}


# Models whose model-layer error bodies end after `success` (no `result`, no `messages`).
SHORT_BODY_MODELS = frozenset({"@cf/black-forest-labs/flux-1-schnell"})


class CFError(Exception):
    """Raised anywhere in the request path; the error middleware renders it as Cloudflare would."""

    def __init__(self, kind: ErrorKind, /, **fields: Any) -> None:
        spec = CATALOGUE[kind]
        self.kind = ErrorKind(kind)
        self.spec = spec
        self.fields = fields
        self.message = spec.template.format(**fields)
        self.answered_by: str | None = None  # the model whose layer raised it, when known
        # The model call it ended, as far as it got (set by the pipeline): the request log reads it.
        self.call: CallReport | None = None
        super().__init__(f"{spec.code}: {self.message}")

    def from_model(self, model: str) -> CFError:
        """This error, as raised by `model`'s own layer (which decides the body's shape)."""
        self.answered_by = model
        return self

    @property
    def code(self) -> int:
        return self.spec.code

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def layer(self) -> Layer:
        return self.spec.layer

    def envelope(self, *, short_bodies: bool = True) -> dict[str, Any]:
        """The v4 body, with the key order each layer really uses (`short_bodies`: the
        `flux-short-error-body` quirk)."""
        error = {"code": self.code, "message": self.message}
        if self.layer is Layer.GATEWAY:
            return {
                "success": False,
                "result": [],
                "messages": [],
                "error": [error],
                "name": "AiGatewayError",
                "httpCode": self.status,
                "internalCode": self.code,
                "message": self.message,
                "description": self.message,
            }
        if self.layer is Layer.EDGE:
            return {"result": None, "success": False, "errors": [error], "messages": []}
        body: dict[str, Any] = {"errors": [{"message": self.message, "code": self.code}], "success": False}
        if not (short_bodies and self.answered_by in SHORT_BODY_MODELS):
            body["result"] = {}
            body["messages"] = []
        return body
