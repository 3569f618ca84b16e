"""What via-otlp writes is private to its user: the data directory 0700, files 0600.

The data directory holds the learned state, the vector store and (embedded) PostgreSQL's
cluster: templates quote log lines, which can carry personal data. `serve` therefore creates
every file with the umask 077 (`restrict_new_files`) and tightens the data directory itself
(`private_dir`). The one exception is group *traverse* (x, not r or w) on the data directory,
which the embedded PostgreSQL needs when via-otlp runs as root and the server as an
unprivileged user (see `registry/embedded.py`); the cluster beneath it is private to that user.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
_KEEP = 0o710  # owner rwx; group x (traverse) may stay; nothing for others


def restrict_new_files() -> int:
    """Make every file and directory this process creates from now on private (umask 077).

    Returns the previous umask.
    """
    return os.umask(PRIVATE_UMASK)


def private_dir(path: str | Path) -> Path:
    """Create `path` (and its parents) private to its owner, or tighten it if it exists.

    An existing directory loses read/write for its group and every right for others (group
    traverse is kept, see the module docstring); one that is not ours is left alone, logged.
    """
    p = Path(path)
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = p.stat()
    mode = stat.S_IMODE(st.st_mode)
    wanted = (mode & _KEEP) | 0o700
    if mode != wanted:
        try:
            p.chmod(wanted)
        except OSError as exc:
            log.warning(
                "data directory %s is mode %o and cannot be made private (%s): others may read "
                "the learned state",
                p, mode, exc.strerror,
            )  # fmt: skip
        else:
            log.info("data directory %s was mode %o, now %o (private)", p, mode, wanted)
    return p
