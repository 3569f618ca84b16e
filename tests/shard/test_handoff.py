"""A service that moves to another instance keeps its learned state (through the registry).

Two instances (shard pools) share one real PostgreSQL registry; a small router sends each
service's records to one of them, as the Collector's `loadbalancing` exporter does with
`routing_key: service`. Half-way, one service moves: the new owner loads its state from the
registry (no new warm-up, no novelty storm) and the old owner forgets it (its silence there is
no anomaly). The anomalies are those of the same traffic without the move: none extra.

Both runs go through the same two instances at once: the traffic that stays, and a twin of it
under services of their own (`TWIN`) whose billing moves. Sources share nothing in a shard, so
each run gets what it gets alone, and the instances close each bucket once for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import CLIENT_TIMEOUT
from tests.registry.conftest import data_dir, db_dsn, fast_config, pg_server  # noqa: F401
from tests.shard.test_failures import _first_held, until
from tests.shard.test_route import NOW, request, service_on
from via_otlp.config import Config, parse_config
from via_otlp.model import AnomalyEvent
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.patterns.stage import TemplateInfo
from via_otlp.receive.intake import QueueFullError
from via_otlp.receive.otlp_codec import Encoding
from via_otlp.registry import Registry
from via_otlp.shard import pool as pool_module
from via_otlp.shard.pool import ShardPool
from via_otlp.simulate.generate import generate
from via_otlp.simulate.scenario import parse_scenario

# 30 s buckets, not the default 10 s: each shard closes every bucket, and the closes are most of
# the run's cost (a third of them here). The times that matter are clock times (the 3 h of history
# that make the old owner's silence a drop, the move 13 minutes before the spike within the warm-up),
# so they stay; a source's records per bucket stay as they were.
SCENARIO = """{
  name: "handoff", seed: 11, duration: "4h", bucket: "30s",
  sources: [
    { service: "web", templates: [ { name: "page", text: "Rendered page /{word} in {ms}ms", rate: 2 } ] },
    { service: "search", templates: [ { name: "q", text: "Search for {word} returned {int} results", rate: 1.5 } ] },
    { service: "billing", templates: [
        { name: "charge", text: "Charged card for order {int}", rate: 1 },
        { name: "refund", text: "Refunded order {int} to card", rate: 0.3 } ] },
    { service: "ledger", templates: [ { name: "post", text: "Posted entry {int} to ledger", rate: 1 } ] },
  ],
  anomalies: [
    { kind: "spike", source: "billing", template: "charge", at: "205m", duration: "5m", factor: 30 },
    { kind: "spike", source: "web", template: "page", at: "220m", duration: "5m", factor: 20 },
  ],
}"""
MOVES = "billing"
TWIN = "-twin"  # the suffix of the services of the run in which MOVES moves
MOVE_AT = 0.8  # of the requests: 13 minutes before the billing spike, within a warm-up


def config(tmp: Path, name: str) -> Config:
    return parse_config(
        f"""{{pipeline: {{workers: 2}}, state: {{data_dir: "{tmp / name}"}},
             detect: {{warmup: "1h", bucket: "30s"}}, correlate: {{enabled: false}}}}"""
    )


def by_service(request: ExportLogsServiceRequest) -> dict[str, ExportLogsServiceRequest]:
    out: dict[str, ExportLogsServiceRequest] = {}
    for rl in request.resource_logs:
        name = next(
            kv.value.string_value for kv in rl.resource.attributes if kv.key == "service.name"
        )
        out.setdefault(name, ExportLogsServiceRequest()).resource_logs.append(rl)
    return out


def twinned(request: ExportLogsServiceRequest) -> ExportLogsServiceRequest:
    """`request` and a copy of its records under the twin services (`TWIN`)."""
    out = ExportLogsServiceRequest()
    out.CopyFrom(request)
    for rl in request.resource_logs:
        twin = out.resource_logs.add()
        twin.CopyFrom(rl)
        for kv in twin.resource.attributes:
            if kv.key == "service.name":
                kv.value.string_value += TWIN
    return out


def key(e: AnomalyEvent) -> tuple[object, ...]:
    """An event of either run as the run that stays would have it (its own service's rhythm)."""
    rh = rhythm_hash(e.source.key.replace(TWIN, "", 1), e.severity, e.template_id)
    return (e.source.service_name.removesuffix(TWIN), e.kind.value, e.state.value, rh, e.started_ns)


async def run(
    tmp: Path,
    dsn: str,
    route: Callable[[str, bool], str],
    requests: list[ExportLogsServiceRequest],
    now_ns: int,
) -> tuple[list[AnomalyEvent], dict[str, ShardPool], dict[str, list[TemplateInfo]]]:
    registry = Registry(fast_config(dsn), tmp / "registry")
    await registry.start()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM source_state")  # each run starts with nothing shared
    finally:
        await conn.close()
    events: list[AnomalyEvent] = []
    templates: dict[str, list[TemplateInfo]] = {}
    pools = {
        name: ShardPool(config(tmp, name), events.extend, ordered=True, persist=False,
                        store=registry, instance=name)
        for name in ("a", "b")
    }  # fmt: skip
    try:
        for pool in pools.values():
            await pool.start()
        moved = False
        for i, request in enumerate(requests):
            if not moved and i >= len(requests) * MOVE_AT:
                moved = True
                # The old owner's periodic copy to the registry (`state.share_interval`).
                await pools["a"].wait_idle()
                assert await pools["a"].share() > 0
            for service, part in by_service(request).items():
                pool = pools[route(service, moved)]
                await pool.submit_payload(
                    part.SerializeToString(), Encoding.PROTOBUF, wait=True, now_ns=now_ns
                )
            if moved and i == int(len(requests) * MOVE_AT) + 5:
                await pools["b"].wait_idle()
                await pools["a"].share()  # the old owner sees the claim and forgets the service
        for name, pool in pools.items():
            await pool.flush()
            templates[name] = await pool.templates()
    finally:
        for pool in pools.values():
            await pool.stop()
        await registry.shutdown()
    return events, pools, templates


async def test_a_service_that_moves_keeps_its_state_and_adds_no_anomaly(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
) -> None:
    scenario = parse_scenario(SCENARIO)
    traffic = generate(scenario)
    # One bucket per request, as a Collector batches a live stream (the router splits them
    # by service, and each part moves the watermark).
    traffic.chunk_buckets = lambda: 1  # type: ignore[method-assign]
    requests = [g.request for g in traffic.requests()]
    now_ns = scenario.start_ns + scenario.buckets * scenario.bucket_ns + 3600 * 10**9
    home = {"web": "a", "billing": "a", "search": "b", "ledger": "b"}

    def route(service: str, moved: bool) -> str:
        return "b" if (moved and service == MOVES + TWIN) else home[service.removesuffix(TWIN)]

    events, pools, templates = await run(
        tmp_path, db_dsn, route, [twinned(r) for r in requests], now_ns
    )
    assert all(
        rhythm_hash(e.source.key, e.severity, e.template_id) == e.rhythm_hash for e in events
    )
    still = [key(e) for e in events if not e.source.service_name.endswith(TWIN)]
    moved_events = [key(e) for e in events if e.source.service_name.endswith(TWIN)]
    assert ("billing", "spike", "open") in {k[:3] for k in still}, sorted(still)
    extra = sorted(set(moved_events) - set(still))
    missing = sorted(set(still) - set(moved_events))
    assert not extra, f"anomalies only because {MOVES} moved: {extra}"
    assert not missing, f"anomalies lost because {MOVES} moved: {missing}"
    assert pools["b"].sources_taken_over == 1
    assert pools["a"].sources_forgotten == 1

    # The new owner kept the old one's templates (ids, texts, counts of all the traffic, before
    # the move too): re-mined from scratch, they would count only what came after it.
    def mined(name: str, service: str) -> list[tuple[str, str, int]]:
        return sorted((t.template_id, t.template, t.count)
                      for t in templates[name] if t.source_key.partition("@")[0] == service)  # fmt: skip

    assert mined("a", MOVES) and mined("b", MOVES + TWIN) == mined("a", MOVES)
    assert mined("a", MOVES + TWIN) == []


async def test_serve_copies_its_sources_to_the_registry_at_shutdown(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
) -> None:
    from tests.conftest import free_port
    from via_otlp.app import App

    config = parse_config(
        f"""{{receive: {{grpc: {{endpoint: "127.0.0.1:{free_port()}"}},
                        http: {{endpoint: "127.0.0.1:{free_port()}"}}}},
             pipeline: {{workers: 1}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{dsn: "{db_dsn}"}}, control: {{enabled: false}},
             correlate: {{enabled: false}}}}"""
    )
    app = App(config)
    await app.start()
    try:
        request = ExportLogsServiceRequest()
        for service in ("alpha", "beta"):
            rl = request.resource_logs.add()
            rl.resource.attributes.add(key="service.name").value.string_value = service
            rl.scope_logs.add().log_records.add().body.string_value = f"{service} started"
        assert app.pool is not None
        await app.pool.submit_payload(request.SerializeToString(), Encoding.PROTOBUF)
        await app.pool.wait_idle()
    finally:
        await app.shutdown()
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT source_key, instance, length(snapshot) AS n FROM source_state"
        )
    finally:
        await conn.close()
    assert sorted(r["source_key"] for r in rows) == ["alpha", "beta"]
    assert all(r["n"] > 0 for r in rows)


async def _took_over_later(
    tmp: Path, registry: Registry, service: str, pools: list[ShardPool]
) -> ShardPool:
    """Instance b, started, after instance a learnt 5 records of `service` and shared them."""
    for name in ("a", "b"):
        pools.append(ShardPool(config(tmp, name), lambda e: None, persist=False,
                               store=registry, instance=name))  # fmt: skip
        await pools[-1].start()
    a = pools[0]
    await a.submit_payload(request({service: 5}), Encoding.PROTOBUF, now_ns=NOW)
    await a.wait_idle()
    assert await a.share() == 1
    await a.stop()
    return pools[1]


async def test_a_source_whose_shard_is_down_is_taken_over_once_its_batch_is_resent(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Instance b gets a source instance a shared, while the shard that owns it in b is down
    (restarting, held before READY). The request, decoded by the other shard, is answered
    "retry"; resent once the owner is READY, the owner imports the shared state: the source's
    template counts a's records too. (Before: the IMPORT went to the down shard and was
    dropped, yet the source was marked known, so the resend was learnt from scratch: 3, not
    5 + 3.)"""
    service = service_on(0)
    registry = Registry(fast_config(db_dsn), tmp_path / "registry")
    await registry.start()
    spawned: list[int] = []
    pools: list[ShardPool] = []
    try:
        b = await _took_over_later(tmp_path, registry, service, pools)
        monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
        reader = b._shards[0].reader
        os.kill(b.status()[0].pid, signal.SIGKILL)
        await until(lambda: b._shards[0].reader not in (reader, None))  # restart not READY
        assert b.status()[0].down
        # JSON: not routed, so shard 1 decodes it whole, and its batch has records for 0.
        resend = MessageToJson(ExportLogsServiceRequest.FromString(request({service: 3})))
        with pytest.raises(QueueFullError):
            await asyncio.wait_for(
                b.submit_payload(resend.encode(), Encoding.JSON, now_ns=NOW), CLIENT_TIMEOUT
            )
        os.kill(spawned[0], signal.SIGCONT)
        await until(lambda: not b.status()[0].down)
        answer = await asyncio.wait_for(
            b.submit_payload(resend.encode(), Encoding.JSON, now_ns=NOW), CLIENT_TIMEOUT
        )
        await asyncio.wait_for(b.wait_idle(), CLIENT_TIMEOUT)
        counts = [t.count for t in await b.templates() if t.source_key.startswith(service)]
    finally:
        for pid in spawned:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pool in pools:
            await pool.stop()
        await registry.shutdown()
    assert answer == 3
    assert sum(counts) == 5 + 3, counts
    assert b.sources_taken_over == 1


async def test_a_source_imported_into_a_shard_that_died_is_imported_again_after_its_restart(
    tmp_path: Path,
    db_dsn: str,  # noqa: F811
) -> None:
    """Instance b takes over a source a shared; its owner in b, held still, is sent the IMPORT
    and the batch, and is killed before it reads them (the batch counts lost). After the
    restart, the source's next request imports the shared state again: its template counts
    a's records too. (Before: the source stayed known, and the restarted shard learnt it from
    scratch: 2, not 5 + 2.)"""
    service = service_on(0)
    registry = Registry(fast_config(db_dsn), tmp_path / "registry")
    await registry.start()
    pools: list[ShardPool] = []
    try:
        b = await _took_over_later(tmp_path, registry, service, pools)
        pid = b.status()[0].pid
        os.kill(pid, signal.SIGSTOP)
        # Shard 0 has a request to decode (it never will: answered "retry" once it dies), so
        # the JSON one, not routed, goes to shard 1, which hands shard 0 its IMPORT and batch.
        busy = asyncio.ensure_future(
            b.submit_payload(request({service_on(0, prefix="busy"): 1}), Encoding.PROTOBUF)
        )
        await until(lambda: b.status()[0].decoding_bytes > 0)
        first = MessageToJson(ExportLogsServiceRequest.FromString(request({service: 3})))
        took = b.submit_payload(first.encode(), Encoding.JSON, now_ns=NOW)
        assert await asyncio.wait_for(took, CLIENT_TIMEOUT) == 3
        os.kill(pid, signal.SIGKILL)
        await until(lambda: b.status()[0].restarts == 1 and not b.status()[0].down)
        with pytest.raises(QueueFullError):
            await asyncio.wait_for(busy, CLIENT_TIMEOUT)
        answer = await asyncio.wait_for(
            b.submit_payload(request({service: 2}), Encoding.PROTOBUF, now_ns=NOW),
            CLIENT_TIMEOUT,
        )
        await asyncio.wait_for(b.wait_idle(), CLIENT_TIMEOUT)
        counts = [t.count for t in await b.templates() if t.source_key.startswith(service)]
    finally:
        for s in pools[-1].status() if pools else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, signal.SIGCONT)
        for pool in pools:
            await pool.stop()
        await registry.shutdown()
    assert (answer, b.lost_records) == (2, 3)
    assert sum(counts) == 5 + 2, counts
