"""Request fingerprint → seed: the only source of randomness for every fake."""

from __future__ import annotations

import hashlib
import threading
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


# The increment every re-seeded stream uses, and an odd multiplier that spreads a 64-bit seed over
# PCG64's 128-bit state.
_INCREMENT = 0xDA3E39CB94B95BDB_9E3779B97F4A7C15 | 1
_SPREAD = 0x9E3779B97F4A7C15_F39CC0605CEDC835
_MASK128 = (1 << 128) - 1


class _Streams(threading.local):
    def __init__(self) -> None:
        self.generator = np.random.Generator(np.random.PCG64(0))


_streams = _Streams()


def reseeded(seed: int) -> np.random.Generator:
    """This thread's generator, set to the state `seed` fixes: the per-request generator of the cheap
    fakes. Building a generator from a seed (`rng`) hashes it through SeedSequence, ~15 µs; setting
    the state is ~1.5 µs. PCG64's state transition and output are part of numpy's stable API, so the
    numbers are the same in every process. The generator is shared by the thread: it is valid until
    the next `reseeded` call, so a fake draws everything it needs before calling another that
    reseeds."""
    generator = _streams.generator
    state = {"state": (seed * _SPREAD) & _MASK128, "inc": _INCREMENT}
    generator.bit_generator.state = {"bit_generator": "PCG64", "state": state, "has_uint32": 0, "uinteger": 0}
    return generator
