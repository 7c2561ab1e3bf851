"""Keep freed large blocks in the process heap instead of handing them back to the kernel.

glibc serves a block above its mmap threshold with a fresh mapping and returns it on free, and trims
the heap top back to the kernel; the next large answer (a 2 MB embeddings body, a PNG, the numpy
arrays behind them) then touches hundreds of new pages, each a page fault. On this class of VM that
was ~480 faults and ~1 ms per 100×1024 embedding batch, more than the embedding math itself.
The cost is that the resident size stays at its high-water mark instead of shrinking between calls.
"""

from __future__ import annotations

import ctypes

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's ceiling for the mmap threshold on 64-bit (HEAP_MAX_SIZE / 2); bigger blocks still get mappings.
LARGEST_HEAP_BLOCK = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; False where the C library is not glibc (musl, macOS)."""
    try:
        # The symbols the interpreter already links against; no library search at startup.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK) == 1 and mallopt(M_TRIM_THRESHOLD,
                                                                           2 * LARGEST_HEAP_BLOCK) == 1
