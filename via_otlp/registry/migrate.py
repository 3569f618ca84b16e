"""Plain-SQL migrations, applied in order at start.

Each file in `migrations/` named ``NNNN_name.sql`` is applied once, in a transaction, and
recorded in `schema_migrations`. A session advisory lock serialises instances that start
together: the second waits, then finds the work done.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the advisory lock key of "via-otlp migrations".
MIGRATION_LOCK_KEY = 0x5649_415F_4D49_4752
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: `version` is its name without ``.sql``, e.g. ``0001_init``."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migration files, in order of their number."""
    folder = resources.files("via_otlp.registry") / "migrations"
    found = []
    for entry in folder.iterdir():
        if _NAME_RE.match(entry.name):
            found.append(Migration(entry.name[:-4], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    numbers = [m.version[:4] for m in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


async def apply_migrations(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> list[str]:
    """Apply the migrations `conn`'s database lacks; return the versions applied now."""
    todo = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    text PRIMARY KEY,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        applied = []
        for m in todo:
            if m.version in done:
                if done[m.version] != m.checksum:
                    log.warning(
                        "migration %s changed after it was applied; not re-applied", m.version
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    m.version,
                    m.checksum,
                )
            log.info("applied migration %s", m.version)
            applied.append(m.version)
        return applied
    finally:
        if not conn.is_closed():  # a lost session has released its lock already
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
