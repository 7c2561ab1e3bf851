"""The server keeps freed large blocks in its heap: no page faults for each big answer it builds."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

# Builds and drops three 2 MiB buffers together 50 times (an embeddings answer: its float arrays,
# the JSON body and its copy) and prints the page faults that took, with or without the allocator
# setting the server applies at startup. By default glibc gives the freed heap top back to the kernel.
_FAULTS = """
import resource, sys
from emulator.launch.allocator import keep_freed_memory
if sys.argv[1] == "kept" and not keep_freed_memory():
    raise SystemExit("not glibc")
def answer():
    parts = [b"x" * (2 << 20) for _ in range(3)]
    del parts
answer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    answer()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    root = str(Path(__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                         cwd=root, env={"PYTHONPATH": root})
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_big_blocks_are_reused_instead_of_faulted_in_again() -> None:
    assert faults("default") > 50 * 500  # ~1,500 pages of fresh memory apiece
    assert faults("kept") < 500
