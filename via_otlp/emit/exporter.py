"""`Emitter`: a bounded queue of anomaly events, batched and exported as OTLP with retries.

Life cycle: `Emitter(config)` → `await start()` → `submit(events)` any number of times →
`await shutdown(timeout)`. `submit` never blocks and never raises: when the queue is full the
events are dropped, counted and logged once. One sender task takes batches off the queue, encodes
each signal once (so retries send identical bytes) and delivers it, retrying only retryable
failures with jittered backoff or the server's RetryInfo / Retry-After delay, within one
deadline per batch. `shutdown` stops intake, flushes what it can before its own deadline (which
cuts retries short), then counts what is left as dropped and closes the transport.

`submit_incidents` queues incident events (from correlate/) the same way; they share the queue,
its bound and its counters, and are encoded as `via.incident` logs and incident spans.

`submit` and everything else must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from via_otlp.backoff import backoff_delay
from via_otlp.emit.config import EmitConfig, parse_endpoint
from via_otlp.emit.console import ConsoleWriter
from via_otlp.emit.encode import (
    count_items,
    events_to_logs_request,
    events_to_spans_request,
    incident_story,
    incidents_to_logs_request,
    incidents_to_spans_request,
)
from via_otlp.emit.retry import ExportError
from via_otlp.emit.transport import ExportRequest, Transport, make_transport
from via_otlp.errors import StartupError
from via_otlp.model import AnomalyEvent, IncidentEvent, IncidentEventKind

log = logging.getLogger(__name__)


class EmitterState(enum.StrEnum):
    """Where the emitter is in its life, and how the downstream is doing."""

    NEW = "new"  # constructed, not started
    CONSOLE = "console"  # no endpoint: events are printed
    OK = "ok"  # the last export succeeded (or none was needed yet)
    RETRYING = "retrying"  # a retryable failure is being retried
    FAILING = "failing"  # the last batch was given up (permanent error or retries exhausted)
    CLOSED = "closed"  # shut down


class Signal(enum.Enum):
    """An OTLP signal the emitter produces."""

    LOGS = "logs"
    SPANS = "spans"


@dataclass(frozen=True, slots=True)
class EmitStats:
    """Counters of one emitter.

    `queued`, `dropped_queue_full` and `dropped_shutdown` count anomaly (and incident) events; `sent`,
    `rejected` (partial success), `failed_permanent` and `failed_retries_exhausted` count
    exported items (log records plus spans), since one event may become one log and one span.
    """

    state: EmitterState
    queued: int
    sent: int
    retries: int
    rejected: int
    dropped_queue_full: int
    dropped_shutdown: int
    failed_permanent: int
    failed_retries_exhausted: int
    last_error: str


class Emitter:
    """Sends anomaly events downstream as OTLP logs and/or spans, or prints them (no endpoint)."""

    def __init__(
        self,
        config: EmitConfig,
        *,
        console_stream: TextIO | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        endpoint = config.endpoint.strip()
        self._target = (
            parse_endpoint(endpoint, config.protocol, config.tls.insecure) if endpoint else None
        )
        self._console = (
            ConsoleWriter(console_stream, config.error_score) if self._target is None else None
        )
        self._signals = _signals(config.signals)
        self._rng = rng or random.Random()
        self._queue: deque[AnomalyEvent | IncidentEvent] = deque()
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._shutdown_deadline = math.inf
        self._transport: Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Future[None] | None = None
        self._state = EmitterState.NEW
        self._in_flight = 0
        self._overflow_logged = False
        self._closed_logged = False
        self._sent = self._retries = self._rejected = 0
        self._dropped_queue_full = self._dropped_shutdown = 0
        self._failed_permanent = self._failed_exhausted = 0
        self._last_error = ""

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the transport and start the sender task; a second call is a no-op.

        Raises `StartupError` when TLS files cannot be read, or after `shutdown`.
        """
        if self._state is EmitterState.CLOSED or self._shutdown_task is not None:
            raise StartupError("the emitter was shut down", hint="create a new Emitter")
        if self._task is not None:
            return
        if self._target is not None:
            transport = make_transport(self._target, self._config)
            await transport.start()
            self._transport = transport
            self._state = EmitterState.OK
        else:
            self._state = EmitterState.CONSOLE
        try:
            self._task = asyncio.create_task(self._run(), name="via-emit-sender")
        except BaseException:
            await self._close_transport()
            raise

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop intake, flush within `timeout` seconds, count the rest as dropped, close.

        Idempotent and safe without `start`; concurrent calls wait for the same shutdown.
        """
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown(timeout))
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._shutdown_deadline = loop.time() + max(0.0, timeout)
        self._closing.set()
        self._wakeup.set()
        if self._task is not None:
            await self._stop_sender(timeout)
        lost = len(self._queue) + self._in_flight
        if lost:
            self._dropped_shutdown += lost
            log.warning("emit: shutdown deadline reached, %d anomaly events not delivered", lost)
        self._queue.clear()
        await self._close_transport()
        self._state = EmitterState.CLOSED

    async def _stop_sender(self, timeout: float) -> None:
        assert self._task is not None
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        elif not self._task.cancelled() and (exc := self._task.exception()) is not None:
            log.error("emit: sender task failed", exc_info=exc)

    async def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                await transport.close()
            except Exception:
                log.exception("emit: closing the transport failed")

    # -- intake -----------------------------------------------------------------------------

    def submit(self, events: Sequence[AnomalyEvent]) -> None:
        """Queue `events` for export; never blocks or raises. Overflow is counted and logged once."""
        self._submit(events)

    def submit_incidents(self, events: Sequence[IncidentEvent]) -> None:
        """Queue incident events (opened, updated as members join, resolved); never blocks."""
        self._submit(events)

    def _submit(self, events: Sequence[AnomalyEvent | IncidentEvent]) -> None:
        count = len(events)
        if not count:
            return
        if self._closing.is_set():
            self._dropped_shutdown += count
            if not self._closed_logged:
                self._closed_logged = True
                log.warning("emit: events submitted after shutdown are dropped (and counted)")
            return
        room = max(0, self._config.queue_size - len(self._queue))
        accepted = min(room, count)
        self._queue.extend(events[:accepted])
        if accepted < count:
            self._dropped_queue_full += count - accepted
            if not self._overflow_logged:
                self._overflow_logged = True
                log.warning(
                    "emit: queue full (%d events), dropping anomaly events; see stats()",
                    self._config.queue_size,
                )
        else:
            self._overflow_logged = False
        if accepted:
            self._wakeup.set()

    def stats(self) -> EmitStats:
        """A snapshot of the counters."""
        return EmitStats(
            state=self._state,
            queued=len(self._queue),
            sent=self._sent,
            retries=self._retries,
            rejected=self._rejected,
            dropped_queue_full=self._dropped_queue_full,
            dropped_shutdown=self._dropped_shutdown,
            failed_permanent=self._failed_permanent,
            failed_retries_exhausted=self._failed_exhausted,
            last_error=self._last_error,
        )

    # -- sender -----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            if not self._queue:
                if self._closing.is_set():
                    return
                continue
            if loop.time() >= self._shutdown_deadline:
                return  # the rest is counted as dropped by shutdown
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_max))]
            self._in_flight = len(batch)
            try:
                await self._export(batch)
            except Exception as exc:  # a bug must not stop the sender: count it and go on
                log.exception("emit: unexpected error exporting %d events", len(batch))
                self._failed_permanent += len(batch)
                self._last_error = f"internal error: {exc!r}"
            finally:
                self._in_flight = 0

    @property
    def _batch_max(self) -> int:
        return self._config.batch.max_size

    async def _wait_for_batch(self) -> None:
        """Return when a full batch is queued, the batch interval has passed, or on shutdown."""
        while not self._queue and not self._closing.is_set():
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        flush_at = loop.time() + self._config.batch.interval
        while len(self._queue) < self._batch_max and not self._closing.is_set():
            remaining = flush_at - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _export(self, batch: list[AnomalyEvent | IncidentEvent]) -> None:
        anomalies = [e for e in batch if isinstance(e, AnomalyEvent)]
        incidents = [e for e in batch if isinstance(e, IncidentEvent)]
        if self._console is not None:
            self._console.write(anomalies)
            self._write_incidents(incidents)
            self._sent += len(batch)
            return
        batch_deadline = asyncio.get_running_loop().time() + self._config.retry.max_elapsed_time
        for signal in self._signals:
            for request in self._encode(signal, anomalies, incidents):
                items = count_items(request)
                if items:
                    await self._deliver(request, items, batch_deadline)

    def _encode(
        self, signal: Signal, batch: list[AnomalyEvent], incidents: list[IncidentEvent]
    ) -> list[ExportRequest]:
        score = self._config.error_score
        out: list[ExportRequest] = []
        if signal is Signal.LOGS:
            both = len(self._signals) == 2
            if batch:
                out.append(events_to_logs_request(batch, error_score=score, with_span_context=both))
            if incidents:
                out.append(
                    incidents_to_logs_request(incidents, error_score=score, with_span_context=both)
                )
            return out
        if batch:
            out.append(events_to_spans_request(batch, error_score=score))
        if incidents:
            out.append(incidents_to_spans_request(incidents, error_score=score))
        return out

    def _write_incidents(self, incidents: list[IncidentEvent]) -> None:
        shown = [
            e for e in incidents if e.kind in (IncidentEventKind.OPENED, IncidentEventKind.RESOLVED)
        ]
        if shown and self._console is not None:
            self._console.write_lines(
                [f"via.incident id={e.incident.id} {incident_story(e.incident)}" for e in shown]
            )

    async def _deliver(self, request: ExportRequest, items: int, batch_deadline: float) -> None:
        """Send one request, retrying retryable failures until it succeeds or the deadline passes."""
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            remaining = self._deadline(batch_deadline) - loop.time()
            if remaining <= 0:
                self._give_up(items, "deadline passed", permanent=False)
                return
            try:
                result = await self._transport.send(request, min(self._config.timeout, remaining))
            except ExportError as exc:
                self._last_error = str(exc)
                if not exc.retryable:
                    self._give_up(items, str(exc), permanent=True)
                    return
                delay = self._retry_delay(exc, attempt)
                if delay is None or not await self._sleep_within(delay, batch_deadline):
                    self._give_up(items, str(exc), permanent=False)
                    return
                attempt += 1
                self._retries += 1
                continue
            self._delivered(items, result.rejected, result.message)
            return

    def _retry_delay(self, exc: ExportError, attempt: int) -> float | None:
        if not self._config.retry.enabled:
            return None
        if self._state is not EmitterState.RETRYING:
            log.warning("emit: export failed (%s); retrying", exc)
        self._state = EmitterState.RETRYING
        if exc.retry_after is not None:
            return exc.retry_after
        return backoff_delay(attempt, self._config.retry, self._rng)

    def _deadline(self, batch_deadline: float) -> float:
        return min(batch_deadline, self._shutdown_deadline)

    async def _sleep_within(self, delay: float, batch_deadline: float) -> bool:
        """Sleep `delay` seconds; False, without sleeping on, once the wake-up would miss the deadline.

        Shutdown wakes the sleeper so that its (earlier) deadline is checked at once.
        """
        loop = asyncio.get_running_loop()
        wake_at = loop.time() + delay
        while True:
            if wake_at > self._deadline(batch_deadline):
                return False
            remaining = wake_at - loop.time()
            if remaining <= 0:
                return True
            if self._closing.is_set():
                await asyncio.sleep(remaining)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), remaining)

    def _delivered(self, items: int, rejected: int, message: str) -> None:
        rejected = min(max(rejected, 0), items)
        self._sent += items - rejected
        self._rejected += rejected
        if rejected:
            self._last_error = f"downstream rejected {rejected} of {items} items: {message}"
            log.warning("emit: %s", self._last_error)
        if self._state is not EmitterState.OK:
            log.info("emit: export succeeded again")
        self._state = EmitterState.OK

    def _give_up(self, items: int, reason: str, *, permanent: bool) -> None:
        if permanent:
            self._failed_permanent += items
        else:
            self._failed_exhausted += items
        self._state = EmitterState.FAILING
        kind = "permanent error" if permanent else "retries exhausted"
        log.warning("emit: %d items not delivered (%s): %s", items, kind, reason)


def _signals(signals: str) -> tuple[Signal, ...]:
    if signals == "both":
        return (Signal.LOGS, Signal.SPANS)
    return (Signal(signals),)
