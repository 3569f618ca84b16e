"""Writes that survive a crash: a rename is durable only once its directory is synced.

`os.replace` and `Path.rename` change a directory entry; until the directory itself is
fsynced, a crash can bring back the old entry (or none) although the file's data was synced.
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
