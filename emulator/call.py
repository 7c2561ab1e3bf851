"""The one internal shape every surface is turned into (`Call`) and every backend answers with (`Outcome`)."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.catalog import Model


class Surface(enum.StrEnum):
    """Which public API shape the caller used; rendering and error bodies depend on it."""

    NATIVE = "native"  # POST …/ai/run/{model}
    CHAT = "chat"  # POST …/ai/v1/chat/completions
    EMBEDDINGS = "embeddings"  # POST …/ai/v1/embeddings
    RESPONSES = "responses"  # POST …/ai/v1/responses
    COMPAT_CHAT = "compat_chat"  # AI Gateway /compat/chat/completions
    BINDING = "binding"  # a Worker's env.AI, through Miniflare's remote-proxy framing
    REALTIME = "realtime"  # WebSocket upgrade of …/ai/run/{model}


@dataclass(slots=True)
class BinaryInput:
    """A request body that was not JSON: raw audio/image bytes, or a multipart form."""

    data: bytes
    content_type: str
    form: dict[str, Any] | None = None  # multipart fields (str values or bytes for files)


@dataclass(slots=True)
class Call:
    """One model invocation, whatever surface it arrived on."""

    model: Model
    inputs: dict[str, Any] | BinaryInput  # validated native inputs (OpenAI bodies are translated first)
    surface: Surface = Surface.NATIVE
    account_id: str = ""
    request_id: str = ""
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    gateway_id: str | None = None
    # The body exactly as received (before translation), kept for record/replay and the request log.
    raw_body: bytes = b""
    raw_content_type: str = ""
    # `raw_body` parsed as JSON by the route, the same object (None when the route did not parse it
    # as JSON): replay matches a large body on it rather than parse the body a second time. Nothing
    # may change it while the call runs.
    raw_json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # (emulator seed, the inputs object, its seed): the backend and the OpenAI renderer both need the
    # call's seed, a canonical dump and hash of the inputs (~20 µs), so the first one keeps it.
    seed_memo: tuple[int, object, int] | None = field(default=None, repr=False, compare=False)

    @property
    def json_inputs(self) -> dict[str, Any]:
        """Inputs as a dict; binary bodies appear as {} (tasks read `binary` instead)."""
        return self.inputs if isinstance(self.inputs, dict) else {}

    @property
    def binary(self) -> BinaryInput | None:
        return self.inputs if isinstance(self.inputs, BinaryInput) else None


@dataclass(slots=True)
class Usage:
    """Billable units a model consumed; pricing turns these into neurons."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    images: int = 0  # image classification / detection inputs
    output_tiles: float = 0.0  # 512×512 tiles of generated images
    input_tiles: float = 0.0  # 512×512 tiles of input images (img2img, FLUX.2)
    steps: int = 0
    megapixels: float = 0.0
    input_megapixels: float = 0.0
    audio_seconds: float = 0.0
    characters: int = 0
    requests: int = 1


class StreamCut(ConnectionResetError):
    """Raised mid-stream (a cut_stream fault, an upstream stream that broke off, its replay): aiohttp
    treats it as a dropped connection and closes it without a final chunk."""


@dataclass(slots=True)
class StreamEvent:
    """One server-sent event as it goes on the wire (`data` is the text after `data: `)."""

    data: str
    delay: float = 0.0  # seconds to wait before writing it (replay timing, slow-stream faults)
    raw: bytes | None = None  # exact bytes on the wire (replayed chunks); when set, `data` is informative


# What a surface writes as a stream, and a wrapper around it (the slow and cut stream faults of
# emulator/control/faults.py travel back from the control plane as one).
EventSource = Iterable[StreamEvent] | AsyncIterator[StreamEvent]
StreamFilter = Callable[[EventSource], AsyncIterator[StreamEvent]]


@dataclass(slots=True)
class Outcome:
    """What a backend produced for a Call, before rendering for the surface.

    Exactly one of `result` (a JSON-able model output), `body` (raw bytes, e.g. PNG) or
    `events` (a native SSE stream) is the payload. `rendered` marks an outcome whose body and
    headers are already final bytes on the wire (replay/passthrough): the renderer sends it as is.
    """

    result: Any = None
    body: bytes | None = None
    content_type: str = "application/json"
    events: list[StreamEvent] | AsyncIterator[StreamEvent] | None = None
    usage: Usage = field(default_factory=Usage)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    rendered: bool = False
    neurons: float | None = None  # neurons reported by the real API (replay/record); None = price it
    # Text-generation details the OpenAI renderer needs (finish reason, tool calls, reasoning).
    extras: dict[str, Any] = field(default_factory=dict)
    # Every identical request gets this same outcome (mock fakes; a replay at its key's last
    # recording): the server may keep the rendered answer (server/answer_cache.py).
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class CallReport:
    """What a model call tells the request log when it returns or fails: which call it was, who
    answered it (a stub or the backend), what was charged, and which faults fired. The pipeline
    builds it from what the call returned; the request log fills its entry from it in one place."""

    model: str | None  # None for a request whose model calls are summed up (toMarkdown with no image)
    surface: str | None
    request_id: str
    stream: bool = False
    source: str | None = None  # "stub" or the backend's name (mock, replay, record, …)
    neurons: float | None = None  # what was charged; None when nothing was
    stub_id: str | None = None
    fault_ids: tuple[str, ...] = ()
    faulted: bool = False  # a fault fired (an injected error too, which lists no id)
    cut: bool = False  # the answer was cut short (a realtime session's cut_stream fault)

    @classmethod
    def of(cls, call: Call, **facts: Any) -> CallReport:
        return cls(call.model.name, call.surface.value, call.request_id, call.stream, **facts)

    def charged(self, neurons: float | None) -> CallReport:
        """This report with what was charged (`dataclasses.replace` costs ~4 µs a call here)."""
        return CallReport(self.model, self.surface, self.request_id, self.stream, self.source, neurons,
                          self.stub_id, self.fault_ids, self.faulted, self.cut)

    @property
    def plain(self) -> bool:
        """No stub answered and no fault fired: the backend's own answer."""
        return self.stub_id is None and not self.faulted
