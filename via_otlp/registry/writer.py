"""Write-behind to PostgreSQL, off the hot path: anomaly events, incidents, schemas, evaluations.

`add_*` only appends to a bounded buffer and never waits. A background task writes the
buffer in batches, each in one transaction (`via_otlp.writebehind`, shared with the vector
store). When PostgreSQL goes away, rows wait in the buffer (a full buffer drops new rows,
counted and logged once per outage), the state turns `degraded`, and the task retries with
jittered backoff until the server is back; nothing already buffered is lost. Anomaly writes are idempotent (an event already stored is not
added twice), so a batch retried after a lost acknowledgement does no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from via_otlp.backoff import Backoff
from via_otlp.model import (
    AnomalyEvent,
    EpisodeState,
    IncidentEvent,
    IncidentEventKind,
    source_to_json,
)
from via_otlp.registry._db import is_retryable
from via_otlp.registry.records import (
    EvaluationRow,
    RegistryState,
    SchemaRow,
    WriterStats,
    event_to_json,
)
from via_otlp.writebehind import WriteBehind, describe

log = logging.getLogger(__name__)

_MAX_EVENTS_PER_EPISODE = 64
_FIRST_RETRY = 0.1  # seconds; doubles up to retry_max_backoff

UPSERT_ANOMALY = f"""
INSERT INTO anomalies AS a (episode_id, kind, state, source_key, source_attributes, rhythm_hash,
    template_id, template, severity, started_ns, ended_ns, time_ns, max_score, muted,
    explanation, events, instance)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, jsonb_build_array($16::jsonb),
    $17)
ON CONFLICT (episode_id) DO UPDATE SET
    instance = CASE WHEN a.instance = '' THEN EXCLUDED.instance ELSE a.instance END,
    state = CASE WHEN EXCLUDED.time_ns >= a.time_ns THEN EXCLUDED.state ELSE a.state END,
    explanation = CASE WHEN EXCLUDED.time_ns >= a.time_ns THEN EXCLUDED.explanation ELSE a.explanation END,
    template = CASE WHEN EXCLUDED.time_ns >= a.time_ns THEN EXCLUDED.template ELSE a.template END,
    ended_ns = GREATEST(a.ended_ns, EXCLUDED.ended_ns),
    time_ns = GREATEST(a.time_ns, EXCLUDED.time_ns),
    max_score = GREATEST(a.max_score, EXCLUDED.max_score),
    muted = a.muted OR EXCLUDED.muted,
    events = CASE
        WHEN a.events @> EXCLUDED.events OR jsonb_array_length(a.events) >= {_MAX_EVENTS_PER_EPISODE}
        THEN a.events ELSE a.events || EXCLUDED.events END,
    updated_at = now()
"""

UPSERT_SCHEMA = """
INSERT INTO schemas AS s (source_key, source_attributes, attributes, profile)
VALUES ($1, $2, $3, $4)
ON CONFLICT (source_key) DO UPDATE SET
    source_attributes = EXCLUDED.source_attributes,
    attributes = EXCLUDED.attributes,
    profile = EXCLUDED.profile,
    updated_at = now()
"""

# Incidents: the latest event (by event time) wins, a resolved incident stays resolved, and a
# replayed event changes nothing, so batches can be retried.
UPSERT_INCIDENT = """
INSERT INTO incidents AS i (id, title, state, started_ns, ended_ns, score, summary, sources,
    time_ns, merged_into)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET
    title = CASE WHEN EXCLUDED.time_ns >= i.time_ns THEN EXCLUDED.title ELSE i.title END,
    state = CASE WHEN i.state = 'resolved' THEN i.state
                 WHEN EXCLUDED.time_ns >= i.time_ns THEN EXCLUDED.state ELSE i.state END,
    started_ns = LEAST(i.started_ns, EXCLUDED.started_ns),
    ended_ns = CASE WHEN EXCLUDED.time_ns >= i.time_ns THEN EXCLUDED.ended_ns ELSE i.ended_ns END,
    score = GREATEST(i.score, EXCLUDED.score),
    summary = CASE WHEN EXCLUDED.time_ns >= i.time_ns THEN EXCLUDED.summary ELSE i.summary END,
    sources = CASE WHEN EXCLUDED.time_ns >= i.time_ns THEN EXCLUDED.sources ELSE i.sources END,
    merged_into = CASE WHEN i.merged_into <> '' THEN i.merged_into ELSE EXCLUDED.merged_into END,
    time_ns = GREATEST(i.time_ns, EXCLUDED.time_ns),
    updated_at = now()
"""

UPSERT_INCIDENT_LINK = """
INSERT INTO incident_links AS l (incident_id, episode_id, linked_episode_id, reason, weight, time_ns)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (incident_id, episode_id, linked_episode_id, reason)
DO UPDATE SET weight = GREATEST(l.weight, EXCLUDED.weight)
"""

DELETE_INCIDENT_LINKS = "DELETE FROM incident_links WHERE incident_id = $1"

INSERT_EVALUATION = """
INSERT INTO evaluation_metrics (run, scenario, precision, recall, f1, detection_delay_s, params, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, now()))
"""


@dataclass(frozen=True, slots=True)
class _EventItem:
    event: AnomalyEvent
    muted: bool


_Item = _EventItem | SchemaRow | EvaluationRow | IncidentEvent


class RegistryWriter:
    """A bounded write-behind buffer drained into PostgreSQL by one background task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        buffer_max: int = 20_000,
        flush_interval: float = 1.0,
        flush_max_rows: int = 500,
        retry_max_backoff: float = 5.0,
        acquire_timeout: float = 10.0,
        instance: str = "",
    ) -> None:
        self._pool = pool
        self._instance = instance
        self._acquire_timeout = acquire_timeout
        self._written = 0
        self._buffer: WriteBehind[_Item] = WriteBehind(
            self._write_batch,
            retryable=is_retryable,
            capacity=buffer_max,
            batch_size=flush_max_rows,
            interval=flush_interval,
            backoff=Backoff.capped(_FIRST_RETRY, retry_max_backoff),
            upstream="PostgreSQL",
            what="registry writes",
            task_name="via-registry-writer",
        )

    # -- intake (never waits) -------------------------------------------------------------------

    def add_event(self, event: AnomalyEvent, *, muted: bool = False) -> bool:
        """Queue an anomaly event; False when the buffer is full (counted in `dropped`)."""
        return self._buffer.add(_EventItem(event, muted))

    def add_incident(self, event: IncidentEvent) -> bool:
        """Queue an incident change (the incident row, its member graph in `incident_links`)."""
        return self._buffer.add(event)

    def add_schema(self, row: SchemaRow) -> bool:
        """Queue a source's schema snapshot and profile (saved by upsert)."""
        return self._buffer.add(row)

    def add_evaluation(self, row: EvaluationRow) -> bool:
        """Queue an evaluation result."""
        return self._buffer.add(row)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._buffer.start()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Write what is buffered (within `timeout`), then stop; idempotent, safe without start.
        Rows not written stay counted in `buffered`."""
        await self._buffer.shutdown(timeout)

    def wake(self) -> None:
        """Try the buffer now (PostgreSQL is back), rather than at the end of the backoff."""
        self._buffer.wake()

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False if `timeout` passed first."""
        return await self._buffer.flush(timeout)

    def stats(self) -> WriterStats:
        b = self._buffer
        return WriterStats(
            state=RegistryState.DEGRADED if b.degraded else RegistryState.OK,
            buffered=b.buffered,
            written=self._written,
            dropped=b.dropped,
            failed=b.failed,
            last_error=b.last_error,
        )

    # -- writing (called by the buffer's task) --------------------------------------------------

    async def _write_batch(self, batch: Sequence[_Item]) -> None:
        async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
            try:
                async with conn.transaction():
                    await _write_items(conn, batch, self._instance)
                self._written += len(batch)
            except Exception as exc:
                if is_retryable(exc):
                    raise
                await self._write_one_by_one(conn, batch, exc)

    async def _write_one_by_one(
        self, conn: asyncpg.Connection, batch: Sequence[_Item], first: BaseException
    ) -> None:
        """A batch failed for a permanent reason: write rows alone, count the ones that fail."""
        log.error("registry write failed (%s); retrying the batch row by row", first)
        for item in batch:
            try:
                async with conn.transaction():
                    await _write_items(conn, [item], self._instance)
                self._written += 1
            except Exception as exc:
                if is_retryable(exc):
                    raise
                self._buffer.failed += 1
                self._buffer.last_error = describe(exc)
                log.error("registry dropped a row it cannot write: %s", exc)


async def _write_items(
    conn: asyncpg.Connection, items: Sequence[_Item], instance: str = ""
) -> None:
    events = [i for i in items if isinstance(i, _EventItem)]
    schemas = {i.source.key: i for i in items if isinstance(i, SchemaRow)}  # latest wins
    evaluations = [i for i in items if isinstance(i, EvaluationRow)]
    incidents = {i.incident.id: i for i in items if isinstance(i, IncidentEvent)}  # latest wins
    if events:
        await conn.executemany(UPSERT_ANOMALY, [(*_anomaly_args(i), instance) for i in events])
    for ev in incidents.values():
        await conn.execute(UPSERT_INCIDENT, *_incident_args(ev))
        if ev.kind is IncidentEventKind.MERGED:
            await conn.execute(DELETE_INCIDENT_LINKS, ev.incident.id)
        else:
            await conn.executemany(UPSERT_INCIDENT_LINK, _incident_link_args(ev))
    if schemas:
        await conn.executemany(UPSERT_SCHEMA, [_schema_args(r) for r in schemas.values()])
    if evaluations:
        await conn.executemany(INSERT_EVALUATION, [_evaluation_args(r) for r in evaluations])


def _anomaly_args(item: _EventItem) -> tuple[object, ...]:
    e = item.event
    return (
        e.episode_id,
        e.kind.value,
        "resolved" if e.state is EpisodeState.RESOLVED else "open",  # an update: still open
        e.source.key,
        source_to_json(e.source)["attributes"],
        e.rhythm_hash,
        e.template_id,
        e.template,
        e.severity,
        e.started_ns,
        e.ended_ns,
        e.time_ns,
        _finite(e.score),
        item.muted,
        e.explanation,
        _finite_json(event_to_json(e)),
    )


def _incident_args(ev: IncidentEvent) -> tuple[object, ...]:
    inc = ev.incident
    summary = inc.to_json()
    summary["score"] = _finite(inc.score)
    for m in summary["members"]:
        m["score"] = _finite(m["score"])
    return (
        inc.id,
        inc.title,
        inc.state.value,
        inc.started_ns,
        inc.ended_ns,
        _finite(inc.score),
        summary,
        list(inc.sources),
        max(inc.time_ns, ev.time_ns),
        inc.merged_into,
    )


def _incident_link_args(ev: IncidentEvent) -> list[tuple[object, ...]]:
    inc = ev.incident
    rows: list[tuple[object, ...]] = [
        (inc.id, inc.root_episode_id, "", "root", 1.0, inc.started_ns)
    ]
    rows += [
        (inc.id, x.episode_id, x.linked_episode_id, x.type.value, _finite(x.confidence), x.time_ns)
        for x in inc.links
    ]
    return rows


def _schema_args(row: SchemaRow) -> tuple[object, ...]:
    return (
        row.source.key,
        source_to_json(row.source)["attributes"],
        dict(row.attributes),
        dict(row.profile),
    )


def _evaluation_args(row: EvaluationRow) -> tuple[object, ...]:
    return (
        row.run,
        row.scenario,
        row.precision,
        row.recall,
        row.f1,
        row.detection_delay_s,
        dict(row.params),
        row.recorded_at,
    )


def _finite(x: float) -> float:
    """JSON and sorting want finite numbers: clamp infinities, zero NaN."""
    if x != x:
        return 0.0
    return max(-1e300, min(1e300, x))


def _finite_json(data: dict[str, object]) -> dict[str, object]:
    return {k: _finite(v) if isinstance(v, float) else v for k, v in data.items()}
