"""Patches in PostgreSQL, cached in memory as a `PatchSet` that every instance keeps current.

A trigger on `patches` sends NOTIFY `via_patches` on every change, whoever made it; each
instance LISTENs on a connection of its own and reloads on notice, so a patch made anywhere
applies everywhere within a second. The cache is also reloaded every `refresh_interval` and
after the listening connection comes back, since notices sent while it was away are lost.
While PostgreSQL is away the last cache stays in force (expiry is evaluated locally).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import asyncpg

from via_otlp.backoff import Backoff, backoff_delay
from via_otlp.errors import InputError
from via_otlp.lifecycle import stop_tasks
from via_otlp.registry._db import as_upstream, is_retryable
from via_otlp.registry.patches import EMPTY_PATCHES, Patch, PatchRule, PatchSet
from via_otlp.times import datetime_from_ns, ns_from_datetime

log = logging.getLogger(__name__)

CHANNEL = "via_patches"
_COLUMNS = "id, rule, rhythm_hash, source, template, params, reason, author, created_at, expires_at, active"
_DEBOUNCE = 0.02
_FIRST_RETRY = 0.1  # seconds; doubles up to retry_max_backoff


class PatchStore:
    """Reads and writes patches, and keeps `current` (a `PatchSet`) in step with the database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        *,
        refresh_interval: float = 30.0,
        connect_timeout: float = 10.0,
        retry_max_backoff: float = 5.0,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._refresh_interval = refresh_interval
        self._connect_timeout = connect_timeout
        self._backoff = Backoff.capped(_FIRST_RETRY, retry_max_backoff)
        self._current = EMPTY_PATCHES
        self._listener: asyncpg.Connection | None = None
        self._refresh = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    @property
    def current(self) -> PatchSet:
        """The patches in force now (an immutable snapshot; never blocks)."""
        return self._current

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the patches and start listening; raises `UpstreamError` if PostgreSQL fails."""
        if self._task is not None:
            return
        self._closing.clear()
        try:
            await self._connect_listener()
            await self.reload()
        except BaseException:
            await self._close_listener()
            raise
        self._task = asyncio.create_task(self._watch(), name="via-patch-watch")

    async def shutdown(self) -> None:
        """Stop listening; idempotent and safe without start."""
        self._closing.set()
        self._refresh.set()
        task, self._task = self._task, None
        await stop_tasks([task])
        await self._close_listener()

    # -- reads and writes ---------------------------------------------------------------------

    async def reload(self) -> PatchSet:
        """Read every patch and swap the cache; raises `UpstreamError` on failure."""
        patches = await self.list_patches()
        self._current = PatchSet(patches)
        self.reloads += 1
        return self._current

    async def list_patches(self, *, include_inactive: bool = True) -> list[Patch]:
        """All stored patches, oldest first (expired ones included: they are history)."""
        where = "" if include_inactive else "WHERE active"
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM patches {where} ORDER BY created_at, id")
        patches = []
        for r in rows:
            try:
                patches.append(patch_from_row(r))
            except InputError as exc:  # e.g. a bad regex typed in with psql
                log.warning("ignoring patch %s: %s", r["id"], exc)
        return patches

    async def get(self, patch_id: str) -> Patch | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM patches WHERE id = $1", patch_id)
        return patch_from_row(rows[0]) if rows else None

    async def upsert(self, patch: Patch) -> Patch:
        """Create or replace a patch by id; returns it as stored (with its creation time)."""
        sql = f"""
            INSERT INTO patches ({_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, now()), $10, $11)
            ON CONFLICT (id) DO UPDATE SET
                rule = EXCLUDED.rule, rhythm_hash = EXCLUDED.rhythm_hash,
                source = EXCLUDED.source, template = EXCLUDED.template,
                params = EXCLUDED.params, reason = EXCLUDED.reason, author = EXCLUDED.author,
                expires_at = EXCLUDED.expires_at, active = EXCLUDED.active, updated_at = now()
            RETURNING {_COLUMNS}"""
        rows = await self._fetch(sql, *_patch_args(patch))
        await self._reload_quietly()
        return patch_from_row(rows[0])

    async def delete(self, patch_id: str) -> bool:
        """Remove a patch; False if there was none with that id."""
        rows = await self._fetch("DELETE FROM patches WHERE id = $1 RETURNING id", patch_id)
        await self._reload_quietly()
        return bool(rows)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                return list(await conn.fetch(sql, *args))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise as_upstream(exc, "patch query") from exc

    async def _reload_quietly(self) -> None:
        """Apply our own change at once, without waiting for the notice."""
        with contextlib.suppress(Exception):
            await self.reload()

    # -- listening ----------------------------------------------------------------------------

    async def _connect_listener(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(self._on_terminated)
        except BaseException:
            conn.terminate()
            raise
        self._listener = conn

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self._refresh.set()

    def _on_terminated(self, conn: object) -> None:
        self._refresh.set()

    async def _watch(self) -> None:
        """Reload on notice or every `refresh_interval`; reconnect the listener when lost."""
        failures = 0
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh.wait(), self._refresh_interval)
            if self._closing.is_set():
                return
            await asyncio.sleep(_DEBOUNCE)  # one reload for a burst of notices
            self._refresh.clear()
            try:
                if not self.listening:
                    await self._close_listener()
                    await self._connect_listener()
                    log.info("patch listener reconnected")
                await self.reload()
                failures = 0
            except Exception as exc:
                if not is_retryable(exc) and not isinstance(exc, asyncpg.PostgresError):
                    log.exception("patch refresh failed")
                delay = backoff_delay(failures, self._backoff)
                failures += 1
                log.debug("patch refresh failed (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                self._refresh.set()


def _to_dt(ns: int) -> datetime | None:
    return None if ns == 0 else datetime_from_ns(ns)


def _to_ns(t: datetime | None) -> int:
    return 0 if t is None else ns_from_datetime(t)


def _patch_args(p: Patch) -> tuple[Any, ...]:
    params = {"threshold": p.threshold} if p.threshold is not None else {}
    return (
        p.id,
        p.rule.value,
        p.rhythm_hash,
        p.source,
        p.template,
        params,
        p.reason,
        p.author,
        _to_dt(p.created_ns),
        _to_dt(p.expires_ns),
        p.active,
    )


def patch_from_row(row: asyncpg.Record | dict[str, Any]) -> Patch:
    """A stored row as a `Patch`."""
    params = row["params"] or {}
    threshold = params.get("threshold")
    return Patch(
        rule=PatchRule(row["rule"]),
        rhythm_hash=row["rhythm_hash"],
        source=row["source"],
        template=row["template"],
        threshold=float(threshold) if threshold is not None else None,
        reason=row["reason"],
        author=row["author"],
        id=row["id"],
        created_ns=_to_ns(row["created_at"]),
        expires_ns=_to_ns(row["expires_at"]),
        active=row["active"],
    )
