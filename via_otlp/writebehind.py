"""A bounded write-behind buffer: callers never wait, one task writes batches, outages wait.

The registry (PostgreSQL) and the vector store (Qdrant) keep what they must write off the hot
path the same way, so it is written once here:

- `add` appends to a bounded buffer and never waits; a full (or closed) buffer refuses the
  item, counted in `dropped` and logged once until a write succeeds again.
- One background task takes up to `batch_size` items at a time and hands them to `write`.
  Success removes them. An error `retryable` accepts is an outage: the items stay, the buffer
  is `degraded` (logged once), and the same batch is tried again after a jittered backoff
  (`wake` cuts the wait short when the upstream is known to be back). Any other error is one no
  retry can fix: the batch is dropped, counted in `failed` and logged, and writing goes on.
- `shutdown` writes what it can within its timeout; what is left stays for the owner to count
  (`discard`).

`write` owns what a success means for its rows (counting written rows, writing row by row
after a permanent error); this class owns the buffer, the task, the backoff and the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Generic, TypeVar

from via_otlp.backoff import Backoff, backoff_delay
from via_otlp.errors import ViaError
from via_otlp.lifecycle import stop_tasks

T = TypeVar("T")

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """An error as `last_error` shows it: our own message, or the type and text of another."""
    return exc.message if isinstance(exc, ViaError) else f"{type(exc).__name__}: {exc}"


class WriteBehind(Generic[T]):
    """A bounded buffer drained by one background task into `write` (see the module doc).

    `upstream` and `what` name the server and the writes in log lines ("PostgreSQL",
    "registry writes"); `interval` is how long an idle task waits before looking again.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        retryable: Callable[[BaseException], bool],
        capacity: int,
        batch_size: int,
        interval: float,
        backoff: Backoff,
        upstream: str,
        what: str,
        task_name: str,
    ) -> None:
        self._write = write
        self._retryable = retryable
        self.capacity = capacity
        self._batch_size = batch_size
        self._interval = interval
        self._backoff = backoff
        self._upstream = upstream
        self._what = what
        self._task_name = task_name
        self._buffer: deque[T] = deque()
        self._wake = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._closing = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._full_logged = False
        self._done = 0  # items taken off the buffer (written or failed), for `flush`
        self.dropped = 0
        self.failed = 0
        self.last_error = ""
        self.degraded = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- intake (never waits) -------------------------------------------------------------------

    def add(self, item: T) -> bool:
        """Buffer `item`; False when the buffer is full or closed (counted in `dropped`)."""
        if self._closed or len(self._buffer) >= self.capacity:
            self.dropped += 1
            if not self._full_logged:
                self._full_logged = True
                log.warning(
                    "%s: buffer full (%d) or closed; dropping new ones until %s catches up",
                    self._what,
                    self.capacity,
                    self._upstream,
                )
            return False
        self._buffer.append(item)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()
        return True

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writing task; a second call is a no-op."""
        if self._task is None:
            self._closing.clear()
            self._closed = False
            self._task = asyncio.create_task(self._run(), name=self._task_name)

    async def shutdown(self, timeout: float = 5.0) -> int:
        """Write what is buffered (within `timeout`), then stop and refuse new items; the
        number of items left unwritten. Idempotent, safe without start."""
        self._closed = True
        task, self._task = self._task, None
        self._closing.set()
        self._wake.set()
        await stop_tasks([task], timeout)
        if self._buffer:
            log.warning("%s: %d not written at shutdown", self._what, len(self._buffer))
        return len(self._buffer)

    def discard(self) -> int:
        """Drop what is buffered (counted in `dropped`); how many."""
        n = len(self._buffer)
        self.dropped += n
        self._buffer.clear()
        return n

    def wake(self) -> None:
        """Try the buffer now (the upstream is back), rather than at the end of the backoff."""
        self._retry_now.set()
        self._wake.set()

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything buffered so far is written (or failed); False if `timeout`
        passed first or the task is not running."""
        deadline = time.monotonic() + timeout
        target = self._done + len(self._buffer)
        while self._done < target and self._buffer:
            if self._task is None or time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.01)
        return True

    def note_outage(self, exc: BaseException) -> None:
        """The upstream is unreachable (seen by the writer, or by its owner at start)."""
        if not self.degraded:
            log.warning(
                "%s unreachable, %s wait in the buffer: %s", self._upstream, self._what, exc
            )
        self.degraded = True
        self.last_error = describe(exc)

    # -- the background task --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                if self._closing.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                continue
            batch = list(islice(self._buffer, self._batch_size))
            try:
                await self._write(batch)
            except Exception as exc:
                if not self._retryable(exc):
                    self._give_up(batch, exc)
                    continue
                self.note_outage(exc)
                if await self._sleep_or_close(backoff_delay(failures, self._backoff)):
                    return
                failures += 1
                continue
            self._take(len(batch))
            if self.degraded:
                log.info("%s is back; %s resumed", self._upstream, self._what)
            self.degraded = False
            self._full_logged = False
            failures = 0

    def _take(self, n: int) -> None:
        for _ in range(n):
            self._buffer.popleft()
        self._done += n

    def _give_up(self, batch: list[T], exc: BaseException) -> None:
        """An error that no retry can fix: drop the batch, count it, keep going."""
        log.error("%s: dropped %d that cannot be written", self._what, len(batch), exc_info=exc)
        self._take(len(batch))
        self.failed += len(batch)
        self.last_error = describe(exc)

    async def _sleep_or_close(self, seconds: float) -> bool:
        """Sleep `seconds` (cut short by `wake`); True if shutdown began meanwhile."""
        self._retry_now.clear()
        closing = asyncio.ensure_future(self._closing.wait())
        retry = asyncio.ensure_future(self._retry_now.wait())
        try:
            await asyncio.wait(
                (closing, retry), timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closing.cancel()
            retry.cancel()
        return self._closing.is_set()
