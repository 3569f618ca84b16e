"""Writes that survive a crash: a rename is durable only once its directory is synced.

`os.replace` and `Path.rename` change a directory entry; until the directory itself is
fsynced, a crash can bring back the old entry (or none) although the file's data was synced.
Many new files (a new PostgreSQL cluster) are written out with one `sync_filesystem` instead
of an fsync each.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory `path` durable (after a rename into it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: str | Path) -> None:
    """Write out everything of the file system holding directory `path` (syncfs(2); os.sync
    where the C library has no syncfs): one wait for many new files instead of an fsync per
    file. OSError when the file system reports a write error."""
    import ctypes  # (here: once per new cluster, not at every import of `state`)

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}", str(path))
    finally:
        os.close(fd)
