"""A least-recently-used map bounded by entry count and by an estimate of the bytes its values hold,
optionally admitting a key only on its second use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SizedLRU(Generic[K, V]):
    """With `second_use`, `admits` says yes to every key while the map has room, and once it is full
    only to a key asked about a second time while the last `max_entries` first-time keys are
    remembered (their hashes only), like TinyLFU's doorkeeper: under load where no request repeats,
    a full map builds, stores and evicts nothing, and a request that does repeat is still kept."""

    def __init__(self, *, max_entries: int, max_bytes: int, second_use: bool = False) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._second_use = second_use
        self._seen_once: dict[int, None] = {}  # insertion-ordered: the oldest goes first

    def admits(self, key: Hashable) -> bool:
        """Whether a value for `key` is worth building and `put`ting now."""
        if not self._second_use or (len(self._items) < self.max_entries and self.bytes < self.max_bytes):
            return True
        seen = self._seen_once
        digest = hash(key)
        if digest in seen:
            del seen[digest]
            return True
        seen[digest] = None
        if len(seen) > self.max_entries:
            del seen[next(iter(seen))]
        return False

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep `value` (about `size` bytes), dropping the least recently used beyond the bounds."""
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[key] = (value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self.bytes -= evicted

    def clear(self) -> None:
        self._items.clear()
        self._seen_once.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)
