"""An async batch queued on the server state (server/batch.py answers and polls it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.catalog import Model


@dataclass
class Batch:
    request_id: str
    model: Model
    account_id: str
    requests: list[dict[str, Any]]
    polls: int = 0
    result: dict[str, Any] | None = None
