"""Patches in PostgreSQL: round trip, and every instance sees a change through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from via_otlp.model import LogBatch
from via_otlp.registry.patches import Patch, PatchRule
from via_otlp.registry.store import Registry

from .conftest import SOURCE, fast_config, make_event


async def _wait_for(predicate, timeout: float = 60.0) -> float:
    """Seconds until `predicate()` held; fails after `timeout` (a deadline, not a measure:
    the registries here reload patches only every hour, so a change seen at all came through
    LISTEN/NOTIFY; `benchmarks/` is where its latency is measured)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "not seen within the deadline"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_a_patch_made_on_one_instance_reaches_another_through_notify(
    db_dsn: str, data_dir: Path
) -> None:
    config = fast_config(db_dsn, patch_refresh_interval=3600.0)  # no periodic reload
    a, b = Registry(config, data_dir), Registry(config, data_dir)
    await a.start()
    await b.start()
    try:
        event = make_event(rhythm_hash="feedbeef")
        assert not b.is_muted(event)
        patch = await a.upsert_patch(
            Patch(PatchRule.MUTE, rhythm_hash="feedbeef", reason="noisy", author="ops")
        )
        assert a.is_muted(event)  # the writer's own cache is current at once
        seconds = await _wait_for(lambda: b.patches.is_muted(event))
        print(f"patch seen by the other instance after {seconds * 1000:.0f} ms")
        assert b.is_muted(event) and b.status().events_muted == 1

        await b.delete_patch(patch.id)
        await _wait_for(lambda: not a.patches.is_muted(event))

        # A change made outside VIA (psql) reaches every instance too.
        conn = await asyncpg.connect(db_dsn)
        try:
            await conn.execute(
                "INSERT INTO patches (id, rule, source) VALUES ('manual', 'DROP', $1)", SOURCE.key
            )
        finally:
            await conn.close()
        await _wait_for(
            lambda: (
                a.patches.is_dropped(SOURCE.key, "x", "y")
                and b.patches.is_dropped(SOURCE.key, "x", "y")
            )
        )
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_patch_round_trip_and_expiry(db_dsn: str, data_dir: Path) -> None:
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        expires = time.time_ns() + 300_000_000
        stored = await reg.upsert_patch(
            Patch(
                PatchRule.THRESHOLD,
                source="checkout@*",
                template="re:payment",
                threshold=9.5,
                reason="flaky psp",
                author="ana",
                expires_ns=expires,
            )
        )
        assert stored.created_ns > 0 and abs(stored.expires_ns - expires) < 1000
        assert (await reg.get_patch(stored.id)) == stored
        assert [p.id for p in await reg.list_patches()] == [stored.id]
        event = make_event(score=5.0)
        assert reg.patches.threshold_for(event.source.key, event.rhythm_hash, event.template) == 9.5
        await asyncio.sleep(0.35)
        assert (
            reg.patches.threshold_for(event.source.key, event.rhythm_hash, event.template) is None
        )
        assert reg.status().patches_active == 0
        updated = await reg.upsert_patch(
            Patch(PatchRule.DROP, source=SOURCE.key, id=stored.id, reason="now drop")
        )
        assert updated.created_ns == stored.created_ns and updated.rule is PatchRule.DROP
        assert await reg.delete_patch(stored.id) and not await reg.delete_patch(stored.id)
    finally:
        await reg.shutdown()


async def test_drop_patch_filters_at_intake_and_counts(db_dsn: str, data_dir: Path) -> None:
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        await reg.upsert_patch(Patch(PatchRule.DROP, template="GET /health*"))
        n = 4
        batch = LogBatch(
            sources=[SOURCE],
            source_index=[0] * n,
            severity=["INFO"] * n,
            body=list("abcd"),
            time_ns=[0] * n,
            trace_id=[""] * n,
            span_id=[""] * n,
            unique_id=[""] * n,
            event_name=[""] * n,
            template_hint=[""] * n,
            template_id=["1", "2", "1", "2"],
            template=["GET /health", "POST /pay", "GET /health", "POST /pay"],
            rhythm_hash=["h1", "h2", "h1", "h2"],
        )
        kept = reg.filter_batch(batch)
        assert kept.body == ["b", "d"]
        assert reg.status().records_dropped_by_patch == 2
    finally:
        await reg.shutdown()
