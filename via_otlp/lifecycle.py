"""Where the service is in its life: the `state` of `/status`, `ctl status` and the
`via_otlp.state` self-metric; `stop_tasks`, how every component ends its background tasks; and
`raise_nofile_limit`, done first, before any process is forked.

Kept apart from `app.py` so that readers of the status (telemetry, control) know the states
without importing the whole application.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import resource
from collections.abc import Iterable
from typing import Any


class AppState(enum.StrEnum):
    """`new` until `start`; `serving` once intake is open; `draining` from the first step of
    shutdown (health NOT_SERVING, intake closed) until everything is flushed; then `stopped`."""

    NEW = "new"
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None], grace: float = 0.0) -> None:
    """Give `tasks` up to `grace` seconds to finish, then cancel the rest and wait for them all:
    the last step of a component's `shutdown`. What the tasks raise is not raised here (they
    log their own errors); a `shutdown` that is itself cancelled still stops them. None entries
    (a task never started) are skipped.

    >>> async def main() -> bool:
    ...     task = asyncio.create_task(asyncio.sleep(3600))
    ...     await stop_tasks([task, None])
    ...     return task.cancelled()
    >>> asyncio.run(main())
    True
    """
    pending = [t for t in tasks if t is not None]
    try:
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (as the Go runtime does); returns both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard
