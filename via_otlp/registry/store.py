"""The `Registry`: the registry stage's one face to the pipeline, the app and the control API.

Hot-path calls never wait on PostgreSQL: `filter_batch` (DROP patches), `observe` and
`check_schema` (schema inference), `patches` (THRESHOLD, for detect), and `admit_anomaly`
(records every event, says whether MUTE lets it be emitted). The async reads serve the control API.

With an empty `registry.dsn`, `start` starts an embedded PostgreSQL under the data directory
and `shutdown` stops it. `shutdown` is idempotent and safe without `start`; a `start` that
fails half-way undoes what it started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from via_otlp.backoff import Backoff, backoff_delay
from via_otlp.errors import StartupError, UpstreamError, ViaError
from via_otlp.lifecycle import stop_tasks
from via_otlp.model import (
    DEFAULT_SOURCE_ATTRIBUTES,
    AnomalyEvent,
    AnomalyKind,
    EpisodeState,
    Incident,
    IncidentEvent,
    IncidentLink,
    IncidentState,
    LinkType,
    LogBatch,
    source_from_json,
)
from via_otlp.paging import decode_token, encode_token
from via_otlp.ratelog import RateLimitedLog, quiet_library_logger
from via_otlp.redact import redact_text
from via_otlp.registry._db import as_upstream, init_connection, redact_dsn
from via_otlp.registry.config import MAX_PAGE, RegistryConfig
from via_otlp.registry.embedded import EmbeddedPostgres, embedded_for
from via_otlp.registry.migrate import apply_migrations
from via_otlp.registry.patches import EMPTY_PATCHES, Patch, PatchSet
from via_otlp.registry.patchstore import PatchStore
from via_otlp.registry.records import (
    AnomalyPage,
    AnomalyRecord,
    EvaluationRow,
    IncidentPage,
    KnownTemplate,
    RegistryState,
    RegistryStatus,
    SchemaRow,
    WriterStats,
    event_from_json,
)
from via_otlp.registry.rekey import rekey_sources
from via_otlp.registry.schemas import SchemaRecord, SchemaTracker, schema_from_snapshot
from via_otlp.registry.writer import RegistryWriter

log = logging.getLogger(__name__)

_MAX_HELD_EPISODES = 100_000
# Bounds of what one start reconciles (see `via_otlp.recovery`).
MAX_OPEN_RECONCILED = 10_000
MAX_TEMPLATES_RECOVERED = 10_000
INSTANCE_FILE = "instance-id"
# The kinds of the page tokens of the two registry lists (a token of one is refused by the other).
ANOMALIES, INCIDENTS = "anomalies", "incidents"
# The embedded server is checked this often; a dead one is restarted with this backoff.
SUPERVISE_INTERVAL = 0.5
RESTART_BACKOFF = 0.5
RESTART_MAX_BACKOFF = 10.0
_RESTART = Backoff.capped(RESTART_BACKOFF, RESTART_MAX_BACKOFF)
_ANOMALY_COLUMNS = """episode_id, kind, state, source_key, source_attributes, rhythm_hash,
    template_id, template, severity, started_ns, ended_ns, time_ns, max_score, muted,
    explanation, events"""


class Registry:
    """PostgreSQL-backed memory of VIA: patches, schemas, anomalies and evaluation metrics."""

    def __init__(
        self,
        config: RegistryConfig,
        data_dir: str | Path,
        *,
        embedded_durable: bool = True,
        source_order: Sequence[str] = DEFAULT_SOURCE_ATTRIBUTES,
        embedded: EmbeddedPostgres | None = None,
    ) -> None:
        """`embedded`: the embedded server to use, its start begun already (`serve`)."""
        self.config = config
        self.source_order = tuple(source_order)  # to move rows of older source keys
        self.data_dir = Path(data_dir)
        # Schema inference itself is pure and lives in the pipeline, which hands its tracker
        # over here; the registry restores it at start and saves what changed.
        self.schema_tracker = SchemaTracker(config.schema)
        self._embedded_durable = embedded_durable
        self._embedded: EmbeddedPostgres | None = None
        self._begun_embedded = embedded
        self._pool: asyncpg.Pool | None = None
        self._patch_store: PatchStore | None = None
        self._writer: RegistryWriter | None = None
        self._schema_task: asyncio.Task[None] | None = None
        self._dsn = ""
        self._migrations: tuple[str, ...] = ()
        self._started = False
        self._final_writer_stats: WriterStats | None = None
        self.records_dropped_by_patch = 0
        self.events_muted = 0
        self.events_below_threshold = 0
        self._held_open: dict[str, None] = {}  # episodes whose opening was held back, oldest first
        # Who records the episodes (stable across restarts: kept in the data directory).
        self.instance = ""
        self._supervisor: asyncio.Task[None] | None = None
        self._restarting = False
        self.embedded_restarts = 0
        self.embedded_last_restart_seconds = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (starting the embedded server if no DSN), migrate, load patches and schemas."""
        if self._started or not self.config.enabled:
            return
        self._started = True
        try:
            self.instance = instance_id(self.data_dir)
            self._dsn = await self._start_database()
            self._pool = await self._create_pool()
            async with self._pool.acquire() as conn:
                self._migrations = tuple(await apply_migrations(conn))
                await rekey_sources(conn, self.source_order)
            self._patch_store = PatchStore(
                self._pool,
                self._dsn,
                refresh_interval=self.config.patch_refresh_interval,
                connect_timeout=self.config.connect_timeout,
                retry_max_backoff=self.config.retry_max_backoff,
            )
            await self._patch_store.start()
            await self._restore_schemas()
            self._writer = self._new_writer(self._pool)
            await self._writer.start()
            self._schema_task = asyncio.create_task(
                self._save_schemas_periodically(), name="via-schema-save"
            )
            if self._embedded is not None:
                self._supervisor = asyncio.create_task(
                    self._supervise(self._embedded), name="via-postgres-supervisor"
                )
        except BaseException as exc:
            await self.shutdown()
            if isinstance(exc, ViaError | asyncio.CancelledError):
                raise
            raise StartupError(
                f"registry: cannot start with PostgreSQL at {redact_dsn(self._dsn) or 'embedded'}: {redact_text(str(exc))}",
                hint="check registry.dsn and that the server is up, or set registry.enabled to false",
            ) from exc
        log.info(
            "registry ready (%s)",
            "embedded PostgreSQL" if self._embedded else redact_dsn(self._dsn),
        )

    async def shutdown(self) -> None:
        """Save schemas, write what is buffered (bounded), close, stop the embedded server."""
        tasks = [self._supervisor, self._schema_task]
        self._supervisor = self._schema_task = None
        await stop_tasks(tasks)
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue_schemas(writer)
            await writer.shutdown(self.config.shutdown_timeout)
            self._final_writer_stats = writer.stats()
        store, self._patch_store = self._patch_store, None
        if store is not None:
            await store.shutdown()
        await self._close_pool()
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        self._started = False

    async def _start_database(self) -> str:
        if self.config.dsn:
            return self.config.dsn
        self._embedded, self._begun_embedded = self._begun_embedded, None
        if self._embedded is None:
            self._embedded = embedded_for(
                self.config, self.data_dir, durable=self._embedded_durable
            )
        return await asyncio.to_thread(self._embedded.start)

    async def _create_pool(self) -> asyncpg.Pool:
        # asyncpg logs a traceback each second its pool cannot reconnect (PostgreSQL restarting)
        quiet_library_logger("asyncpg.pool")
        return await asyncpg.create_pool(
            self._dsn,
            min_size=self.config.pool_min_size,
            max_size=self.config.pool_max_size,
            timeout=self.config.connect_timeout,
            command_timeout=self.config.command_timeout,
            init=init_connection,
        )

    async def _supervise(self, embedded: EmbeddedPostgres) -> None:
        """Keep the embedded PostgreSQL running: when its process is gone, start it again,
        retrying with jittered backoff. Writes wait in the buffer meanwhile (`restarting` in
        `/status`) and are flushed when it is back; connections are renewed."""
        failures = RateLimitedLog(log)
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            if embedded.alive():
                continue
            down = time.monotonic()
            self._restarting = True
            log.warning("embedded PostgreSQL is gone (killed or crashed): restarting it")
            attempt = 0
            while True:
                try:
                    await asyncio.to_thread(embedded.restart)
                    break
                except Exception as exc:
                    delay = backoff_delay(attempt, _RESTART)
                    attempt += 1
                    failures.error(
                        "embedded PostgreSQL did not start again (attempt %d, next in %.1fs): %s",
                        attempt, delay, redact_text(str(exc)),
                    )  # fmt: skip
                    await asyncio.sleep(delay)
            self.embedded_restarts += 1
            self.embedded_last_restart_seconds = round(time.monotonic() - down, 3)
            self._restarting = False
            if self._pool is not None:
                await self._pool.expire_connections()  # the old ones point at the dead server
            if self._writer is not None:
                self._writer.wake()
            log.info(
                "embedded PostgreSQL is back after %.2fs (restart %d); buffered writes resume",
                self.embedded_last_restart_seconds, self.embedded_restarts,
            )  # fmt: skip

    def _new_writer(self, pool: asyncpg.Pool) -> RegistryWriter:
        return RegistryWriter(
            pool,
            buffer_max=self.config.buffer_max,
            flush_interval=self.config.flush_interval,
            flush_max_rows=self.config.flush_max_rows,
            retry_max_backoff=self.config.retry_max_backoff,
            acquire_timeout=self.config.connect_timeout,
            instance=self.instance,
        )

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self.config.shutdown_timeout)
        except Exception:  # asyncpg's own advice: terminate when close fails
            pool.terminate()

    # -- hot path (never waits) -----------------------------------------------------------------

    @property
    def patches(self) -> PatchSet:
        """The patches in force (immutable; swapped when they change anywhere)."""
        return self._patch_store.current if self._patch_store is not None else EMPTY_PATCHES

    def filter_batch(self, batch: LogBatch, now_ns: int | None = None) -> LogBatch:
        """`batch` without the records DROP patches select (counted)."""
        kept, dropped = self.patches.apply_drops(batch, now_ns)
        self.records_dropped_by_patch += dropped
        return kept

    def block_batch(self, batch: LogBatch, now_ns: int | None = None) -> LogBatch:
        """`batch`, before templating, without the records BLOCK patches select (counted with
        the dropped ones)."""
        kept, blocked = self.patches.apply_blocks(batch, now_ns)
        self.records_dropped_by_patch += blocked
        return kept

    def is_muted(self, event: AnomalyEvent, now_ns: int | None = None) -> bool:
        """Whether a MUTE patch holds this event back from emission (counted)."""
        muted = self.patches.is_muted(event, now_ns)
        self.events_muted += muted
        return muted

    def observe(self, batch: LogBatch) -> None:
        """Feed the batch's attribute samples to schema inference."""
        self.schema_tracker.observe(batch)

    def check_schema(self, now_ns: int) -> list[AnomalyEvent]:
        """Schema drift events, when a window closed (see `SchemaTracker.check`)."""
        return self.schema_tracker.check(now_ns)

    def admit_anomaly(self, event: AnomalyEvent, now_ns: int | None = None) -> bool:
        """Record the event; True if it is to be emitted.

        An episode's opening is held back when a MUTE patch selects it or a THRESHOLD patch asks
        for a higher score; its resolution follows the fate of its opening, so a backend never
        sees one without the other. Held events are stored with `muted` set.
        """
        if event.state is EpisodeState.UPDATED and event.episode_id in self._held_open:
            held = True  # an escalation of an episode whose opening was held back
        elif event.state is EpisodeState.OPEN or event.episode_id not in self._held_open:
            held = self.is_muted(event, now_ns) or self._below_threshold(event, now_ns)
            if held and event.state is EpisodeState.OPEN:
                self._held_open[event.episode_id] = None
                if len(self._held_open) > _MAX_HELD_EPISODES:
                    self._held_open.pop(next(iter(self._held_open)))
        else:  # the resolution of an episode whose opening was held back
            del self._held_open[event.episode_id]
            held = True
        self.record_anomaly(event, muted=held)
        return not held

    def _below_threshold(self, event: AnomalyEvent, now_ns: int | None) -> bool:
        below = self.patches.is_below_threshold(event, now_ns)
        self.events_below_threshold += below
        return below

    def record_anomaly(self, event: AnomalyEvent, *, muted: bool = False) -> bool:
        """Queue an anomaly event for storage; False when disabled or the buffer is full."""
        return self._writer.add_event(event, muted=muted) if self._writer is not None else False

    def record_incident(self, event: IncidentEvent) -> bool:
        """Queue an incident change for storage; False when disabled or the buffer is full."""
        return self._writer.add_incident(event) if self._writer is not None else False

    def record_evaluation(self, row: EvaluationRow) -> bool:
        """Queue an evaluation result for storage; `await flush()` to see it land."""
        return self._writer.add_evaluation(row) if self._writer is not None else False

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False on timeout or when disabled."""
        return await self._writer.flush(timeout) if self._writer is not None else False

    # -- status -------------------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        writer = self._writer.stats() if self._writer is not None else self._idle_writer()
        listening = self._patch_store is not None and self._patch_store.listening
        if not self.config.enabled or not self._started:
            state = RegistryState.DISABLED
        elif self._restarting:
            state = RegistryState.RESTARTING
        elif writer.state is RegistryState.DEGRADED or not listening:
            state = RegistryState.DEGRADED
        else:
            state = RegistryState.OK
        return RegistryStatus(
            state=state,
            embedded=self._embedded is not None,
            database=redact_dsn(self._dsn),
            migrations_applied=self._migrations,
            writer=writer,
            patches_active=len(self.patches.active()),
            patches_listening=listening,
            records_dropped_by_patch=self.records_dropped_by_patch,
            events_muted=self.events_muted,
            events_below_threshold=self.events_below_threshold,
            embedded_restarts=self.embedded_restarts,
            embedded_last_restart_seconds=self.embedded_last_restart_seconds,
        )

    def _idle_writer(self) -> WriterStats:
        if self._final_writer_stats is not None:
            return self._final_writer_stats
        return WriterStats(RegistryState.DISABLED, 0, 0, 0, 0, "")

    # -- patches ------------------------------------------------------------------------------

    async def list_patches(self, *, include_inactive: bool = True) -> list[Patch]:
        return await self._store().list_patches(include_inactive=include_inactive)

    async def get_patch(self, patch_id: str) -> Patch | None:
        return await self._store().get(patch_id)

    async def upsert_patch(self, patch: Patch) -> Patch:
        """Create or replace a patch; every instance applies it within a second."""
        return await self._store().upsert(patch)

    async def delete_patch(self, patch_id: str) -> bool:
        return await self._store().delete(patch_id)

    def _store(self) -> PatchStore:
        if self._patch_store is None:
            raise _not_running()
        return self._patch_store

    # -- anomalies ----------------------------------------------------------------------------

    async def list_anomalies(
        self,
        *,
        since_ns: int | None = None,
        kind: AnomalyKind | None = None,
        source: str | None = None,
        state: EpisodeState | None = None,
        limit: int = 100,
        page_token: str = "",
    ) -> AnomalyPage:
        """Episodes newest first (by start), filtered; `since_ns` keeps those with an event since."""
        where, args = _anomaly_filters(since_ns, kind, source, state, page_token)
        limit = max(1, min(limit, MAX_PAGE))
        sql = (
            f"SELECT {_ANOMALY_COLUMNS} FROM anomalies {where} "
            f"ORDER BY started_ns DESC, episode_id DESC LIMIT {limit + 1}"
        )
        rows = await self._fetch(sql, *args)
        items = tuple(_anomaly_from_row(r) for r in rows[:limit])
        token = (
            encode_token(ANOMALIES, [items[-1].started_ns, items[-1].episode_id])
            if len(rows) > limit
            else ""
        )
        return AnomalyPage(items, token)

    async def open_episodes(self, limit: int = MAX_OPEN_RECONCILED) -> list[AnomalyRecord]:
        """The episodes this instance recorded as open, oldest first: what a restart reconciles.

        Rows from before episodes named their instance count as this one's when the registry
        is embedded (one instance); in a shared database they are left alone.
        """
        rows = await self._fetch(
            f"SELECT {_ANOMALY_COLUMNS} FROM anomalies WHERE state <> 'resolved' "
            "AND (instance = $1 OR ($2 AND instance = '')) "
            f"ORDER BY started_ns, episode_id LIMIT {int(limit)}",
            self.instance,
            self._embedded is not None,
        )
        return [_anomaly_from_row(r) for r in rows]

    async def episode_states(self, episode_ids: Sequence[str]) -> dict[str, EpisodeState]:
        """The stored state of those of `episode_ids` the registry has."""
        if not episode_ids:
            return {}
        rows = await self._fetch(
            "SELECT episode_id, state FROM anomalies WHERE episode_id = ANY($1::text[])",
            list(episode_ids),
        )
        return {r["episode_id"]: EpisodeState(r["state"]) for r in rows}

    async def known_templates(
        self, since_ns: int, limit: int = MAX_TEMPLATES_RECOVERED
    ) -> list[KnownTemplate]:
        """The templates (and rhythm hashes) of this instance's episodes with an event since
        `since_ns`, newest first: what a restart recovers when its snapshot predates them."""
        rows = await self._fetch(
            "SELECT source_key, template_id, template, rhythm_hash FROM ("
            "  SELECT DISTINCT ON (rhythm_hash) source_key, template_id, template, rhythm_hash,"
            "         time_ns FROM anomalies"
            "  WHERE time_ns >= $1 AND template_id <> '' AND template <> ''"
            "    AND (instance = $2 OR ($3 AND instance = ''))"
            "  ORDER BY rhythm_hash, time_ns DESC"
            f") t ORDER BY time_ns DESC LIMIT {int(limit)}",
            int(since_ns),
            self.instance,
            self._embedded is not None,
        )
        return [KnownTemplate(**dict(r)) for r in rows]

    async def get_anomaly(self, episode_id: str) -> AnomalyRecord | None:
        rows = await self._fetch(
            f"SELECT {_ANOMALY_COLUMNS} FROM anomalies WHERE episode_id = $1", episode_id
        )
        return _anomaly_from_row(rows[0]) if rows else None

    # -- incidents ----------------------------------------------------------------------------

    async def list_incidents(
        self,
        *,
        since_ns: int | None = None,
        state: IncidentState | None = None,
        source: str | None = None,
        include_merged: bool = False,
        limit: int = 100,
        page_token: str = "",
    ) -> IncidentPage:
        """Incidents newest first (by start); `since_ns` keeps those changed since then.

        Items carry their members and links as of their last change (from the summary).
        """
        where, args = _incident_filters(since_ns, state, source, include_merged, page_token)
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._fetch(
            f"SELECT summary FROM incidents {where} "
            f"ORDER BY started_ns DESC, id DESC LIMIT {limit + 1}",
            *args,
        )
        items = tuple(Incident.from_json(r["summary"]) for r in rows[:limit])
        token = (
            encode_token(INCIDENTS, [items[-1].started_ns, items[-1].id])
            if len(rows) > limit
            else ""
        )
        return IncidentPage(items, token)

    async def get_incident(self, incident_id: str) -> Incident | None:
        """One incident with its graph: the links are read from `incident_links`."""
        rows = await self._fetch("SELECT summary FROM incidents WHERE id = $1", incident_id)
        if not rows:
            return None
        incident = Incident.from_json(rows[0]["summary"])
        links = await self._fetch(
            "SELECT episode_id, linked_episode_id, reason, weight, time_ns FROM incident_links "
            "WHERE incident_id = $1 AND reason <> 'root' "
            "ORDER BY time_ns, episode_id, linked_episode_id, reason",
            incident_id,
        )
        if links or incident.merged_into:
            graph = tuple(
                IncidentLink(
                    r["episode_id"],
                    r["linked_episode_id"],
                    LinkType(r["reason"]),
                    r["weight"],
                    r["time_ns"],
                )
                for r in links
            )
            incident = dataclasses.replace(incident, links=graph or incident.links)
        return incident

    async def incident_of_episode(self, episode_id: str) -> str | None:
        """The id of the (unmerged) incident an episode belongs to, if any."""
        rows = await self._fetch(
            "SELECT l.incident_id FROM incident_links l JOIN incidents i ON i.id = l.incident_id "
            "WHERE (l.episode_id = $1 OR l.linked_episode_id = $1) AND i.merged_into = '' "
            "ORDER BY i.started_ns DESC LIMIT 1",
            episode_id,
        )
        return str(rows[0]["incident_id"]) if rows else None

    # -- schemas ------------------------------------------------------------------------------

    async def get_schema(self, source_key: str) -> SchemaRecord | None:
        rows = await self._fetch(
            "SELECT attributes, profile, created_at, updated_at FROM schemas WHERE source_key = $1",
            source_key,
        )
        return _schema_from_row(rows[0]) if rows else None

    async def list_schemas(self, *, limit: int = 100, after: str = "") -> list[SchemaRecord]:
        """Schemas in source-key order; pass the last key as `after` for the next page.

        Up to MAX_PAGE + 1 rows, so that a caller asking one more than a full page can tell
        whether another page follows."""
        limit = max(1, min(limit, MAX_PAGE + 1))
        rows = await self._fetch(
            "SELECT attributes, profile, created_at, updated_at FROM schemas "
            f"WHERE source_key > $1 ORDER BY source_key LIMIT {limit}",
            after,
        )
        return [_schema_from_row(r) for r in rows]

    async def _restore_schemas(self) -> None:
        """Start schema inference from what the database knows (shared by instances)."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT attributes FROM schemas ORDER BY updated_at DESC LIMIT {self.config.schema.max_sources}"
            )
        for r in rows:
            try:
                self.schema_tracker.restore_source(r["attributes"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring a stored schema snapshot: %s", exc)

    async def _save_schemas_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.schema_save_interval)
            if self._writer is not None:
                self._queue_schemas(self._writer)

    def add_schema_row(self, row: SchemaRow) -> None:
        """Queue a schema row from a tracker that lives elsewhere (a shard process)."""
        if self._writer is not None:
            self._writer.add_schema(row)

    def _queue_schemas(self, writer: RegistryWriter) -> None:
        for row in self.schema_tracker.take_dirty():
            writer.add_schema(row)

    # -- evaluations --------------------------------------------------------------------------

    async def list_evaluations(
        self, *, run: str | None = None, limit: int = 100
    ) -> list[EvaluationRow]:
        limit = max(1, min(limit, MAX_PAGE))
        rows = await self._fetch(
            "SELECT run, scenario, precision, recall, f1, detection_delay_s, params, recorded_at "
            "FROM evaluation_metrics WHERE ($1::text IS NULL OR run = $1) "
            f"ORDER BY recorded_at DESC, id DESC LIMIT {limit}",
            run,
        )
        return [EvaluationRow(**dict(r)) for r in rows]

    # -- source handoff -----------------------------------------------------------------------

    async def save_source_states(self, states: Sequence[tuple[str, bytes]], instance: str) -> None:
        """Store sources' learned state (see `via_otlp.shard.handoff`), replacing older copies."""
        if not states:
            return
        if self._pool is None:
            raise _not_running()
        try:
            async with self._pool.acquire(timeout=self.config.connect_timeout) as conn:
                # Only the owner replaces a row: a source another instance took over since is
                # left alone (the old owner forgets it: `claimed_elsewhere`).
                await conn.executemany(
                    "INSERT INTO source_state (source_key, snapshot, instance, updated_at) "
                    "VALUES ($1, $2, $3, now()) ON CONFLICT (source_key) DO UPDATE SET "
                    "snapshot = EXCLUDED.snapshot, updated_at = now() "
                    "WHERE source_state.instance = EXCLUDED.instance",
                    [(key, blob, instance) for key, blob in states],
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise as_upstream(exc, "registry source state") from exc

    async def claim_sources(self, keys: Sequence[str], instance: str) -> None:
        """Record that `instance` owns `keys` now (it took them over, or saw them first)."""
        if not keys:
            return
        await self._fetch(
            "INSERT INTO source_state (source_key, snapshot, instance) "
            "SELECT k, ''::bytea, $2 FROM unnest($1::text[]) AS k "
            "ON CONFLICT (source_key) DO UPDATE SET instance = $2, updated_at = now()",
            list(keys),
            instance,
        )

    async def claimed_elsewhere(self, keys: Sequence[str], instance: str) -> list[str]:
        """Those of `keys` that another instance has claimed."""
        if not keys:
            return []
        rows = await self._fetch(
            "SELECT source_key FROM source_state WHERE source_key = ANY($1::text[]) "
            "AND instance <> $2",
            list(keys),
            instance,
        )
        return sorted(r["source_key"] for r in rows)

    async def load_source_states(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored learned state of those of `keys` that have one."""
        if not keys:
            return {}
        rows = await self._fetch(
            "SELECT source_key, snapshot FROM source_state "
            "WHERE source_key = ANY($1::text[]) AND length(snapshot) > 0",
            list(keys),
        )
        return {r["source_key"]: bytes(r["snapshot"]) for r in rows}

    # -- plumbing -----------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        if self._pool is None:
            raise _not_running()
        try:
            async with self._pool.acquire(timeout=self.config.connect_timeout) as conn:
                return list(await conn.fetch(sql, *args))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise as_upstream(exc, "registry query") from exc


def instance_id(data_dir: Path) -> str:
    """This instance's name in the registry: made once and kept in the data directory, so it
    outlives restarts (and crashes), and differs between instances with their own state."""
    path = data_dir / INSTANCE_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    made = f"{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(made + "\n", encoding="utf-8")
    tmp.replace(path)
    return made


def _not_running() -> UpstreamError:
    return UpstreamError(
        "the registry is not running",
        retryable=False,
        hint="set registry.enabled to true and start it",
    )


def _anomaly_filters(
    since_ns: int | None,
    kind: AnomalyKind | None,
    source: str | None,
    state: EpisodeState | None,
    page_token: str,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(template: str, *values: Any) -> None:
        args.extend(values)
        n = len(args)
        clauses.append(template.format(*[f"${i}" for i in range(n - len(values) + 1, n + 1)]))

    if since_ns is not None:
        add("time_ns >= {}", since_ns)
    if kind is not None:
        add("kind = {}", AnomalyKind(kind).value)
    if source:
        add("source_key = {}", source)
    if state is not None:
        add("state = {}", EpisodeState(state).value)
    if page_token:
        started, episode_id = decode_token(page_token, ANOMALIES, (int, str))
        add("(started_ns, episode_id) < ({}, {})", started, episode_id)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _incident_filters(
    since_ns: int | None,
    state: IncidentState | None,
    source: str | None,
    include_merged: bool,
    page_token: str,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if since_ns is not None:
        args.append(since_ns)
        clauses.append(f"time_ns >= ${len(args)}")
    if state is not None:
        args.append(IncidentState(state).value)
        clauses.append(f"state = ${len(args)}")
    if source:
        args.append(source)
        clauses.append(f"${len(args)} = ANY(sources)")
    if not include_merged:
        clauses.append("merged_into = ''")
    if page_token:
        started, incident_id = decode_token(page_token, INCIDENTS, (int, str))
        args += [started, incident_id]
        clauses.append(f"(started_ns, id) < (${len(args) - 1}, ${len(args)})")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _anomaly_from_row(r: asyncpg.Record) -> AnomalyRecord:
    source = source_from_json({"key": r["source_key"], "attributes": r["source_attributes"]})
    events = tuple(sorted((event_from_json(e) for e in r["events"]), key=lambda e: e.time_ns))
    return AnomalyRecord(
        episode_id=r["episode_id"],
        kind=AnomalyKind(r["kind"]),
        state=EpisodeState(r["state"]),
        source=source,
        rhythm_hash=r["rhythm_hash"],
        template_id=r["template_id"],
        template=r["template"],
        severity=r["severity"],
        started_ns=r["started_ns"],
        ended_ns=r["ended_ns"],
        time_ns=r["time_ns"],
        max_score=r["max_score"],
        muted=r["muted"],
        explanation=r["explanation"],
        events=events,
    )


def _schema_from_row(r: asyncpg.Record) -> SchemaRecord:
    created: datetime = r["created_at"]
    updated: datetime = r["updated_at"]
    return SchemaRecord(schema_from_snapshot(r["attributes"]), dict(r["profile"]), created, updated)
