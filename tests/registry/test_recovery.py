"""Crash safety against a real PostgreSQL: a pipeline restored from a snapshot older than what
the registry recorded is reconciled with it (via_otlp/recovery.py).

The "crash" is a second pipeline restored from the first one's earlier snapshot, as the next
start after a SIGKILL would be; tests/e2e/test_crash.py does it with a real killed server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import CLIENT_TIMEOUT
from via_otlp import recovery
from via_otlp.config import Config, parse_config
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState
from via_otlp.pipeline import Pipeline
from via_otlp.receive.ndjson import parse_ndjson_line, records_to_request
from via_otlp.registry.store import Registry

from .conftest import fast_config

S = 10**9
BUCKET = 10
T0 = 1_800_000_000  # seconds; a multiple of the bucket
SERVICE = "checkout"


def config() -> Config:
    return parse_config(
        '{detect: {warmup: "600s", cooldown: "60s", novelty: {source_warmup: "600s", threshold: 0}},'
        ' receive: {max_future_skew: "3650d"}}'
    )


def lines(bucket: int, n: int, body: str, severity: str = "INFO") -> list[dict[str, Any]]:
    t = T0 + bucket * BUCKET
    return [
        {"time": t + i * BUCKET / (n + 1), "service": SERVICE, "severity": severity, "body": body}
        for i in range(n)
    ]


def baseline(bucket: int) -> list[dict[str, Any]]:
    return lines(bucket, 5, "GET /cart 200 in 12 ms") + lines(bucket, 3, "payment ok order 17")


def feed(pipeline: Pipeline, records: list[dict[str, Any]]) -> None:
    import json

    request = records_to_request([parse_ndjson_line(json.dumps(r)) for r in records])
    now = max(int(r["time"] * S) for r in records)
    batch = pipeline.intake.process(pipeline.intake.prepare_request(request, now_ns=now))
    pipeline.consume(batch)


def run(pipeline: Pipeline, buckets: range, extra: dict[int, list[dict[str, Any]]]) -> None:
    for b in buckets:
        feed(pipeline, baseline(b) + extra.get(b, []))


async def life(
    dsn: str, data_dir: Path, snapshot: dict[str, Any] | None = None
) -> tuple[Registry, Pipeline]:
    """A start: the registry, and a pipeline (restored from `snapshot`, if given)."""
    reg = Registry(fast_config(dsn), data_dir)
    await reg.start()
    pipeline = Pipeline(config(), reg)
    if snapshot is not None:
        pipeline.restore(snapshot)
    return reg, pipeline


async def stored(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT episode_id, kind, state, template, explanation, instance FROM anomalies "
            "ORDER BY started_ns"
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def test_a_restart_from_an_older_snapshot_adopts_resolves_and_recovers(
    db_dsn: str, data_dir: Path
) -> None:
    # The first life: a baseline, a snapshot, then a spike and a new ERROR template.
    reg, first = await life(db_dsn, data_dir)
    run(first, range(0, 80), {})
    snapshot = first.snapshot()
    spike = {82: lines(82, 60, "GET /cart 200 in 12 ms")}
    novel = {83: lines(83, 2, "disk full on /dev/sda1 while writing order 17", "ERROR")}
    run(first, range(80, 86), {**spike, **novel})
    assert await reg.flush(CLIENT_TIMEOUT)
    before = await stored(db_dsn)
    assert {(r["kind"], r["state"]) for r in before} == {("spike", "open"), ("novelty", "open")}
    assert all(r["instance"] == reg.instance and reg.instance for r in before)
    spike_id = next(r["episode_id"] for r in before if r["kind"] == "spike")
    await reg.shutdown()  # the process dies: what it learnt after the snapshot is gone

    # The next life restores the older snapshot and reconciles before taking records.
    reg, second = await life(db_dsn, data_dir, snapshot)
    emitted: list[AnomalyEvent] = []
    second.dispatch.sink = emitted.extend
    report = await recovery.reconcile(recovery.ask_pipeline(second), reg, second.dispatch)
    assert report.open_in_registry == 2 and report.held == 0
    assert report.adopted == 1 and report.resolved == 1  # the spike's profile is known
    assert report.templates_recovered >= 1 and report.rhythms_remembered >= 1
    assert [(e.kind, e.state) for e in emitted] == [(AnomalyKind.NOVELTY, EpisodeState.RESOLVED)]
    assert "restarted without this episode's state" in emitted[0].explanation
    # written before reconcile returns (before intake opens): no flush of the test's own
    assert {(r["kind"], r["state"]) for r in await stored(db_dsn)} == {
        ("spike", "open"),
        ("novelty", "resolved"),
    }

    # Records go on: calm, and the new template again. No second novelty, no second spike.
    run(
        second,
        range(80, 100),
        {95: lines(95, 2, "disk full on /dev/sda1 while writing order 99", "ERROR")},
    )
    assert await reg.flush(CLIENT_TIMEOUT)
    after = await stored(db_dsn)
    await reg.shutdown()
    assert [(r["kind"], r["state"]) for r in after] == [
        ("spike", "resolved"),
        ("novelty", "resolved"),
    ], after
    spike_row = next(r for r in after if r["kind"] == "spike")
    assert spike_row["episode_id"] == spike_id and "back to baseline" in spike_row["explanation"]


async def test_an_episode_the_registry_resolved_is_not_resolved_twice(
    db_dsn: str, data_dir: Path
) -> None:
    reg, first = await life(db_dsn, data_dir)
    run(first, range(0, 80), {})
    run(first, range(80, 86), {82: lines(82, 60, "GET /cart 200 in 12 ms")})
    snapshot = first.snapshot()  # the spike is open in this snapshot
    assert len(first.engine.open_episodes()) == 1
    run(first, range(86, 100), {})  # and resolved after it
    assert await reg.flush(CLIENT_TIMEOUT)
    assert [(r["kind"], r["state"]) for r in await stored(db_dsn)] == [("spike", "resolved")]
    await reg.shutdown()

    reg, second = await life(db_dsn, data_dir, snapshot)
    report = await recovery.reconcile(recovery.ask_pipeline(second), reg, second.dispatch)
    assert report.discarded == 1 and report.open_in_registry == 0
    assert second.engine.open_episodes() == []
    await reg.shutdown()


async def test_another_instances_open_episodes_are_left_alone(
    db_dsn: str, data_dir: Path, tmp_path: Path
) -> None:
    reg, first = await life(db_dsn, data_dir)
    run(first, range(0, 80), {})
    run(first, range(80, 86), {82: lines(82, 60, "GET /cart 200 in 12 ms")})
    assert await reg.flush(CLIENT_TIMEOUT)
    await reg.shutdown()

    other_dir = tmp_path / "other"
    other, fresh = await life(db_dsn, other_dir)  # its own data directory: its own name
    report = await recovery.reconcile(recovery.ask_pipeline(fresh), other, fresh.dispatch)
    await other.shutdown()
    assert report.open_in_registry == 0 and report.resolved == 0
    assert [(r["kind"], r["state"]) for r in await stored(db_dsn)] == [("spike", "open")]
