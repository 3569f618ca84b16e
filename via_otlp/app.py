"""Builds the stages from the configuration, and starts and stops them in order.

Start: restore state → consumer → gRPC and HTTP intake → health SERVING.
Stop (SIGTERM/SIGINT): health NOT_SERVING → intake stops → queue drains → state saved.
A start that fails half-way stops what it had started.

The embedded PostgreSQL's start begins before this module is imported: `via-otlp serve`
spawns its `initdb` (most of a first start), or its server, right after reading the
configuration (`cli.begin_embedded`), and hands it over to `serve`. `serve` then starts the
shards and the registry's start (`EarlyShards`): the shards restore their snapshots, and the
registry waits for its server and migrates, while this process imports and builds the servers
(gRPC, aiohttp, the control API, the emitter: half a second of imports the shards never use).
So this module imports only what the shards and the registry need at its top; the servers'
modules are imported where the `App` is built. SERVING still waits for both, as on any start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from via_otlp import __version__, recovery
from via_otlp.config import Config
from via_otlp.lifecycle import AppState, raise_nofile_limit, stop_tasks
from via_otlp.model import AnomalyEvent, LogBatch
from via_otlp.pipeline import MAX_RHYTHMS_SHOWN, EventGate, Pipeline
from via_otlp.security.files import private_dir, restrict_new_files
from via_otlp.shard.pool import ShardPool
from via_otlp.shard.view import schema_row_from_plain
from via_otlp.state import STATE_FILE, load_state, save_state

if TYPE_CHECKING:
    from via_otlp.correlate.service import Correlation
    from via_otlp.receive.intake import IntakeFront
    from via_otlp.registry import Registry
    from via_otlp.registry.embedded import EmbeddedPostgres
    from via_otlp.status import ServiceStatus

log = logging.getLogger("via_otlp")

# The serving process's own state when the work runs in shards (each shard saves its own).
COORDINATOR_FILE = "coordinator.json"
# The shards' snapshots in `state.data_dir`/shards (`shard.worker.snapshot_path`).
SNAPSHOT_GLOB = "shard-*-of-*.snap"
# The file in the data directory that names this instance in the registry's `source_state`.
INSTANCE_FILE = "instance-id"
# How long the start may spend reconciling the registry with the restored state.
RECONCILE_TIMEOUT = 30.0
# How often the event loop's lateness is measured.
LOOP_WATCH = 0.05
# How long `/status` waits for the shards' counters before it shows the last ones.
STATUS_WAIT = 0.5
ConsumeHook = Callable[[LogBatch], Awaitable[None]]


# Turns of the event loop that `EarlyShards.begin` gives the shards' start: enough for it to
# open each shard's socket and write its INIT (four turns) before the servers' imports hold
# the loop.
INIT_TURNS = 8


def new_registry(config: Config, embedded: EmbeddedPostgres | None = None) -> Registry | None:
    """The registry the configuration asks for (not started), or None; `embedded`: its
    embedded server, begun already (`serve`)."""
    if not config.registry.enabled:
        return None
    from via_otlp.registry import Registry

    return Registry(
        config.registry,
        config.state.data_dir,
        source_order=config.receive.source_attributes,
        embedded=embedded,
    )


def new_pool(config: Config, gate: EventGate, registry: Registry | None) -> ShardPool:
    """The shards of a service (not started)."""
    return ShardPool(
        config,
        gate,
        patches=(lambda: registry.patches) if registry is not None else None,
        store=registry,
        instance="",  # named at start, once the data directory is set up
    )


def has_shard_state(config: Config) -> bool:
    """Whether the shards have state to restore (snapshots, or older state to take theirs
    from). Only then does `serve` send them their INIT ahead of the servers' imports: with
    nothing to restore they would only take CPU from those (a start with the registry: 0.2 s
    later). They are forked ahead either way (before the registry's threads)."""
    data_dir = Path(config.state.data_dir)
    return (data_dir / STATE_FILE).exists() or any((data_dir / "shards").glob(SNAPSHOT_GLOB))


class EarlyShards:
    """The shards and the registry of `serve`, started before the rest of the service is
    built: `begin` forks the shards (this process has no thread yet), sends each its INIT when
    it has state to restore (`restore`), and then begins the registry's start (a thread waits
    for the embedded PostgreSQL, whose initdb or server the command spawned already, then the
    registry migrates), so both go on while the servers' modules are imported. The `App`
    built next takes them over
    (`App(config, early=...)`) and waits for them in `start`, as for those it started itself.
    Their events go through `gate`, whose sink the `App` sets."""

    def __init__(
        self, config: Config, *, restore: bool = True, embedded: EmbeddedPostgres | None = None
    ) -> None:
        self.config = config
        self.restore = restore
        self.registry = new_registry(config, embedded)
        self.gate = EventGate(self.registry, None)
        self.pool = new_pool(config, self.gate, self.registry)
        self.ready: asyncio.Task[list[dict[str, Any]]] | None = None
        self.registry_up: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        data_dir = self.config.state.data_dir
        private_dir(data_dir)  # 0700 before anything is written in it (as `App.start` does)
        self.pool.instance = instance_id(data_dir)
        self.pool.fork()  # before the registry's first thread (forked, a shard imports nothing)
        if self.restore:  # (with nothing to restore, its INIT waits for `App.start`)
            self.ready = asyncio.create_task(self.pool.start(), name="via-shards-start")
        if self.registry is not None:
            self.registry_up = asyncio.create_task(self.registry.start(), name="via-registry-start")
        for _ in range(INIT_TURNS):
            await asyncio.sleep(0)

    async def abandon(self) -> None:
        """Stop the shards and the registry when the service could not be built around them."""
        if self.registry_up is not None and self.registry is not None:
            with contextlib.suppress(BaseException):  # (its thread is not cut short)
                await self.registry_up
            await self.registry.shutdown()
        if self.ready is None:
            await self.pool.kill()  # forked, never sent their INIT: they see the end and exit
            return
        if self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None:
            await self.pool.stop()  # started: each writes its snapshot, as at a shutdown
            return
        self.ready.cancel()  # its own failure path kills the shards
        with contextlib.suppress(BaseException):
            await self.ready


class App:
    """The running service: servers, the work (shards, or a `Pipeline` in process), outputs."""

    def __init__(
        self,
        config: Config,
        consume_hook: ConsumeHook | None = None,
        *,
        early: EarlyShards | None = None,
        began: float = 0.0,
        embedded: EmbeddedPostgres | None = None,
    ) -> None:
        from via_otlp.control.server import ControlServer
        from via_otlp.correlate.service import Correlation
        from via_otlp.emit import Emitter
        from via_otlp.receive.grpc_server import GrpcServer
        from via_otlp.receive.http_server import HttpServer
        from via_otlp.telemetry.otlp import MetricsPusher

        self.config = config
        self.registry = early.registry if early is not None else new_registry(config, embedded)
        self.emitter = Emitter(config.emit)
        self.telemetry = MetricsPusher(config.telemetry.metrics, config.emit, self.status)
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
        # Test seam: awaited before each batch is consumed (e.g. to make the consumer slow);
        # it runs the pipeline in process.
        self._consume_hook = consume_hook
        self.pool: ShardPool | None = None
        self.pipeline: Pipeline | ShardPool
        # The shards' start (`ShardPool.start`), once begun: by `EarlyShards` or by `start`.
        self._shards_ready: asyncio.Task[list[dict[str, Any]]] | None = None
        # The registry's start, once begun by `EarlyShards`.
        self._registry_up: asyncio.Task[None] | None = None
        # (monotonic) when the service began: `serve` counts its start from before the imports
        # and any early shards, on either path; else `start` counts from itself.
        self._began = began
        if early is not None:
            self.gate = early.gate
            self.gate.sink = sink
            self.pipeline = self.pool = early.pool
            self._shards_ready = early.ready
            self._registry_up = early.registry_up
            front: IntakeFront = self.pool
        elif config.pipeline.in_process or consume_hook is not None:
            self.pipeline = Pipeline(config, self.registry, sink)
            front = self.pipeline.intake
        else:
            self.gate = EventGate(self.registry, sink)
            self.pipeline = self.pool = new_pool(config, self.gate, self.registry)
            front = self.pool
        self.grpc = GrpcServer(config.receive.grpc, front, auth=config.receive.auth)
        self.http = HttpServer(
            config.receive,
            front,
            self.status_fresh,
            self.prometheus_metrics if config.telemetry.metrics.prometheus else None,
        )
        self.control = ControlServer(config.control, self)
        self.state = AppState.NEW
        self.started_at = 0.0
        # State is saved only once it was read: a start that fails to read it keeps the file.
        self._restored = False
        self._correlation_start: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        data_dir = Path(config.state.data_dir)
        self._state_path = data_dir / (STATE_FILE if self.pool is None else COORDINATOR_FILE)
        self._legacy_path = data_dir / STATE_FILE
        self.last_snapshot: dict[str, Any] = {}
        self.reconciled: recovery.ReconcileReport | None = None
        self.loop_lag_max = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = self._began or time.monotonic()
        self.state = AppState.STARTING
        shards_ready = self._shards_ready  # begun already by `EarlyShards` (in `serve`)
        try:
            private_dir(self.config.state.data_dir)  # 0700: templates quote log lines
            self._restore()
            if self.pool is not None and shards_ready is None:
                # Shards start (and restore) while the rest of the service starts; forked
                # before the registry starts threads, they need no imports of their own.
                self.pool.instance = instance_id(self.config.state.data_dir)
                self.pool.fork()
                shards_ready = asyncio.create_task(self.pool.start(), name="via-shards-start")
                self._shards_ready = shards_ready
            if self.registry is not None:
                await (self._registry_up or self.registry.start())
            await self.emitter.start()
            await self.telemetry.start()
            if self.correlation is not None:
                # Opening the vector store costs half a second (qdrant-client's imports); events
                # queue in the stage meanwhile, so intake need not wait for it.
                self._correlation_start = asyncio.create_task(
                    self._start_correlation(self.correlation), name="via-correlate-start"
                )
            if self.pool is not None:
                assert shards_ready is not None
                for ready in await shards_ready:
                    log.info("shard %(shard)d: %(profiles)d profiles from %(restored_from)s "
                             "in %(seconds).2fs", ready)  # fmt: skip
                self._tasks.append(
                    asyncio.create_task(self._shard_loop(self.pool), name="via-shards")
                )
                if self.registry is not None and self.config.state.share_interval > 0:
                    self._tasks.append(
                        asyncio.create_task(self._share_loop(self.pool), name="via-share")
                    )
            else:
                self._tasks.append(asyncio.create_task(self._consume_loop(), name="via-consumer"))
            if self.registry is not None:
                await self._reconcile(self.registry)
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="via-ticker"))
            self._tasks.append(asyncio.create_task(self._watch_loop(), name="via-loop-watch"))
            self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="via-snapshot"))
            if self.config.receive.grpc.enabled:
                await self.grpc.start()
            if self.config.receive.http.enabled:
                await self.http.start()
            await self.control.start()
        except BaseException:
            if shards_ready is not None and not shards_ready.done():
                # Something else failed first: the shards' own start is stopped (it kills
                # them), and awaited so that its error is not reported on its own.
                shards_ready.cancel()
            if shards_ready is not None:
                with contextlib.suppress(BaseException):
                    await shards_ready
            await self.shutdown()
            raise
        await self.grpc.set_serving(True) if self.config.receive.grpc.enabled else None
        self.http.serving = True
        self.state = AppState.SERVING
        log.info(
            "via-otlp %s serving: OTLP/gRPC %s, OTLP/HTTP %s, %s (%.2fs to start)",
            __version__,
            self._where(
                self.config.receive.grpc.enabled, self.config.receive.grpc.endpoint, self.grpc.port
            ),
            self._where(
                self.config.receive.http.enabled, self.config.receive.http.endpoint, self.http.port
            ),
            "in process" if self.pool is None else f"{self.pool.shards} shards",
            time.monotonic() - self.started_at,
        )

    async def _reconcile(self, registry: Registry) -> None:
        """Crash safety: the registry's open episodes and recent templates against the state
        just restored (`via_otlp.recovery`). Bounded in time; a registry that cannot answer
        does not stop the start (the next start tries again)."""
        ask: recovery.Ask
        if self.pool is not None:
            ask, gate = self.pool.query, self.gate
        else:
            assert isinstance(self.pipeline, Pipeline)
            ask, gate = recovery.ask_pipeline(self.pipeline), self.pipeline.dispatch
        try:
            self.reconciled = await asyncio.wait_for(
                recovery.reconcile(ask, registry, gate), RECONCILE_TIMEOUT
            )
        except Exception as exc:
            log.warning("cannot reconcile the registry's open episodes with the restored "
                        "state (they stay as they are until the next start): %s", exc)  # fmt: skip

    @staticmethod
    def _where(enabled: bool, endpoint: str, port: int) -> str:
        return f"{endpoint.rpartition(':')[0]}:{port}" if enabled else "off"

    async def shutdown(self, grace: float = 5.0) -> None:
        """Drain and stop within about `grace` seconds per stage; idempotent, and safe when
        `start` never ran or failed half-way. State is saved as soon as the work is drained,
        before the flushes that can wait on the network."""
        if self.state in (AppState.STOPPED, AppState.NEW):
            self.state = AppState.STOPPED
            return
        self.state = AppState.DRAINING
        self.http.serving = False
        with contextlib.suppress(Exception):
            await self.grpc.set_serving(False)
        await self.control.stop()
        await asyncio.gather(self.grpc.stop(grace), self.http.stop())
        if self._tasks:
            try:
                await asyncio.wait_for(self._drained(), grace)
            except TimeoutError:
                log.error(
                    "work did not drain within %.1fs: %d records not processed",
                    grace,
                    self.pipeline.queue_depth,
                )
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self.pool is not None:
            if self.registry is not None and self.config.state.share_interval > 0:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._share(self.pool), grace)
            await self.pool.stop(grace)  # each shard writes its snapshot, then exits
        self._save_if_restored()
        if self._correlation_start is not None:
            with contextlib.suppress(Exception):
                await self._correlation_start
        if self.correlation is not None:
            await self.correlation.shutdown(grace)
        await self.telemetry.shutdown()  # the final totals, before the emitter's channel goes
        await self.emitter.shutdown(grace)
        if self.registry is not None:
            if self._registry_up is not None:  # begun early: its thread is not cut short
                with contextlib.suppress(BaseException):
                    await self._registry_up
            await self.registry.shutdown()
        if self.correlation is not None:
            self._save_if_restored()  # the correlator may have closed incidents while flushing
        self.state = AppState.STOPPED

    async def _drained(self) -> None:
        if self.pool is not None:
            await self.pool.wait_idle()
        else:
            await self.pipeline.queue.join()  # type: ignore[union-attr]

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
        assert isinstance(self.pipeline, Pipeline)
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

    async def _shard_loop(self, pool: ShardPool) -> None:
        """Every second: the shards' counters and memory, patches, schema rows to the registry."""
        while True:
            try:
                if self.registry is not None:
                    pool.push_patches(self.registry.patches)
                await pool.refresh()
                if self.registry is not None:
                    for part in await pool.query("schema_rows"):
                        for row in part:
                            self.registry.add_schema_row(schema_row_from_plain(row))
            except Exception:
                log.exception("cannot refresh the shards' status")
            await asyncio.sleep(1.0)

    async def _share_loop(self, pool: ShardPool) -> None:
        """Copy the learned state of the sources that changed to the registry, on an interval."""
        while True:
            await asyncio.sleep(self.config.state.share_interval)
            try:
                await self._share(pool)
            except Exception as exc:
                log.warning("cannot copy the sources' state to the registry: %s", exc)

    async def _share(self, pool: ShardPool) -> None:
        await pool.share()

    async def _watch_loop(self) -> None:
        """How late the event loop wakes up (shown in /status): the loop that answers health
        checks must never be held by work."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LOOP_WATCH)
            lag = time.perf_counter() - t0 - LOOP_WATCH
            self.loop_lag_max = max(self.loop_lag_max, lag)

    async def _tick_loop(self) -> None:
        interval = min(1.0, self.config.detect.bucket / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                if self.pool is not None:
                    await self.pool.tick(time.time_ns())
                else:
                    self.pipeline.tick(time.time_ns())
            except Exception:
                log.exception("the wall-clock tick failed")

    async def _snapshot_loop(self) -> None:
        """Save the state on an interval. Shards write their own snapshots, in their own
        processes; in process, the snapshot is taken on the loop (consistent), and the
        serialisation and the fsync happen in a thread."""
        while True:
            await asyncio.sleep(self.config.state.snapshot_interval)
            try:
                await self._snapshot()
            except Exception:
                log.exception("cannot save state to %s", self._state_path)

    async def _snapshot(self) -> None:
        if self.pool is not None:
            started = time.monotonic()
            reports = await self.pool.snapshot()
            # Shards write in forked children: `stall_seconds` is how long a shard's work
            # waited for it (the fork), `write_seconds` how long the last finished one took.
            self.last_snapshot = {
                "seconds": round(time.monotonic() - started, 3),
                "bytes": sum(int(r.get("bytes", 0)) for r in reports),
                "stall_seconds": max(
                    (float(r.get("stall_seconds", 0)) for r in reports), default=0
                ),
                "write_seconds": max((float(r.get("seconds", 0)) for r in reports), default=0),
                "shards": reports,
            }
            # Older state goes once every shard has finished a snapshot of its own.
            if all("error" not in r and r.get("bytes") for r in reports):
                self._retire_older_state()
        await asyncio.to_thread(save_state, self._state_path, self._parts())

    def _retire_older_state(self) -> None:
        """Once every shard saved, older state (other shard counts, state.json) has served."""
        assert self.pool is not None
        shards_dir = self._legacy_path.parent / "shards"
        for path in shards_dir.glob(SNAPSHOT_GLOB):
            if not path.name.endswith(f"-of-{self.pool.shards}.snap"):
                path.unlink(missing_ok=True)
        if self._legacy_path.exists():
            self._legacy_path.replace(self._legacy_path.with_suffix(".json.migrated"))

    def _restore(self) -> None:
        order = self.config.receive.source_attributes
        state = load_state(self._state_path, order)
        if state is None and self.pool is not None:
            state = load_state(self._legacy_path, order)  # before shards: its correlate part
        if state is not None:
            if isinstance(self.pipeline, Pipeline):
                self.pipeline.restore(state)
            if self.correlation is not None and "correlate" in state:
                self.correlation.restore(state["correlate"])
            log.info("restored state from %s", self._state_path)
        self._restored = True

    def _parts(self) -> dict[str, Any]:
        parts = self.pipeline.snapshot() if isinstance(self.pipeline, Pipeline) else {}
        if self.correlation is not None:
            parts["correlate"] = self.correlation.snapshot()
        return parts

    def _save(self) -> None:
        save_state(self._state_path, self._parts())

    def _emit_and_correlate(self, events: list[AnomalyEvent]) -> None:
        """The events' sink when correlate is on: admitted events go out and to incidents."""
        self.emitter.submit(events)
        if self.correlation is not None:
            self.correlation.submit(events)

    # --- inspection -----------------------------------------------------------------------

    def prometheus_metrics(self) -> tuple[bytes, str]:
        """`GET /metrics`: the self-metrics of one status snapshot, as Prometheus text."""
        from via_otlp.telemetry import prometheus

        return prometheus.render(self.status), prometheus.CONTENT_TYPE

    async def status_fresh(self, detail: frozenset[str] = frozenset()) -> dict[str, Any]:
        """`/status`: `status` with the shards' counters asked for now (`rhythms`: their
        rhythm hashes by count)."""
        if self.pool is not None and self.state is AppState.SERVING:
            # A shard busy with a large batch answers later, one that died never: the last
            # counters are shown then.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(self.pool.refresh()), STATUS_WAIT)
        out = self.status(detail)
        if "rhythms" in detail:
            out["rhythm_counts"] = await self.pipeline.top_rhythms(MAX_RHYTHMS_SHOWN)
        return out

    def read_status(self) -> ServiceStatus:
        """The counters and states of every part, read now (with shards, their counters as of
        the last refresh): what `/status` and the control API's GetStatus both show."""
        from via_otlp.status import ServiceStatus

        p = self.pipeline
        started = self.started_at
        return ServiceStatus(
            version=__version__,
            state=self.state,
            uptime_seconds=round(time.monotonic() - started, 3) if started else 0.0,
            queue_depth=p.queue_depth,
            queue_capacity=p.queue_capacity,
            body_bytes=p.body_bytes,
            rhythm_hashes=p.rhythm_hashes,
            intake=p.stats,
            patterns=p.pattern_stats(),
            engine=p.engine_stats(),
            events_emitted=p.events_emitted,
            events_suppressed=p.events_suppressed,
            events_by_kind=p.events_by_kind,
            emitter=self.emitter.stats(),
            registry=self.registry.status() if self.registry is not None else None,
            correlation=self.correlation.stats() if self.correlation is not None else None,
            latency=p.latency(),
            http_connections=self.http.stats(),
            loop_lag_max_ms=round(self.loop_lag_max * 1e3, 1),
        )

    def status(self, detail: frozenset[str] = frozenset()) -> dict[str, Any]:
        """What `/status` shows: `read_status` as JSON, and the shards' section (`detail`:
        extra sections)."""
        out = self.read_status().as_dict()
        if self.pool is not None:
            out["shards"] = self._shards_status(self.pool)
        return out

    def _shards_status(self, pool: ShardPool) -> dict[str, Any]:
        return {
            "workers": pool.shards,
            "restarts": sum(s.restarts for s in pool.status()),
            "restart_failures": sum(s.restart_failures for s in pool.status()),
            "down": [s.index for s in pool.status() if s.down],
            "records_lost_in_crashes": pool.lost_records,
            "sources_taken_over": pool.sources_taken_over,
            "sources_forgotten": pool.sources_forgotten,
            "queued_bytes": pool.queued_bytes,
            "rss_bytes": pool.rss_bytes,
            "last_snapshot": self.last_snapshot,
            "each": [
                {"index": s.index, "pid": s.pid, "restarts": s.restarts, "down": s.down,
                 "restart_failures": s.restart_failures,
                 "records_in_flight": s.records_in_flight,
                 "records_consumed": s.records_consumed, "restored_from": s.restored_from,
                 "restore_seconds": s.restore_seconds,
                 "profiles": s.stats.get("detect", {}).get("profiles", 0),
                 "rss_bytes": s.stats.get("rss", 0),
                 "batches_coalesced": s.stats.get("coalesced", 0)}
                for s in pool.status()
            ],
        }  # fmt: skip


def instance_id(data_dir: str | Path) -> str:
    """This instance's name in the registry: the same across restarts on the same data
    directory (a restart must not look like another instance that took its sources over)."""
    path = Path(data_dir) / INSTANCE_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        name = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n", encoding="utf-8")
        return name


async def serve(
    config: Config, began: float | None = None, embedded: EmbeddedPostgres | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then drain and exit 0. The start is counted from `began`
    (monotonic; the command's start, before its imports), else from here. `embedded`: the
    registry's embedded server, its start begun by the command (`cli.begin_embedded`)."""
    began = time.monotonic() if began is None else began
    restrict_new_files()  # state, vector store, logs of the embedded server: 0600 / 0700
    raise_nofile_limit()  # connection limits follow the open-file limit: make it what it may be
    # Handled before anything is forked: a SIGTERM while early shards restore stops them with
    # the rest (once started) instead of leaving them behind as orphans.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    early = None
    if not config.pipeline.in_process:
        # Restoring (if there is state), and the registry starting, while the servers'
        # modules are imported.
        early = EarlyShards(config, restore=has_shard_state(config), embedded=embedded)
        await early.begin()
    try:
        app = App(config, early=early, began=began, embedded=embedded)
    except BaseException:
        if early is not None:
            await early.abandon()
        raise
    await app.start()
    await stop.wait()
    log.info("stopping: draining the queue and saving state")
    await app.shutdown()
    log.info("stopped")
    return 0
