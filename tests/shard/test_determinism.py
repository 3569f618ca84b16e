"""Shards give the anomalies a single process gives, for any number of workers.

A labelled scenario with several sources is replayed through the in-process `Pipeline` and
through 1, 2 and 3 real shard processes (`replay_sharded`): the same events, given by the same
requests (the coordinator's watermark moves the shards as the single engine's moves it), and
the scenario's injected anomalies are among them (so the comparison is not between empty lists).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from via_otlp.config import Config, parse_config
from via_otlp.model import AnomalyEvent
from via_otlp.pipeline import Pipeline
from via_otlp.replay import replay_sharded
from via_otlp.shard.wire import shard_of
from via_otlp.simulate.generate import generate
from via_otlp.simulate.scenario import parse_scenario

# Every shard closes every bucket, so the run is as short as finds all three kinds: 200 minutes
# (the silence needs 3 h of history to be a drop; at 130 minutes it is only a drift). The buckets
# are 30 s, not the default 10 s: a third of the closes (the run's cost, in each of the six shard
# runs and the single process), and the same three kinds found; what is compared (shards against
# one process) does not depend on the bucket's width. The requests are cut every 50 minutes, as
# the default chunking cut the 10 s buckets, so the watermark moves at the same times.
CHUNK_BUCKETS = 100  # 50 minutes of 30 s buckets a request: four requests
SCENARIO = """{
  name: "shards", seed: 7, duration: "200m", bucket: "30s",
  sources: [
    { service: "web", namespace: "shop", templates: [
        { name: "page", text: "Rendered page /{word} in {ms}ms", rate: 2 },
        { name: "err", text: "Internal error on /{word}: {hex}", rate: 0.05, severity: "ERROR" } ] },
    { service: "search", namespace: "shop", templates: [
        { name: "query", text: "Search for {word} returned {int} results", rate: 1.5 } ] },
    { service: "mailer", namespace: "shop", templates: [
        { name: "sent", text: "Mail {hex} sent to {user}", rate: 1, users: 5,
          attributes: { "user.id": "{user}" } } ] },
    { service: "billing", namespace: "bank", templates: [
        { name: "charge", text: "Charged card for order {int}", rate: 1 } ] },
    { service: "ledger", namespace: "bank", templates: [
        { name: "post", text: "Posted entry {int} to ledger", rate: 1 } ] },
  ],
  anomalies: [
    { kind: "spike", source: "web", template: "err", at: "2h", duration: "5m", factor: 80 },
    { kind: "silence", source: "search", at: "3h", duration: "10m" },
    { kind: "new_template", source: "billing", at: "150m", duration: "10m", severity: "ERROR",
      rate: 1, text: "Card processor timed out for order {int}" },
  ],
}"""


def config(tmp_path: Path, workers: int) -> Config:
    return parse_config(
        f"""{{pipeline: {{workers: {workers}}}, state: {{data_dir: "{tmp_path}"}},
             detect: {{warmup: "1h", bucket: "30s"}},
             registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )


def key(e: AnomalyEvent) -> tuple[object, ...]:
    return (e.time_ns, e.rhythm_hash, e.kind.value, e.state.value, e.started_ns, e.ended_ns,
            round(e.score, 9), e.observed, round(e.expected, 9), e.template, e.sample_trace_ids)  # fmt: skip


@pytest.mark.slow
def test_any_worker_count_gives_the_single_process_anomalies(tmp_path: Path) -> None:
    scenario = parse_scenario(SCENARIO)
    traffic = generate(scenario)
    requests = [g.request for g in traffic.requests(chunk=CHUNK_BUCKETS)]
    assert len(requests) == 4
    now_ns = scenario.start_ns + scenario.buckets * scenario.bucket_ns + 3600 * 10**9
    sources = {f"{s.namespace}/{s.service}" for s in scenario.sources}
    assert len({shard_of(k, 3) for k in sources}) > 1, "all sources on one shard: no test"

    # The single process's events as each request (then the end of the input) gave them.
    emitted: list[list[AnomalyEvent]] = []
    pipeline = Pipeline(config(tmp_path, 1), sink=lambda events: emitted[-1].extend(events))
    for request in requests:
        emitted.append([])
        pipeline.consume(pipeline.intake.process(pipeline.intake.prepare_request(request, now_ns)))
    emitted.append([])
    pipeline.finish()
    single = [e for part in emitted for e in part]
    expected = sorted(map(key, single))
    expected_parts = [sorted(map(key, part)) for part in emitted if part]
    assert len(expected_parts) > 1, "all events at once: no check of when they come"
    kinds = {(e.source.service_name, e.kind.value) for e in single}
    assert {("web", "spike"), ("search", "drop"), ("billing", "novelty")} <= kinds

    for workers in (1, 2, 3):
        parts: list[list[AnomalyEvent]] = []  # one per request that gave events, in order
        stats = asyncio.run(
            replay_sharded(config(tmp_path / str(workers), workers), requests, parts.append, now_ns)
        )
        assert stats.records_consumed == traffic.total_records
        assert sorted(key(e) for part in parts for e in part) == expected, f"{workers} workers"
        # ...and with the same request: the coordinator's watermark closed the shards' buckets
        # as the single engine's did (without it, they closed them all at the end).
        got_parts = [sorted(map(key, part)) for part in parts]
        assert got_parts == expected_parts, f"{workers} workers: events at other requests"
