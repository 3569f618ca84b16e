"""Qdrant for real: local on-disk mode (and a server when VIA_TEST_QDRANT_URL is set); the
correlation stage end to end with it; similarity search ranks an earlier recurrence first."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import CLIENT_TIMEOUT
from tests.correlate.conftest import ev, src, tid
from via_otlp.correlate.config import CorrelateConfig, QdrantConfig
from via_otlp.correlate.embeddings import HashingEmbedder
from via_otlp.correlate.service import Correlation, EpisodeNotFound
from via_otlp.correlate.store import EpisodePoint, StoreState, VectorStore, episode_payload
from via_otlp.errors import StartupError
from via_otlp.model import EpisodeState, IncidentEvent, IncidentEventKind

DAY = 86400
URL = os.environ.get("VIA_TEST_QDRANT_URL", "")
MODES = ["local"] + (["server"] if URL else [])


def qdrant_config(mode: str, tmp_path: Path) -> QdrantConfig:
    prefix = f"via_test_{tmp_path.name[-8:].replace('-', '_')}"
    return QdrantConfig(url=URL if mode == "server" else "", collection_prefix=prefix)


class Sink:
    def __init__(self) -> None:
        self.events: list[IncidentEvent] = []

    def submit_incidents(self, events: Sequence[IncidentEvent]) -> None:
        self.events += events

    def record_incident(self, event: IncidentEvent) -> bool:
        self.events.append(event)
        return True


@pytest.mark.parametrize("mode", MODES)
async def test_vector_store_upsert_search_filter_and_reopen(mode: str, tmp_path: Path) -> None:
    emb = HashingEmbedder(64)
    store = VectorStore(qdrant_config(mode, tmp_path), tmp_path, emb.space)
    await store.start()
    try:
        templates = ["disk full on <*>", "disk full on volume <*>", "user logged in"]
        for i, t in enumerate(templates):
            e = ev(f"e{i}", src("db"), t=i * 10, template=t)
            assert store.upsert(
                EpisodePoint(e.episode_id, emb.embed_one(t), episode_payload(e, f"inc{i}"))
            )
        assert store.set_payload(["e2"], {"incident_id": "inc0"})
        assert await store.flush(CLIENT_TIMEOUT)
        assert store.stats().upserted == 3 and store.stats().state is StoreState.OK
        hits = await store.search(emb.embed_one("disk full on <*>"), limit=3)
        assert [h.episode_id for h in hits][:2] == ["e0", "e1"] and hits[
            0
        ].similarity == pytest.approx(1.0, abs=1e-4)
        assert hits[2].incident_id == "inc0"
        hits = await store.search(
            emb.embed_one("disk full on <*>"),
            exclude_episode_ids=["e0"],
            exclude_incident_id="inc1",
        )
        assert [h.episode_id for h in hits] == ["e2"]
        vec = await store.get_vector("e1")
        assert vec is not None and float(
            vec @ emb.embed_one("disk full on volume <*>")
        ) == pytest.approx(1.0, abs=1e-4)
        assert await store.get_vector("nope") is None
    finally:
        await store.shutdown()
    await store.shutdown()  # idempotent
    if mode == "local":  # on disk: a new store sees the points
        again = VectorStore(qdrant_config(mode, tmp_path), tmp_path, emb.space)
        await again.start()
        try:
            assert await again.count() == 3
        finally:
            await again.shutdown()


async def test_shutdown_without_start_and_local_folder_in_use(tmp_path: Path) -> None:
    emb = HashingEmbedder(32)
    await VectorStore(QdrantConfig(), tmp_path, emb.space).shutdown()
    a = VectorStore(QdrantConfig(), tmp_path, emb.space)
    await a.start()
    try:
        with pytest.raises(StartupError, match="Qdrant"):
            await VectorStore(QdrantConfig(), tmp_path, emb.space).start()
    finally:
        await a.shutdown()


async def test_an_unreachable_server_degrades_and_waits(tmp_path: Path) -> None:
    emb = HashingEmbedder(32)
    store = VectorStore(
        QdrantConfig(url="http://127.0.0.1:9", timeout=1.0, retry_max_backoff=0.2),
        tmp_path,
        emb.space,
    )
    await store.start()
    try:
        assert store.stats().state is StoreState.DEGRADED
        e = ev("a", src("db"))
        assert store.upsert(EpisodePoint("a", emb.embed_one("x"), episode_payload(e, "")))
        assert not await store.flush(0.5)
        assert store.stats().queued == 1 and store.stats().failed == 0
    finally:
        await store.shutdown(0.5)


@pytest.mark.parametrize("mode", MODES)
async def test_correlation_stage_and_search_ranks_the_earlier_recurrence_first(
    mode: str, tmp_path: Path
) -> None:
    sink = Sink()
    config = CorrelateConfig(enabled=True, resolve_cooldown=0, qdrant=qdrant_config(mode, tmp_path))
    corr = Correlation(config, tmp_path, registry=sink, sink=sink)
    await corr.start()
    try:
        R = EpisodeState.RESOLVED
        fail = "connection pool exhausted on primary after <*> waiters"
        day1 = [
            ev("d1", src("db", "data"), template=fail, traces=(tid(1),)),
            ev(
                "c1",
                src("checkout", "shop"),
                t=10,
                template="payment query failed: upstream db timeout",
                traces=(tid(1),),
            ),
            ev("u1", src("web", "edge"), t=20, template="tls handshake failed for <*>"),
            ev("d1", src("db", "data"), t=300, state=R, started=0, template=fail, traces=(tid(1),)),
            ev(
                "c1",
                src("checkout", "shop"),
                t=300,
                state=R,
                started=10,
                template="payment query failed: upstream db timeout",
            ),
            ev(
                "u1",
                src("web", "edge"),
                t=300,
                state=R,
                started=20,
                template="tls handshake failed for <*>",
            ),
        ]
        corr.submit(day1)
        assert await corr.flush(CLIENT_TIMEOUT)
        corr.submit([ev("d2", src("db", "data"), t=DAY, template=fail, traces=(tid(99),))])
        assert await corr.flush(CLIENT_TIMEOUT)
        assert corr.store is not None and await corr.store.flush(CLIENT_TIMEOUT)
        a, b = corr.correlator.incident_of("d1"), corr.correlator.incident_of("c1")
        assert a == b and corr.correlator.incident_of("u1") not in (a, None)
        assert corr.correlator.incident_of("d2") not in (a, None)
        got = {e.kind for e in sink.events}
        assert {IncidentEventKind.OPENED, IncidentEventKind.RESOLVED} <= got
        result = await corr.search_similar(episode_id="d2", limit=3)
        assert result.episodes[0].episode_id == "d1" and result.episodes[0].similarity > 0.99
        assert result.incidents[0].incident_id == a
        text = await corr.search_similar("pool exhausted on primary", limit=2)
        assert text.episodes[0].episode_id in ("d1", "d2")
        with pytest.raises(EpisodeNotFound):
            await corr.search_similar(episode_id="missing")
        s = corr.stats()
        assert s.events_processed == 7 and s.store is not None and s.store.upserted >= 4
    finally:
        await corr.shutdown()
    await corr.shutdown()


async def test_correlation_shutdown_without_start(tmp_path: Path) -> None:
    corr = Correlation(CorrelateConfig(enabled=True), tmp_path)
    corr.submit([ev("a", src("db"))])
    await corr.shutdown()
    assert corr.stats().state == "stopped"
