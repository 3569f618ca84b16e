"""Migrations: from empty, re-run, concurrent appliers, and a failing migration."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from via_otlp.registry.migrate import Migration, apply_migrations, load_migrations

TABLES = {
    "patches",
    "schemas",
    "anomalies",
    "incidents",
    "incident_links",
    "evaluation_metrics",
    "schema_migrations",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def test_migration_files_are_numbered_in_order() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions[0] == "0001_init"
    assert versions == sorted(versions)


async def test_from_empty_then_rerun(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        assert await apply_migrations(conn) == [m.version for m in load_migrations()]
        assert await _tables(conn) >= TABLES
        assert await apply_migrations(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(
            load_migrations()
        )
    finally:
        await conn.close()


async def test_two_concurrent_appliers(db_dsn: str) -> None:
    conns = [await asyncpg.connect(db_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [r for r in results if r]
        assert applied == [[m.version for m in load_migrations()]]
        assert await _tables(conns[0]) >= TABLES
    finally:
        for c in conns:
            await c.close()


async def test_a_failing_migration_is_rolled_back_and_not_recorded(db_dsn: str) -> None:
    good = load_migrations()
    bad = Migration("9999_bad", "CREATE TABLE half_done (x int); SELECT no_such_function();")
    conn = await asyncpg.connect(db_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await apply_migrations(conn, [*good, bad])
        assert "half_done" not in await _tables(conn)
        recorded = await conn.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = '9999_bad'"
        )
        assert recorded == 0
        fixed = Migration("9999_bad", "CREATE TABLE done (x int);")
        assert await apply_migrations(conn, [*good, fixed]) == ["9999_bad"]
        assert await conn.fetchval(
            "SELECT pg_try_advisory_lock(0x5649415F4D494752)"
        )  # lock released
    finally:
        await conn.close()
