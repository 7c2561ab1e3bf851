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


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: int
    status: int
    template: str
    layer: Layer = Layer.MODEL


# One place for every code. Templates use str.format fields.
CATALOGUE: dict[str, ErrorSpec] = {
    # Edge
    "auth": ErrorSpec(10000, 401, "Authentication error", Layer.EDGE),
    "missing_auth": ErrorSpec(9106, 403, "Missing X-Auth-Email header", Layer.EDGE),
    "missing_key": ErrorSpec(9106, 403, "Missing X-Auth-Key header", Layer.EDGE),
    "malformed_auth": ErrorSpec(9106, 400, "Authentication failed (status: 400)", Layer.EDGE),
    "could_not_route": ErrorSpec(
        7003, 404, "Could not route to {path}, perhaps your object identifier is invalid?", Layer.EDGE
    ),
    "no_route": ErrorSpec(7000, 400, "No route for that URI", Layer.EDGE),
    "method_not_allowed": ErrorSpec(10405, 405, "Method not allowed", Layer.EDGE),
    "too_large": ErrorSpec(3006, 413, "Request is too large", Layer.EDGE),
    "body_timeout": ErrorSpec(3007, 408, "Request timeout", Layer.EDGE),  # body trickled in too slowly
    # Model layer
    "bad_input": ErrorSpec(5006, 400, "AiError: Bad input: {detail}"),
    "invalid_json": ErrorSpec(
        5006, 400, "AiError: Bad input: Error: request body is not valid JSON ({detail})"
    ),
    "no_such_model": ErrorSpec(5007, 400, "No such model {model} or task"),
    "invalid_base64": ErrorSpec(5004, 400, "Invalid data type for base64 input: {type}"),
    "incomplete_request": ErrorSpec(3003, 400, "Request is missing headers or body: {what}"),
    "requires_paid": ErrorSpec(
        5035, 403, "This model requires a Workers Paid plan. See pricing for details."
    ),
    "lora_unsupported": ErrorSpec(5005, 405, "The model {model} does not support LoRa inference"),
    "finetune_incomplete": ErrorSpec(
        3039, 400, "Finetune is missing required files (model.safetensors and config.json)"
    ),
    # Fine-tunes (emulator/finetunes/lora.py: real wording from cloudflare-docs#14757, status inferred).
    "finetune_not_found": ErrorSpec(
        3037, 404, "AiError: AiError: Finetune {finetune} not found ({request_id})"
    ),
    "invalid_model_id": ErrorSpec(3042, 404, "The model name is invalid"),
    "timeout": ErrorSpec(3007, 408, "AiError: AiError: Request timeout ({request_id})"),
    "aborted": ErrorSpec(3008, 408, "Request was aborted"),
    "daily_limit": ErrorSpec(
        4006,
        429,
        "AiError: AiError: you have used up your daily free allocation of 10,000 neurons, please upgrade to "
        "Cloudflare's Workers Paid plan if you would like to continue usage. ({request_id})",
    ),
    "capacity": ErrorSpec(3040, 429, "Capacity temporarily exceeded, please try again."),
    "rate_limited": ErrorSpec(3040, 429, "Capacity temporarily exceeded, please try again."),
    "upstream_unavailable": ErrorSpec(7009, 502, "Upstream service unavailable", Layer.EDGE),
    "server_error": ErrorSpec(1000, 500, "Server Error"),
    "upstream_timeout": ErrorSpec(3007, 504, "Upstream request timed out: {detail}"),
    "upstream_unreachable": ErrorSpec(7009, 502, "Upstream service unavailable: {detail}", Layer.EDGE),
    "no_cassette_match": ErrorSpec(7404, 404, "Emulator replay: {detail}"),
    "upstream_budget": ErrorSpec(7429, 429, "Emulator upstream budget exhausted: {detail}"),
    "upstream_too_large": ErrorSpec(7413, 502, "Emulator upstream answer too large: {detail}"),
    "not_supported": ErrorSpec(5019, 405, "{detail}"),
    # OpenAI-compatible surface (codes for undocumented cases are the emulator's choice, see
    # emulator/server/openai_surface.py and docs/openai-compatible.md).
    "missing_model": ErrorSpec(
        5006, 400, "AiError: Bad input: Error: required properties at '/' are 'model'"
    ),
    "responses_model": ErrorSpec(
        5007,
        400,
        "No such model {model} or task: /v1/responses serves only @cf/openai/gpt-oss-120b and "
        "@cf/openai/gpt-oss-20b",
    ),
    "responses_stream": ErrorSpec(
        5006, 400, "AiError: Bad input: Error: /v1/responses supports only stream: false"
    ),
    # AI Gateway (real-responses/err-aigateway-2005-2008-compat.json).
    "invalid_provider": ErrorSpec(2008, 400, "Invalid provider", Layer.GATEWAY),
    # Catalog API query errors (codes undocumented: emulator's choice, see server/catalog_api.py).
    "invalid_query": ErrorSpec(1001, 400, "Invalid query parameter '{name}': {detail}", Layer.EDGE),
    "missing_query": ErrorSpec(1001, 400, "Missing required query parameter '{name}'", Layer.EDGE),
    # Async batch (reference §6; codes are the emulator's choice, see emulator/server/batch.py).
    "batch_unsupported": ErrorSpec(
        5006, 400, "AiError: Bad input: Error: {model} does not support async batch requests (queueRequest)"
    ),
    "batch_too_large": ErrorSpec(3006, 413, "Request is too large: async batch payloads must be under 10 MB"),
    "unknown_batch": ErrorSpec(404, 404, "AiError: No async batch request with request_id '{request_id}'"),
    "not_realtime": ErrorSpec(
        5006, 400,
        "AiError: Bad input: Error: {model} has no realtime (WebSocket) interface; use POST /ai/run",
    ),
    "websocket_only": ErrorSpec(
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

    def __init__(self, kind: str, /, **fields: Any) -> None:
        spec = CATALOGUE[kind]
        self.kind = kind
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
