"""Backends answer a `Call` with an `Outcome`: mock fakes, replayed cassettes, or the real API."""

from emulator.backends.base import Backend

__all__ = ["Backend"]
