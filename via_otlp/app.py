"""Builds the stages from the configuration, and starts and stops them in order.

Start: restore state → consumer → gRPC and HTTP intake → health SERVING.
Stop (SIGTERM/SIGINT): health NOT_SERVING → intake stops → queue drains → state saved.
A start that fails half-way stops what it had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from via_otlp import __version__
from via_otlp.config import Config
from via_otlp.configload import to_plain
from via_otlp.control.server import ControlServer
from via_otlp.correlate.service import Correlation
from via_otlp.detect.engine import Engine
from via_otlp.emit import Emitter
from via_otlp.model import AnomalyEvent, LogBatch
from via_otlp.patterns import PatternStage
from via_otlp.receive.grpc_server import GrpcServer
from via_otlp.receive.http_server import HttpServer
from via_otlp.receive.intake import Intake, IntakeStats, RecordQueue
from via_otlp.receive.normalise import NormaliseOptions, Normaliser
from via_otlp.registry import Registry
from via_otlp.registry.schemas import SchemaTracker
from via_otlp.state import STATE_FILE, load_state, save_state
from via_otlp.telemetry.timing import Stage

log = logging.getLogger("via_otlp")

MAX_RHYTHMS_SHOWN = 10_000
# Buckets the wall-clock tick closes at most per call, so that catching up after a long silence
# does not hold the event loop (an hour of 10 s buckets; ticks come every second or faster).
MAX_BUCKETS_PER_TICK = 360
ConsumeHook = Callable[[LogBatch], Awaitable[None]]


def build_normaliser(config: Config) -> Normaliser:
    return Normaliser(NormaliseOptions.from_config(config.receive))


EventSink = Callable[[list[AnomalyEvent]], None]


class Pipeline:
    """Everything from a decoded request to anomaly events, without sockets.

    `serve` and `replay` share it: intake (normalise, template, DROP patches), then on each
    batch taken off the queue schema sampling and the detection engine; events go through the
    registry (recorded; MUTE and THRESHOLD patches decide whether they are emitted) to `sink`.
    Schema inference (`schemas`) is pure and runs with or without a registry; its windows close
    on the engine's watermark: event time in a replay, the wall clock too in `serve`. The
    registry only persists and restores the tracker's state.
    """

    def __init__(
        self, config: Config, registry: Registry | None = None, sink: EventSink | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.sink = sink
        self.patterns = PatternStage(config.patterns)
        self.engine = Engine(config.detect)
        self.schemas = SchemaTracker(config.registry.schema)
        if registry is not None:
            registry.schema_tracker = self.schemas
        self.stats = IntakeStats()
        self.queue = RecordQueue(config.receive.queue_max_records, self.stats.latency)
        drop = registry.filter_batch if registry is not None else None
        self.intake = Intake(
            build_normaliser(config), self.patterns, self.queue, self.stats, drop_filter=drop
        )
        self.events_emitted = 0
        self.events_suppressed = 0
        # Emitted events by (kind, state), for the self-metrics.
        self.events_by_kind: Counter[tuple[str, str]] = Counter()

    def consume(self, batch: LogBatch) -> None:
        """Process one batch taken off the queue."""
        self.stats.records_consumed += len(batch)
        with self.stats.latency.time(Stage.DETECT):
            self.schemas.observe(batch)
            events = self.engine.observe(batch) + self._check_schemas()
        self.dispatch(events)

    def tick(self, now_ns: int) -> None:
        """Wall clock: let silence close buckets, and judge schemas."""
        events = self.engine.tick(now_ns, max_buckets=MAX_BUCKETS_PER_TICK)
        self.dispatch(events + self._check_schemas())

    def _check_schemas(self) -> list[AnomalyEvent]:
        watermark = self.engine.watermark_ns
        return [] if watermark is None else self.schemas.check(watermark)

    def finish(self) -> None:
        """End of a replay: close the buckets the input reached."""
        self.dispatch(self.engine.flush())

    def dispatch(self, events: list[AnomalyEvent]) -> None:
        if not events:
            return
        with self.stats.latency.time(Stage.DISPATCH):
            if self.registry is not None:
                admitted = [e for e in events if self.registry.admit_anomaly(e)]
            else:
                admitted = events
            self.events_suppressed += len(events) - len(admitted)
            self.events_emitted += len(admitted)
            self.events_by_kind.update((e.kind.value, e.state.value) for e in admitted)
            if admitted and self.sink is not None:
                self.sink(admitted)

    def rhythm_counts(self, limit: int = MAX_RHYTHMS_SHOWN) -> dict[str, int]:
        """Records seen per rhythm hash, most first: the engine's profiles, so bounded as they are."""
        totals = sorted(
            ((p.total_count, p.rhythm_hash) for p in self.engine.profiles()), reverse=True
        )
        return {h: n for n, h in totals[:limit]}

    @property
    def rhythm_hashes(self) -> int:
        """Rhythm hashes with a profile now."""
        return self.engine.stats().profiles

    def snapshot(self) -> dict[str, Any]:
        """Versioned state of every learning part (patterns, engine, schemas)."""
        return {"patterns": self.patterns.snapshot(), "engine": self.engine.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        if "patterns" in state:
            self.patterns.restore(state["patterns"])
        if "engine" in state:
            self.engine.restore(state["engine"])


class App:
    """The running service."""

    def __init__(self, config: Config, consume_hook: ConsumeHook | None = None) -> None:
        self.config = config
        self.registry = (
            Registry(config.registry, config.state.data_dir) if config.registry.enabled else None
        )
        self.emitter = Emitter(config.emit)
        self.correlation = (
            Correlation(
                config.correlate,
                config.state.data_dir,
                registry=self.registry,
                sink=self.emitter,
                clock=time.time_ns,
            )
            if config.correlate.enabled
            else None
        )
        sink = self.emitter.submit if self.correlation is None else self._emit_and_correlate
        self.pipeline = Pipeline(config, self.registry, sink)
        # Test seam: awaited before each batch is consumed (e.g. to make the consumer slow).
        self._consume_hook = consume_hook
        self.grpc = GrpcServer(config.receive.grpc, self.pipeline.intake)
        self.http = HttpServer(
            config.receive,
            self.pipeline.intake,
            self.status,
            self.prometheus_metrics if config.telemetry.metrics.prometheus else None,
        )
        self.control = ControlServer(config.control, self)
        self.state = "new"
        self.started_at = 0.0
        # State is saved only once it was read: a start that fails to read it keeps the file.
        self._restored = False
        self._correlation_start: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._state_path = Path(config.state.data_dir) / STATE_FILE

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.state = "starting"
        try:
            self._restore()
            if self.registry is not None:
                await self.registry.start()
            await self.emitter.start()
            if self.correlation is not None:
                # Opening the vector store costs half a second (qdrant-client's imports); events
                # queue in the stage meanwhile, so intake need not wait for it.
                self._correlation_start = asyncio.create_task(
                    self._start_correlation(self.correlation), name="via-correlate-start"
                )
            self._tasks.append(asyncio.create_task(self._consume_loop(), name="via-consumer"))
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="via-ticker"))
            self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="via-snapshot"))
            if self.config.receive.grpc.enabled:
                await self.grpc.start()
            if self.config.receive.http.enabled:
                await self.http.start()
            await self.control.start()
        except BaseException:
            await self.shutdown()
            raise
        await self.grpc.set_serving(True) if self.config.receive.grpc.enabled else None
        self.http.serving = True
        self.state = "serving"
        log.info(
            "via-otlp %s serving: OTLP/gRPC %s, OTLP/HTTP %s (%.2fs to start)",
            __version__,
            self._where(
                self.config.receive.grpc.enabled, self.config.receive.grpc.endpoint, self.grpc.port
            ),
            self._where(
                self.config.receive.http.enabled, self.config.receive.http.endpoint, self.http.port
            ),
            time.monotonic() - self.started_at,
        )

    @staticmethod
    def _where(enabled: bool, endpoint: str, port: int) -> str:
        return f"{endpoint.rpartition(':')[0]}:{port}" if enabled else "off"

    async def shutdown(self, grace: float = 5.0) -> None:
        """Drain and stop within about `grace` seconds per stage; idempotent, and safe when
        `start` never ran or failed half-way. State is saved as soon as the queue is drained,
        before the flushes that can wait on the network."""
        if self.state in ("stopped", "new"):
            self.state = "stopped"
            return
        self.state = "draining"
        self.http.serving = False
        with contextlib.suppress(Exception):
            await self.grpc.set_serving(False)
        await self.control.stop()
        await asyncio.gather(self.grpc.stop(grace), self.http.stop())
        if self._tasks:
            try:
                await asyncio.wait_for(self.pipeline.queue.join(), grace)
            except TimeoutError:
                log.error(
                    "queue did not drain within %.1fs: %d records not processed",
                    grace,
                    self.pipeline.queue.depth,
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._save_if_restored()
        if self._correlation_start is not None:
            with contextlib.suppress(Exception):
                await self._correlation_start
        if self.correlation is not None:
            await self.correlation.shutdown(grace)
        await self.emitter.shutdown(grace)
        if self.registry is not None:
            await self.registry.shutdown()
        if self.correlation is not None:
            self._save_if_restored()  # the correlator may have closed incidents while flushing
        self.state = "stopped"

    @staticmethod
    async def _start_correlation(correlation: Correlation) -> None:
        try:
            await correlation.start()
        except Exception as exc:
            log.error(
                "correlate could not start, anomalies are not grouped into incidents: %s", exc
            )

    def _save_if_restored(self) -> None:
        if not self._restored:
            return
        try:
            self._save()
        except OSError as exc:
            log.error("cannot save state to %s: %s", self._state_path, exc)

    # --- work -----------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        queue = self.pipeline.queue
        while True:
            batch = await queue.get()
            try:
                if self._consume_hook is not None:
                    await self._consume_hook(batch)
                self.pipeline.consume(batch)
            except Exception:
                log.exception("failed to process a batch of %d records", len(batch))
            finally:
                queue.done(batch)

    async def _tick_loop(self) -> None:
        interval = min(1.0, self.config.detect.bucket / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.pipeline.tick(time.time_ns())
            except Exception:
                log.exception("the wall-clock tick failed")

    async def _snapshot_loop(self) -> None:
        """Save the state on an interval; the snapshot is taken on the loop (consistent), the
        serialisation and the fsync happen in a thread (a large state takes a second)."""
        while True:
            await asyncio.sleep(self.config.state.snapshot_interval)
            try:
                await asyncio.to_thread(save_state, self._state_path, self._parts())
            except Exception:
                log.exception("cannot save state to %s", self._state_path)

    def _restore(self) -> None:
        state = load_state(self._state_path)
        if state is not None:
            self.pipeline.restore(state)
            if self.correlation is not None and "correlate" in state:
                self.correlation.restore(state["correlate"])
            log.info("restored state from %s", self._state_path)
        self._restored = True

    def _parts(self) -> dict[str, Any]:
        parts = self.pipeline.snapshot()
        if self.correlation is not None:
            parts["correlate"] = self.correlation.snapshot()
        return parts

    def _save(self) -> None:
        save_state(self._state_path, self._parts())

    def _emit_and_correlate(self, events: list[AnomalyEvent]) -> None:
        """The pipeline's sink when correlate is on: admitted events go out and to incidents."""
        self.emitter.submit(events)
        if self.correlation is not None:
            self.correlation.submit(events)

    # --- inspection -----------------------------------------------------------------------

    def prometheus_metrics(self) -> tuple[bytes, str]:
        """`GET /metrics`: the self-metrics of one status snapshot, as Prometheus text."""
        from via_otlp.telemetry import prometheus

        return prometheus.render(self.status), prometheus.CONTENT_TYPE

    def status(self, detail: frozenset[str] = frozenset()) -> dict[str, Any]:
        """What `/status` shows: version, state, queue and counters (`detail`: extra sections)."""
        p = self.pipeline
        out: dict[str, Any] = {
            "version": __version__,
            "state": self.state,
            "uptime_seconds": round(time.monotonic() - self.started_at, 3)
            if self.started_at
            else 0.0,
            "queue": {
                "depth": p.queue.depth,
                "capacity": p.queue.max_records,
                "body_bytes": p.queue.body_bytes,
            },
            "intake": p.stats.as_dict(),
            "rhythm_hashes": p.rhythm_hashes,
            "patterns": to_plain(p.patterns.stats()),
            "detect": to_plain(p.engine.stats()),
            "events": {
                "emitted": p.events_emitted,
                "suppressed": p.events_suppressed,
                "by_kind": {f"{k}/{s}": n for (k, s), n in sorted(p.events_by_kind.items())},
            },
            "latency": p.stats.latency.snapshot(),
            "emit": to_plain(self.emitter.stats()),
            "registry": to_plain(self.registry.status())
            if self.registry is not None
            else {"state": "disabled"},
            "correlate": to_plain(self.correlation.stats())
            if self.correlation is not None
            else {"state": "disabled"},
        }
        if "rhythms" in detail:
            out["rhythm_counts"] = p.rhythm_counts()
        return out


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT, then drain and exit 0."""
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    await stop.wait()
    log.info("stopping: draining the queue and saving state")
    await app.shutdown()
    log.info("stopped")
    return 0
