"""Run-time settings of one emulator server: one pydantic model, filled from CLI flags or environment."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, Field

ENV_PREFIX = "WORKERS_AI_EMULATOR_"
# The account the banner's examples use, and the one a binding connection string without its own
# account (`http://HOST:PORT/`) is charged to.
DEFAULT_ACCOUNT = "0123456789abcdef0123456789abcdef"


class Plan(enum.StrEnum):
    """The Workers AI plan the ledger bills by: FREE refuses past the daily allocation (4006),
    PAID bills the neurons past it."""

    FREE = "free"
    PAID = "paid"


class Mode(enum.StrEnum):
    MOCK = "mock"
    REPLAY = "replay"
    RECORD = "record"
    PASSTHROUGH = "passthrough"
    REPLAY_OR_RECORD = "replay-or-record"


class EventLoop(enum.StrEnum):
    """The event loop `serve` runs on (emulator/launch/eventloop.py)."""

    AUTO = "auto"  # uvloop where it is installed, else asyncio's own
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


class Hints(enum.StrEnum):
    """Whose words a replay miss uses to say how to fix it: `serve` flags or pytest options."""

    SERVE = "serve"
    PYTEST = "pytest"


class Settings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8787
    seed: int = 0
    data_dir: Path | None = None  # None: a fresh temporary directory per server
    token: str | None = None  # when set, only this API token (or X-Auth-Key) is accepted
    mode: Mode = Mode.MOCK
    plan: Plan = Plan.FREE
    daily_neurons: float = 10_000
    rate_limits: bool = False
    ledger_path: str | None = None  # ":memory:" or a file; default <data_dir>/ledger.sqlite3
    # False: WAL with synchronous=NORMAL, so a charge is a write() but no fsync; a charged call
    # survives kill -9 of the server (the WAL is in the OS page cache), only an OS crash or power
    # loss can drop the last calls. True: synchronous=FULL, an fsync per call (~1-10 ms).
    durable_ledger: bool = False
    upstream: str = "https://api.cloudflare.com"
    upstream_gateway: str = "https://gateway.ai.cloudflare.com"  # where AI Gateway (/v1/…) paths go
    upstream_timeout: float = 120.0  # seconds without a byte from upstream before answering 504
    upstream_account_id: str | None = None
    upstream_token: str | None = None
    cassette: str = "default"
    cassette_dir: Path | None = None  # default <data_dir>/cassettes
    replay_timing: str = "fast"
    max_upstream_neurons: float | None = None
    ignore_fields: list[str] = Field(default_factory=list)  # request-body fields replay matching ignores
    hints: Hints = Hints.SERVE
    catalog_overlay: Path | None = None  # default <data_dir>/catalog-overlay.json (`catalog sync`)
    extra_models: list[str] = Field(default_factory=list)  # NAME=TASK models served besides the catalog
    max_body_bytes: int = 25 * 1024 * 1024
    # Record/passthrough: an upstream answer (body, or a stream's events) larger than this is not
    # relayed or stored; the client gets a 502 (code 7413), a stream is cut.
    max_upstream_body_bytes: int = 64 * 1024 * 1024
    # Replay: a cassette file larger than this is refused before it is read (7404).
    max_cassette_bytes: int = 256 * 1024 * 1024
    quirks: dict[str, bool] = Field(default_factory=dict)  # quirk name → on/off (default: all on)
    control_plane: bool = True
    workers: int = 1
    event_loop: EventLoop = EventLoop.AUTO

    def resolved_cassette_dir(self) -> Path:
        return self.cassette_dir or self.resolved_data_dir() / "cassettes"

    def resolved_data_dir(self) -> Path:
        if self.data_dir is None:
            import tempfile

            self.data_dir = Path(tempfile.mkdtemp(prefix="workers-ai-emulator-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
