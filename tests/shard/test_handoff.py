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

from collections.abc import Callable
from pathlib import Path

import asyncpg
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.registry.conftest import data_dir, db_dsn, fast_config, pg_server  # noqa: F401
from via_otlp.config import Config, parse_config
from via_otlp.model import AnomalyEvent
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.patterns.stage import TemplateInfo
from via_otlp.receive.otlp_codec import Encoding
from via_otlp.registry import Registry
from via_otlp.shard.pool import ShardPool
from via_otlp.simulate.generate import generate
from via_otlp.simulate.scenario import parse_scenario

SCENARIO = """{
  name: "handoff", seed: 11, duration: "4h",
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
             detect: {{warmup: "1h"}}, correlate: {{enabled: false}}}}"""
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
