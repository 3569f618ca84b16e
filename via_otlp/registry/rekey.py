"""Moves registry rows to the current source-key format, once (see `via_otlp.sourcekeys`).

Rows of anomalies and schemas keep the identity attributes beside the key, so each row's new
key (and its anomalies' rhythm hashes) is computed from them. Incidents list source keys, and
patches select by key or rhythm hash: those are mapped where the old value stood for one
identity only. Runs under the migrations' advisory lock, so instances starting together agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import asyncpg

from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.registry.migrate import MIGRATION_LOCK_KEY
from via_otlp.sourcekeys import KeyMap

log = logging.getLogger(__name__)

KEY_FORMAT = "2"
_META_KEY = "source_key_format"
_GLOB = frozenset("*?[")


async def rekey_sources(conn: asyncpg.Connection, order: Sequence[str]) -> bool:
    """Rewrite old-format keys (and what hashes them); True if this call did the work."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        async with conn.transaction():
            done = await conn.fetchval("SELECT value FROM registry_meta WHERE key = $1", _META_KEY)
            if done == KEY_FORMAT:
                return False
            moved = await _rekey(conn, KeyMap(order))
            await conn.execute(
                "INSERT INTO registry_meta (key, value) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                _META_KEY,
                KEY_FORMAT,
            )
        if moved:
            log.info("registry: moved %d rows to the current source-key format", moved)
        return True
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def _rekey(conn: asyncpg.Connection, keys: KeyMap) -> int:
    moved = 0
    hashes: dict[str, str] = {}
    rows = await conn.fetch(
        "SELECT DISTINCT source_key, source_attributes::text AS attrs, severity, template_id,"
        " rhythm_hash FROM anomalies"
    )
    for r in rows:
        new = keys.learn(r["source_key"], json.loads(r["attrs"]))
        rh = rhythm_hash(new, r["severity"], r["template_id"])
        hashes[r["rhythm_hash"]] = rh
        if new == r["source_key"] and rh == r["rhythm_hash"]:
            continue
        status = await conn.execute(
            "UPDATE anomalies SET source_key = $1, rhythm_hash = $2 WHERE source_key = $3"
            " AND source_attributes = $4::text::jsonb AND severity = $5 AND template_id = $6"
            " AND rhythm_hash = $7",
            new, rh, r["source_key"], r["attrs"], r["severity"], r["template_id"], r["rhythm_hash"],
        )  # fmt: skip
        moved += _count(status)
    schemas = await conn.fetch(
        "SELECT source_key, source_attributes::text AS attrs, attributes::text AS snap FROM schemas"
    )
    for r in schemas:
        new = keys.learn(r["source_key"], json.loads(r["attrs"]))
        if new != r["source_key"]:
            snapshot = json.loads(r["snap"])  # the tracker's snapshot names its source too
            if isinstance(snapshot, dict) and isinstance(snapshot.get("source"), dict):
                snapshot["source"]["key"] = new
            status = await conn.execute(
                "UPDATE schemas SET source_key = $1, attributes = $2::text::jsonb"
                " WHERE source_key = $3",
                new, json.dumps(snapshot), r["source_key"],
            )  # fmt: skip
            moved += _count(status)
    for r in await conn.fetch("SELECT id, sources FROM incidents"):
        new_sources = [keys.one(k) for k in r["sources"]]
        if new_sources != list(r["sources"]):
            await conn.execute(
                "UPDATE incidents SET sources = $1 WHERE id = $2", new_sources, r["id"]
            )
            moved += 1
    for r in await conn.fetch("SELECT id, source, rhythm_hash FROM patches"):
        source = r["source"] if _GLOB & set(r["source"]) else keys.one(r["source"])
        rh = hashes.get(r["rhythm_hash"], r["rhythm_hash"])
        if (source, rh) != (r["source"], r["rhythm_hash"]):
            await conn.execute(
                "UPDATE patches SET source = $1, rhythm_hash = $2 WHERE id = $3",
                source,
                rh,
                r["id"],
            )
            moved += 1
        elif _GLOB & set(r["source"]):
            log.warning(
                "patch %s selects sources by the glob %r: source keys changed format "
                "(see README, 'Rhythm hashes and templates'); check that it still selects what you meant",
                r["id"], r["source"],
            )  # fmt: skip
    return moved


def _count(status: str) -> int:
    """Rows an ``UPDATE n`` status names."""
    return int(status.rsplit(" ", 1)[-1]) if status.startswith("UPDATE") else 0
