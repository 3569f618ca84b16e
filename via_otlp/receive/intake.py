"""The one path every transport shares: request → LogBatch → templates → bounded queue.

gRPC, OTLP/HTTP, NDJSON and `replay` all hand their decoded records to `Intake.submit`, so
counting, flow control and patch filtering behave the same whatever the transport.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.model import LogBatch
from via_otlp.patterns import PatternStage
from via_otlp.receive.normalise import IntakeCounts, Normaliser
from via_otlp.receive.otlp_codec import Encoding, Repairs, decode
from via_otlp.telemetry.timing import Stage, StageTimings


class Transport(enum.StrEnum):
    """Where a request came in."""

    GRPC = "grpc"
    HTTP = "http"
    NDJSON = "ndjson"
    REPLAY = "replay"


class Outcome(enum.StrEnum):
    """How a request was answered; each has a counter per transport."""

    ACCEPTED = "accepted"
    INVALID = "invalid"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_LARGE = "too_large"
    QUEUE_FULL = "queue_full"
    UNAVAILABLE = "unavailable"
    UNAUTHENTICATED = "unauthenticated"  # no or a wrong bearer token (receive.auth)
    TIMEOUT = "timeout"  # the body stopped arriving (HTTP 408)
    CLIENT_GONE = "client_gone"  # the client closed the connection before the answer


class QueueFullError(Exception):
    """The queue cannot take the batch now: the sender should retry after `retry_after` seconds.

    `records`: how many log records the refused request carried (0 when not known)."""

    def __init__(self, retry_after: float, records: int = 0) -> None:
        super().__init__(f"intake queue is full, retry in {retry_after:.1f}s")
        self.retry_after = retry_after
        self.records = records


class RecordQueue:
    """A FIFO of LogBatches bounded by the number of records it holds, not batches.

    `try_put` never blocks (network intake answers "retry later" instead); `wait_for_room` lets
    streamed NDJSON and replay slow their sender down instead.
    """

    def __init__(self, max_records: int, timings: StageTimings | None = None) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        self.max_records = max_records
        # (batch, body bytes, time it was put) — the time feeds the QUEUE stage histogram.
        self._items: deque[tuple[LogBatch, int, float]] = deque()
        self._records = 0
        self._in_flight = 0
        self._bytes = 0
        self._in_flight_bytes = 0
        self._timings = timings
        self._changed = asyncio.Event()

    @property
    def depth(self) -> int:
        """Records queued or being consumed."""
        return self._records + self._in_flight

    @property
    def body_bytes(self) -> int:
        """Characters of the log bodies queued or being consumed (about their bytes)."""
        return self._bytes + self._in_flight_bytes

    def has_room(self, records: int) -> bool:
        # A batch larger than the whole queue is still admitted into an empty queue, never refused forever.
        return self.depth == 0 or self.depth + records <= self.max_records

    def try_put(self, batch: LogBatch) -> bool:
        if not self.has_room(len(batch)):
            return False
        size = sum(map(len, batch.body))
        self._items.append((batch, size, time.perf_counter()))
        self._records += len(batch)
        self._bytes += size
        self._notify()
        return True

    async def wait_for_room(self, records: int) -> None:
        """Wait until a batch of `records` records would be admitted."""
        while not self.has_room(records):
            await self._wait_change()

    async def get(self) -> LogBatch:
        """The next batch; it counts as in flight until `done` is called for it."""
        while not self._items:
            await self._wait_change()
        batch, size, put_at = self._items.popleft()
        self._records -= len(batch)
        self._in_flight += len(batch)
        self._bytes -= size
        self._in_flight_bytes += size
        if self._timings is not None:
            self._timings.observe(Stage.QUEUE, time.perf_counter() - put_at)
        return batch

    def done(self, batch: LogBatch) -> None:
        self._in_flight -= len(batch)
        self._in_flight_bytes -= sum(map(len, batch.body))
        self._notify()

    async def join(self) -> None:
        """Wait until every queued record has been consumed."""
        while self.depth:
            await self._wait_change()

    def _notify(self) -> None:
        self._changed.set()

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()


@dataclass
class IntakeStats:
    """Counters for the status page: requests by transport and outcome, records by fate.

    `records` counts the log records of those requests by transport and outcome (0 where a
    request could not be decoded); `latency` times each stage per batch.
    """

    requests: Counter[tuple[Transport, Outcome]] = field(default_factory=Counter)
    records: Counter[tuple[Transport, Outcome]] = field(default_factory=Counter)
    latency: StageTimings = field(default_factory=StageTimings)
    records_accepted: int = 0
    records_dropped_by_patch: int = 0
    records_consumed: int = 0
    invalid_utf8_requests: int = 0
    deep_values_cut_requests: int = 0
    normalised: IntakeCounts = field(default_factory=IntakeCounts)

    def count(self, transport: Transport, outcome: Outcome, records: int = 0) -> None:
        """One request answered with `outcome`, carrying `records` log records."""
        self.requests[(transport, outcome)] += 1
        if records:
            self.records[(transport, outcome)] += records

    def count_repairs(self, repairs: Repairs) -> None:
        """Count a request that decoding repaired (invalid UTF-8, values nested too deep)."""
        self.invalid_utf8_requests += bool(repairs & Repairs.INVALID_UTF8)
        self.deep_values_cut_requests += bool(repairs & Repairs.DEEP_VALUE)

    def as_dict(self) -> dict[str, object]:
        by_transport: dict[str, dict[str, int]] = {}
        for (transport, outcome), n in sorted(self.requests.items()):
            by_transport.setdefault(transport.value, {})[outcome.value] = n
        records: dict[str, dict[str, int]] = {}
        for (transport, outcome), n in sorted(self.records.items()):
            records.setdefault(transport.value, {})[outcome.value] = n
        return {
            "requests": by_transport,
            "records": records,
            "records_accepted": self.records_accepted,
            "records_dropped_by_patch": self.records_dropped_by_patch,
            "records_consumed": self.records_consumed,
            "invalid_utf8_requests": self.invalid_utf8_requests,
            "deep_values_cut_requests": self.deep_values_cut_requests,
            **{f"records_{k}": v for k, v in asdict(self.normalised).items() if k != "records"},
        }


BatchFilter = Callable[[LogBatch], LogBatch]
"""Returns the batch without the records that DROP patches match (or the batch itself)."""


class IntakeFront(Protocol):
    """What the servers hand requests to: the in-process `Intake` or the shards' coordinator."""

    stats: IntakeStats

    async def submit_payload(
        self,
        payload: bytes,
        encoding: Encoding,
        *,
        wait: bool = False,
        room_timeout: float | None = None,
    ) -> int: ...


class Intake:
    """Normalise, template, filter and enqueue; raise `QueueFullError` when there is no room."""

    def __init__(
        self,
        normaliser: Normaliser,
        patterns: PatternStage,
        queue: RecordQueue,
        stats: IntakeStats | None = None,
        drop_filter: BatchFilter | None = None,
        retry_after: float = 1.0,
        max_batch_records: int = 0,
        block_filter: BatchFilter | None = None,
    ) -> None:
        self.normaliser = normaliser
        self.patterns = patterns
        self.queue = queue
        self.stats = stats or IntakeStats()
        self.drop_filter = drop_filter
        self.block_filter = block_filter  # BLOCK patches: before templating
        self.retry_after = retry_after
        self.max_batch_records = max_batch_records

    async def submit_payload(
        self,
        payload: bytes,
        encoding: Encoding,
        *,
        wait: bool = False,
        room_timeout: float | None = None,
    ) -> int:
        """Decode a serialised request and submit it (in-process mode: on the caller's loop).

        Raises `InputError` for bytes that are not a request and `QueueFullError` when there is
        no room (unless `wait`, which waits for it instead: `TimeoutError` past `room_timeout`,
        with none of the request taken).
        """
        message, repairs = decode(payload, encoding)
        self.stats.count_repairs(repairs)
        n = sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)
        if n and not wait and not self.queue.has_room(n):
            raise QueueFullError(self.retry_after, n)
        if n and wait:  # room for all of it first, so a timeout leaves none of it taken
            await asyncio.wait_for(self.queue.wait_for_room(n), room_timeout)
        now = time.time_ns()
        accepted = 0
        exact = encoding is Encoding.PROTOBUF and not repairs  # `message` is `payload` parsed
        cuts = self.normaliser.batches(
            message, now, payload, self.max_batch_records, parsed_from_raw=exact
        )
        for batch, counts in cuts:
            self.stats.normalised.add(counts)
            accepted += await self.submit(batch) if wait else self.submit_nowait(batch)
        return accepted

    def prepare_request(
        self, request: ExportLogsServiceRequest, now_ns: int | None = None
    ) -> LogBatch:
        """Normalise a decoded request into a batch (not yet templated or queued)."""
        with self.stats.latency.time(Stage.NORMALISE):
            batch, counts = self.normaliser.from_request(request, now_ns or time.time_ns())
        self.stats.normalised.add(counts)
        return batch

    def prepare_json(self, text: str | bytes, now_ns: int | None = None) -> LogBatch:
        """Normalise one OTLP/JSON request straight from its text (no protobuf message):
        the batch `prepare_request(decode_json(text))` gives, about ten times faster."""
        from via_otlp.receive.otlp_json import batch_from_json

        with self.stats.latency.time(Stage.NORMALISE):
            batch, counts = batch_from_json(text, self.normaliser, now_ns or time.time_ns())
        self.stats.normalised.add(counts)
        return batch

    def process(self, batch: LogBatch) -> LogBatch:
        """Remove what BLOCK patches match, template the rest, remove what DROP patches match
        (both counted as dropped by patches)."""
        with self.stats.latency.time(Stage.PATTERNS):
            if self.block_filter is not None:
                before = len(batch)
                batch = self.block_filter(batch)
                self.stats.records_dropped_by_patch += before - len(batch)
            self.patterns.apply(batch)
            if self.drop_filter is not None:
                before = len(batch)
                batch = self.drop_filter(batch)
                self.stats.records_dropped_by_patch += before - len(batch)
        return batch

    def submit_request_nowait(self, request: ExportLogsServiceRequest) -> int:
        """Normalise, template and enqueue a request, or raise `QueueFullError` before any work."""
        n = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        if n and not self.queue.has_room(n):
            raise QueueFullError(self.retry_after, n)
        return self.submit_nowait(self.prepare_request(request))

    def submit_nowait(self, batch: LogBatch) -> int:
        """Template and enqueue a batch now, or raise `QueueFullError`; returns records accepted."""
        n = len(batch)
        if not n:
            return 0
        if not self.queue.has_room(n):
            raise QueueFullError(self.retry_after, n)
        batch = self.process(batch)
        if len(batch):
            self.queue.try_put(batch)
        self.stats.records_accepted += n
        return n

    async def submit(self, batch: LogBatch) -> int:
        """Template and enqueue a batch, waiting for room (streams and replay)."""
        n = len(batch)
        if not n:
            return 0
        await self.queue.wait_for_room(n)
        return self.submit_nowait(batch)
