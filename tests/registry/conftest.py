"""Registry tests run against a real PostgreSQL: one embedded server per session (or
`VIA_TEST_DSN`), and a database of its own for every test."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, Source
from via_otlp.registry.config import RegistryConfig
from via_otlp.registry.embedded import EmbeddedPostgres


@dataclass
class PgServer:
    dsn: str
    embedded: EmbeddedPostgres | None


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def make_tempdir(prefix: str) -> Path:
    """A temp dir the embedded server's user (nobody, when tests run as root) can enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    dsn = os.environ.get("VIA_TEST_DSN")
    if dsn:
        yield PgServer(dsn, None)
        return
    root = make_tempdir("via-registry-tests-")
    server = EmbeddedPostgres(root / "pg", durable=False)
    try:
        server.start()
        yield PgServer(server.dsn, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def db_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    name = "via_t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield with_database(pg_server.dsn, name)
    admin = await asyncpg.connect(pg_server.dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = make_tempdir("via-registry-data-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def fast_config(dsn: str, **overrides: object) -> RegistryConfig:
    """Registry settings for tests: quick flushes and retries."""
    values: dict[str, object] = {
        "dsn": dsn,
        "flush_interval": 0.05,
        "retry_max_backoff": 0.3,
        "patch_refresh_interval": 5.0,
        "connect_timeout": 3.0,
        "shutdown_timeout": 3.0,
    }
    values.update(overrides)
    return RegistryConfig(**values)  # type: ignore[arg-type]


SOURCE = Source.from_attributes(
    (("service.name", "checkout"), ("deployment.environment.name", "prod"))
)


def make_event(
    episode: str = "ep1",
    *,
    state: EpisodeState = EpisodeState.OPEN,
    time_ns: int = 1_700_000_000_000_000_000,
    started_ns: int | None = None,
    kind: AnomalyKind = AnomalyKind.SPIKE,
    source: Source = SOURCE,
    rhythm_hash: str = "aaaabbbbccccdddd",
    template: str = "payment failed for user <*>",
    score: float = 7.5,
) -> AnomalyEvent:
    started = time_ns if started_ns is None else started_ns
    return AnomalyEvent(
        episode_id=episode,
        kind=kind,
        state=state,
        time_ns=time_ns,
        started_ns=started,
        ended_ns=time_ns if state is EpisodeState.RESOLVED else 0,
        score=score,
        source=source,
        rhythm_hash=rhythm_hash,
        template_id="t1",
        template=template,
        severity="ERROR",
        expected=2.0,
        observed=40.0,
        baseline_mean=2.0,
        baseline_std=1.0,
        bucket_seconds=10.0,
        explanation="40 per 10 s, expected 2",
        sample_trace_ids=("0af7651916cd43dd8448eb211c80319c",),
    )
