"""The slice sizes of the large-body paths (server/dense_json.py, fakes/seed.py's sliced dumps),
shrunk so that small generated bodies take those paths in property tests."""

from __future__ import annotations

import pytest

from emulator.fakes import seed
from emulator.server import dense_json


def shrink_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense_json, "PIECE_BYTES", 12)
    monkeypatch.setattr(dense_json, "_RESERVED_ITEMS", 4)
    monkeypatch.setattr(seed, "LONG_LIST_ITEMS", 3)
    monkeypatch.setattr(seed, "DUMPS_SLICE_ITEMS", 2)
    monkeypatch.setattr(seed, "DUMPS_SLICE_BYTES", 8)
    monkeypatch.setattr(seed, "_SORT_RUN", 2)
    monkeypatch.setattr(seed, "_MEMBERS_SLICE", 2)
