"""The Registry facade against a real PostgreSQL: lifecycle, anomalies, schemas, evaluations."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.conftest import CLIENT_TIMEOUT
from via_otlp.configload import load_dataclass
from via_otlp.errors import ConfigError, InputError, StartupError, UpstreamError
from via_otlp.model import AnomalyKind, AttributeSample, EpisodeState, LogBatch
from via_otlp.paging import encode_token
from via_otlp.registry.config import RegistryConfig, SchemaDriftConfig
from via_otlp.registry.migrate import load_migrations
from via_otlp.registry.records import EvaluationRow, RegistryState
from via_otlp.registry.store import Registry

from .conftest import SOURCE, fast_config, make_event

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


async def test_shutdown_without_start_and_twice(data_dir: Path) -> None:
    reg = Registry(RegistryConfig(), data_dir)
    await reg.shutdown()
    await reg.shutdown()
    assert reg.status().state is RegistryState.DISABLED


async def test_disabled_registry_is_inert(data_dir: Path) -> None:
    reg = Registry(RegistryConfig(enabled=False), data_dir)
    await reg.start()
    assert reg.status().state is RegistryState.DISABLED
    assert reg.record_anomaly(make_event()) is False
    assert len(reg.patches) == 0
    with pytest.raises(UpstreamError):
        await reg.list_anomalies()
    await reg.shutdown()


async def test_start_failing_half_way_undoes_itself(data_dir: Path) -> None:
    dsn = f"postgresql://postgres@/postgres?host={data_dir}/nowhere&port=5432"
    reg = Registry(fast_config(dsn, connect_timeout=1.0), data_dir)
    with pytest.raises(StartupError, match="registry: cannot start"):
        await reg.start()
    assert reg.status().state is RegistryState.DISABLED
    await reg.shutdown()


async def test_embedded_mode_starts_and_stops_its_own_server(data_dir: Path) -> None:
    reg = Registry(RegistryConfig(flush_interval=0.05), data_dir, embedded_durable=False)
    await reg.start()
    try:
        status = reg.status()
        assert status.state is RegistryState.OK and status.embedded
        assert status.migrations_applied == tuple(m.version for m in load_migrations())
        assert reg.record_anomaly(make_event())
        assert await reg.flush(CLIENT_TIMEOUT)
        assert (await reg.get_anomaly("ep1")) is not None
    finally:
        await reg.shutdown()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    reg2 = Registry(RegistryConfig(), data_dir, embedded_durable=False)
    await reg2.start()  # same data: the anomaly outlived the process
    try:
        assert reg2.status().migrations_applied == ()
        assert (await reg2.get_anomaly("ep1")) is not None
    finally:
        await reg2.shutdown()


async def test_episode_events_are_stored_once_and_queryable(db_dsn: str, data_dir: Path) -> None:
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        opened = make_event("ep1", time_ns=T0)
        resolved = make_event(
            "ep1", state=EpisodeState.RESOLVED, time_ns=T0 + 60 * S, started_ns=T0
        )
        for e in (opened, opened, resolved, resolved):  # a retried write must not duplicate
            reg.record_anomaly(e)
        reg.record_anomaly(
            make_event("ep2", time_ns=T0 + 5 * S, kind=AnomalyKind.NOVELTY), muted=True
        )
        assert await reg.flush(CLIENT_TIMEOUT)
        rec = await reg.get_anomaly("ep1")
        assert rec is not None
        assert rec.state is EpisodeState.RESOLVED and rec.ended_ns == T0 + 60 * S
        assert rec.events == (opened, resolved)  # exact round trip, oldest first
        assert rec.source == SOURCE and not rec.muted
        page = await reg.list_anomalies()
        assert [r.episode_id for r in page.items] == ["ep2", "ep1"]  # newest start first
        assert page.items[0].muted
        novelty = await reg.list_anomalies(kind=AnomalyKind.NOVELTY)
        assert [r.episode_id for r in novelty.items] == ["ep2"]
        assert (await reg.list_anomalies(state=EpisodeState.OPEN)).items[0].episode_id == "ep2"
        assert (await reg.list_anomalies(since_ns=T0 + 30 * S)).items[0].episode_id == "ep1"
        assert (await reg.list_anomalies(source="nope")).items == ()
        assert reg.status().writer.written == 5
    finally:
        await reg.shutdown()


async def test_pagination_walks_every_episode_once(db_dsn: str, data_dir: Path) -> None:
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        for i in range(25):
            reg.record_anomaly(make_event(f"ep{i:02d}", time_ns=T0 + (i // 2) * S))  # ties on start
        assert await reg.flush(CLIENT_TIMEOUT)
        seen, token = [], ""
        while True:
            page = await reg.list_anomalies(limit=7, page_token=token)
            seen += [r.episode_id for r in page.items]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == [f"ep{i:02d}" for i in range(25)] and len(seen) == 25
        with pytest.raises(InputError):
            await reg.list_anomalies(page_token="!!not-a-token")
        # A token of the other list, or of the right list with another key shape, is refused.
        first = (await reg.list_anomalies(limit=7)).next_page_token
        with pytest.raises(InputError, match="page_token"):
            await reg.list_incidents(page_token=first)
        with pytest.raises(InputError, match="page_token"):
            await reg.list_anomalies(page_token=encode_token("anomalies", ["x", "ep01"]))
    finally:
        await reg.shutdown()


def _schema_batch(attrs: tuple[tuple[str, str], ...]) -> LogBatch:
    return LogBatch(sources=[SOURCE], attribute_samples=[AttributeSample(0, attrs, ())] * 30)


async def test_schemas_are_saved_and_restored_by_another_instance(
    db_dsn: str, data_dir: Path
) -> None:
    schema_cfg = SchemaDriftConfig(window=10, min_samples=10, warmup_windows=1)
    config = fast_config(db_dsn, schema=schema_cfg)
    reg = Registry(config, data_dir)
    await reg.start()
    try:
        reg.check_schema(T0)
        reg.observe(_schema_batch((("user.id", "string"),)))
        assert reg.check_schema(T0 + 10 * S) == []
        reg.observe(_schema_batch((("user.id", "int"),)))
        drift = reg.check_schema(T0 + 20 * S)
        assert [(e.kind, e.template) for e in drift] == [
            (AnomalyKind.SCHEMA, "log attribute user.id")
        ]
        for e in drift:
            reg.record_anomaly(e)
    finally:
        await reg.shutdown()  # saves the schemas
    reg2 = Registry(config, data_dir)
    await reg2.start()
    try:
        stored = await reg2.get_schema(SOURCE.key)
        assert stored is not None and stored.schema.windows == 2
        assert [a.key for a in stored.schema.attributes] == ["user.id"]
        assert [s.schema.source.key for s in await reg2.list_schemas()] == [SOURCE.key]
        assert reg2.schema_tracker.schema(SOURCE.key) == stored.schema  # restored at start
        assert (await reg2.list_anomalies(kind=AnomalyKind.SCHEMA)).items[
            0
        ].template == "log attribute user.id"
    finally:
        await reg2.shutdown()


async def test_evaluation_metrics(db_dsn: str, data_dir: Path) -> None:
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        row = EvaluationRow("run-1", "spike", 0.9, 0.75, 0.818, 12.5, {"cusum.h": 5})
        assert reg.record_evaluation(row)
        assert await reg.flush(CLIENT_TIMEOUT)
        [got] = await reg.list_evaluations(run="run-1")
        assert (got.precision, got.recall, got.f1, got.detection_delay_s) == (
            0.9,
            0.75,
            0.818,
            12.5,
        )
        assert got.params == {"cusum.h": 5} and got.recorded_at is not None
        conn = await asyncpg.connect(db_dsn)
        try:
            kind = await conn.fetchval(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'evaluation_metrics' AND column_name = 'f1'"
            )
        finally:
            await conn.close()
        assert kind == "double precision"
        with pytest.raises(InputError):
            EvaluationRow("r", "s", 1.5, 0.5, 0.5)
    finally:
        await reg.shutdown()


def test_config_section_loads_with_key_paths() -> None:
    cfg = load_dataclass(
        RegistryConfig, {"flush_interval": "250ms", "schema": {"window": "5m"}}, "registry"
    )
    assert cfg.flush_interval == 0.25 and cfg.schema.window == 300.0
    with pytest.raises(ConfigError, match=r"registry\.pool_min_size"):
        load_dataclass(RegistryConfig, {"pool_min_size": 5, "pool_max_size": 2}, "registry")
    with pytest.raises(ConfigError, match=r"registry\.dsn"):
        load_dataclass(RegistryConfig, {"dsn": "mysql://x"}, "registry")
    with pytest.raises(ConfigError, match=r"registry\.bogus: unknown key"):
        load_dataclass(RegistryConfig, {"bogus": 1}, "registry")
