"""Resident memory of a process, and giving the allocator's free memory back to the system."""

from __future__ import annotations

import contextlib
import ctypes
import os

_M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)
# Blocks at least this large are mapped on their own and unmapped when freed. A bucket close
# makes dozens of temporaries the size of the profile table (512 KiB at 65,536 slots); with
# glibc's adaptive threshold they come from the heap after the first one is freed, and the
# heap keeps the space: ~0.4 KB more resident per profile between ticks. Pinning the threshold
# costs page faults instead: at 50,000 profiles a bucket close took ~45 ms more CPU (10 -> 55 ms,
# load 12), 0.4 % of a core with 10 s buckets.
LARGE_BLOCK_BYTES = 256 * 1024


def rss_of(pid: int | None = None) -> int:
    """Resident bytes of process `pid` (this process if None); 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim() -> None:
    """Give the allocator's free memory back to the system (glibc only; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_large_blocks(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Map blocks of `threshold` bytes and more on their own, so that freeing one gives its
    memory back (glibc only); True if the allocator took the setting."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold))
    return False
