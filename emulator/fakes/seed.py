"""Request fingerprint → seed: the only source of randomness for every fake."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import orjson


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, so key order never changes a fake."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


# Parts longer than this (uploaded audio and images, as bytes or inside JSON) are hashed with SHA-256
# first: with the SHA extensions most x86 and ARM CPUs have, it digests a 10-second WAV (320 KB) ~3x
# faster than blake2b, which stays for the small parts.
LARGE_PART = 4096


def derive_seed(*parts: Any) -> int:
    """A 64-bit seed from any JSON-able parts (bytes are hashed as they are)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part if isinstance(part, bytes) else canonical(part)
        h.update(data if len(data) <= LARGE_PART else hashlib.sha256(data).digest())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def rng(seed: int) -> np.random.Generator:
    """A numpy generator whose stream is fixed by `seed` (PCG64 is stable across numpy versions)."""
    return np.random.Generator(np.random.PCG64(seed))
