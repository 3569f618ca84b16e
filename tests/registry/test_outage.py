"""PostgreSQL goes away mid-run: detection goes on, writes wait, nothing within the bound is lost."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import CLIENT_TIMEOUT
from via_otlp.model import EpisodeState
from via_otlp.registry.embedded import EmbeddedPostgres
from via_otlp.registry.patches import Patch, PatchRule
from via_otlp.registry.records import RegistryState
from via_otlp.registry.store import Registry

from .conftest import fast_config, make_event

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("VIA_TEST_DSN")), reason="needs a server the test can stop"
)
T0 = 1_700_000_000_000_000_000


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_stop_and_restart_postgres_loses_nothing_within_the_bound(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "pg", durable=False)
    dsn = pg.start()
    reg = Registry(fast_config(dsn, buffer_max=150, flush_max_rows=40), data_dir)
    try:
        await reg.start()
        for i in range(50):
            assert reg.record_anomaly(make_event(f"before{i}", time_ns=T0 + i))
        assert await reg.flush(CLIENT_TIMEOUT)

        await asyncio.to_thread(pg.pause)  # PostgreSQL goes away
        for i in range(100):
            assert reg.record_anomaly(make_event(f"during{i}", time_ns=T0 + 1000 + i))
        await _until(
            lambda: reg.status().state is RegistryState.DEGRADED, CLIENT_TIMEOUT, "degraded"
        )
        # Hot-path calls go on while the database is away.
        assert not reg.patches.is_muted(make_event())
        for i in range(100, 160):  # 150 fit in the buffer; the rest are counted drops
            reg.record_anomaly(make_event(f"during{i}", time_ns=T0 + 1000 + i))
        status = reg.status()
        assert status.writer.buffered == 150 and status.writer.dropped == 10
        assert not await reg.flush(0.3)

        await asyncio.to_thread(pg.resume)  # and comes back
        await _until(
            lambda: reg.status().writer.buffered == 0, CLIENT_TIMEOUT, "the buffer to drain"
        )
        await _until(lambda: reg.status().state is RegistryState.OK, CLIENT_TIMEOUT, "ok again")

        conn = await asyncpg.connect(dsn)
        try:
            ids = {r["episode_id"] for r in await conn.fetch("SELECT episode_id FROM anomalies")}
        finally:
            await conn.close()
        expected = {f"before{i}" for i in range(50)} | {f"during{i}" for i in range(150)}
        assert ids == expected
        assert reg.status().writer.written == 200

        # The patch listener reconnected: a patch still reaches the cache.
        await reg.upsert_patch(Patch(PatchRule.MUTE, rhythm_hash="after"))
        assert reg.patches.is_muted(make_event(rhythm_hash="after", state=EpisodeState.OPEN))
        await _until(lambda: reg.status().patches_listening, CLIENT_TIMEOUT, "the listener")
    finally:
        await reg.shutdown()
        pg.stop()
