"""Picks the backend for a mode: the mock fakes, or the cassette/upstream backend for the other four."""

from __future__ import annotations

from emulator.backends.base import Backend
from emulator.backends.cassette import CassetteBackend, JsonParser
from emulator.backends.mock import MockBackend
from emulator.settings import Mode, Settings


def backend_for(settings: Settings, *, parse_json: JsonParser | None = None) -> Backend:
    """The backend `settings.mode` asks for (the control plane calls this again when the mode changes).
    `parse_json` is the server's sliced parser of large JSON bodies, which replay matching uses."""
    if settings.mode is Mode.MOCK:
        return MockBackend(seed=settings.seed, quirks=settings.quirks)
    return CassetteBackend(settings, settings.mode, parse_json=parse_json)
