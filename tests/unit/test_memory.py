"""Resident memory and giving freed large blocks back to the system (glibc)."""

from __future__ import annotations

import subprocess
import sys

from via_otlp import memory

# In a process of its own: the allocator setting would stay for the rest of the test run.
# 64 blocks of 512 KiB (the temporaries of a bucket close at 65,536 profiles), each followed by
# a 100 kB object that stays (6 MiB) and pins the heap above it, are freed; what stays resident
# is printed.
_CHILD = """
import sys
import numpy as np
from via_otlp import memory
if sys.argv[1] == "release":
    assert memory.release_large_blocks()
blocks, pins = [], []
a = np.ones(131_072)  # freeing a 1 MiB block raises glibc's adaptive threshold past 512 KiB
del a
before = memory.rss_of()
for _ in range(64):
    blocks.append(np.ones(65_536))
    pins.append(bytearray(100_000))
del blocks
print(memory.rss_of() - before)
"""


def _left_resident(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def test_rss_of_this_process_is_read() -> None:
    assert memory.rss_of() > 1024 * 1024


def test_freed_large_blocks_go_back_to_the_system() -> None:
    mib = 1024 * 1024
    kept = _left_resident("keep")
    released = _left_resident("release")
    assert released < 12 * mib, released  # the 6 MiB that stay, and no block
    assert kept > 30 * mib, kept  # without the setting the heap holds the blocks (what it fixes)
