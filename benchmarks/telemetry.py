"""Benchmark of a `/metrics` scrape at 100,000 profiles.

Builds the service's `App` with the pipeline in process (not started: no sockets, no registry,
no correlation), so the profiles are counted where the scrape runs (with shards the serving
process reads their cached counters, which costs the same at any number of profiles), fills its
engine with N profiles through the normal consume path, then times (a) `App.status()` alone and
(b) the whole scrape: status snapshot, metric families, Prometheus text. The status snapshot is
the baseline measured in the same run: the scrape's own cost is the difference.
Run: ``python benchmarks/telemetry.py [N]``. Target: scrape < 50 ms at 100,000 profiles.
"""

from __future__ import annotations

import sys
import time

from benchmarks.engine import make_batches
from via_otlp.app import App
from via_otlp.config import Config, PipelineConfig
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.registry.config import RegistryConfig


def best_of(fn, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    n_profiles = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    app = App(
        Config(
            registry=RegistryConfig(enabled=False),
            correlate=CorrelateConfig(enabled=False),
            pipeline=PipelineConfig(in_process=True),
        )
    )
    for batch in make_batches(max(10, n_profiles // 4000), 20_000, n_profiles, 0.1):
        app.pipeline.consume(batch)
    # every profile has at least one record: one batch with each rhythm hash once
    last = make_batches(1, n_profiles, n_profiles, 0.0, seed=2)[0]
    hashes = [f"{i:016x}" for i in range(n_profiles)]
    last.rhythm_hash, last.template_id = hashes, [h[-12:] for h in hashes]
    last.template = [f"template {i} <*>" for i in range(n_profiles)]
    app.pipeline.consume(last)
    profiles = app.pipeline.engine.stats().profiles
    body, _ = app.prometheus_metrics()
    status = best_of(app.status)
    scrape = best_of(app.prometheus_metrics)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(f"profiles: {profiles:,}   series: {series:,}   bytes: {len(body):,}")
    print(f"status snapshot (baseline): {status * 1000:7.2f} ms")
    print(f"/metrics scrape:            {scrape * 1000:7.2f} ms  (target < 50 ms)")


if __name__ == "__main__":
    main()
