"""Registry rows written with the old source keys move to the current format, once."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.registry.conftest import fast_config
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.registry import Registry
from via_otlp.registry.migrate import apply_migrations, load_migrations
from via_otlp.sourcekeys import legacy_key

ENV = [["service.name", "api"], ["deployment.environment.name", "prod"]]
NS = [["service.namespace", "shop"], ["service.name", "checkout"]]


async def _old_registry(dsn: str) -> None:
    """A database as via-otlp left it before the source-key change (migrations 0001-0002)."""
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, [m for m in load_migrations() if m.version < "0003"])
        for episode, attrs in (("e-env", ENV), ("e-ns", NS)):
            key = legacy_key([tuple(a) for a in attrs])
            await conn.execute(
                "INSERT INTO anomalies (episode_id, kind, state, source_key, source_attributes,"
                " rhythm_hash, template_id, template, severity, started_ns, time_ns, max_score)"
                " VALUES ($1, 'spike', 'open', $2, $3::jsonb, $4, 't1', 'x <*>', 'ERROR', 1, 2, 5)",
                episode, key, json.dumps(attrs), rhythm_hash(key, "ERROR", "t1"),
            )  # fmt: skip
        snapshot = {"version": 1, "source": {"key": "api/prod", "attributes": ENV}, "windows": 3,
                    "samples": 9, "keys": [], "open": []}  # fmt: skip
        await conn.execute(
            "INSERT INTO schemas (source_key, source_attributes, attributes) VALUES"
            " ('api/prod', $1::jsonb, $2::jsonb)",
            json.dumps(ENV),
            json.dumps(snapshot),
        )
        await conn.execute(
            "INSERT INTO incidents (id, started_ns, sources) VALUES ('i1', 1, $1)",
            ["api/prod", "shop/checkout"],
        )
        await conn.execute(
            "INSERT INTO patches (id, rule, source, rhythm_hash) VALUES"
            " ('by-key', 'MUTE', 'api/prod', ''), ('by-hash', 'MUTE', '', $1),"
            " ('by-glob', 'DROP', 'shop/*', '')",
            rhythm_hash("api/prod", "ERROR", "t1"),
        )
    finally:
        await conn.close()


async def test_old_rows_take_the_new_keys_and_rhythm_hashes(db_dsn: str, data_dir: Path) -> None:
    await _old_registry(db_dsn)
    for _ in range(2):  # the second start finds the work done
        reg = Registry(fast_config(db_dsn), data_dir)
        await reg.start()
        await reg.shutdown()
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = {
            r["episode_id"]: (r["source_key"], r["rhythm_hash"])
            for r in await conn.fetch("SELECT episode_id, source_key, rhythm_hash FROM anomalies")
        }
        assert rows == {
            "e-env": ("api@prod", rhythm_hash("api@prod", "ERROR", "t1")),
            "e-ns": ("shop/checkout", rhythm_hash("shop/checkout", "ERROR", "t1")),
        }
        assert await conn.fetchval("SELECT source_key FROM schemas") == "api@prod"
        snapshot = json.loads(await conn.fetchval("SELECT attributes::text FROM schemas"))
        assert snapshot["source"]["key"] == "api@prod"
        assert await conn.fetchval("SELECT sources FROM incidents") == ["api@prod", "shop/checkout"]
        patches = {
            r["id"]: (r["source"], r["rhythm_hash"])
            for r in await conn.fetch("SELECT id, source, rhythm_hash FROM patches")
        }
        assert patches == {
            "by-key": ("api@prod", ""),
            "by-hash": ("", rhythm_hash("api@prod", "ERROR", "t1")),
            "by-glob": ("shop/*", ""),
        }
        assert await conn.fetchval("SELECT value FROM registry_meta") == "2"
    finally:
        await conn.close()
