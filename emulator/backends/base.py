"""The `Backend` interface: the only thing that differs between mock, replay, record and passthrough."""

from __future__ import annotations

from typing import Protocol

from emulator.call import Call, Outcome


class Backend(Protocol):
    name: str

    async def handle(self, call: Call) -> Outcome:
        """Produce the outcome for a validated call (raise CFError for model-layer failures)."""
        ...

    def answer_token(self) -> object | None:
        """What rendered answers kept for this backend stay valid with (compared by identity on every
        reuse); None when answers must not be kept right now."""
        ...

    async def close(self) -> None: ...
