"""Small asyncpg helpers shared by the registry: codecs and error classification."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from via_otlp.errors import UpstreamError
from via_otlp.redact import redact_text, redact_url

# SQLSTATE classes that may pass: connection exception, transaction rollback (serialisation,
# deadlock), insufficient resources, operator intervention (shutdown), system error.
_RETRYABLE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


async def init_connection(conn: asyncpg.Connection) -> None:
    """Make json/jsonb travel as Python objects on every connection."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=_dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def is_retryable(exc: BaseException) -> bool:
    """True for errors that may pass by themselves: the server went away, is restarting, ..."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _RETRYABLE_CLASSES
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return False
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | ConnectionError)


def as_upstream(exc: BaseException, doing: str) -> UpstreamError:
    """Wrap a database error in our exception tree, keeping whether to retry."""
    retryable = is_retryable(exc)
    hint = "PostgreSQL is unreachable; retry later" if retryable else ""
    return UpstreamError(
        f"PostgreSQL: {doing} failed: {redact_text(str(exc))}", retryable=retryable, hint=hint
    )


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (userinfo and ``password=`` parameters), for status and logs."""
    return redact_url(dsn)
