"""Benchmark: the cost of a bucket close when every pattern surges at once.

A close runs exact tail tests only for the patterns a cheap screen lets through; in a surge
(a traffic storm, a replayed backlog) every pattern is a candidate, so the per-candidate cost
decides whether the engine keeps up. The engine warms `--profiles` patterns at a steady Poisson
rate for `--warm` buckets (long enough for the lagged window dispersions to be ready: the
spike tests against the forecast, the lagged reference and the held level all run), then
multiplies every rate by `--factor` for 30 buckets. Prints the median and worst close of the
last calm hour and of the surge, and their ratio (a ratio survives a shared machine; compare
it between two trees, run one after the other).

Why it exists (#10): a per-candidate 16-node mixture of scalar tail calls (ee188c8) left calm
closes as they were (6.8 vs 6.9 ms) but made a x4 surge of 2,000 warm patterns 170 -> 469 ms a
close, median (this benchmark's defaults, idle machine, the two trees back to back); `benchmarks/engine.py`'s 300-s runs never have ready lags, so it
cannot show such a cost. Run the base tree and yours one after the other on a quiet machine (or
at the same `nice`): load confounds a single run badly.
Run: ``python benchmarks/surge.py [--profiles 2000] [--warm 720] [--factor 4]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from via_otlp.detect import DetectConfig, Engine
from via_otlp.model import LogBatch, Source

BUCKET_NS = 10_000_000_000
RATE = 3.0  # records a 10-s bucket per pattern
SURGE_BUCKETS = 30


def bucket_batch(
    rng: np.random.Generator, k: int, n: int, factor: float, sources: list[Source]
) -> LogBatch:
    """Bucket `k`'s records: a Poisson count at `RATE` × `factor` for each of `n` patterns."""
    p = np.repeat(np.arange(n), rng.poisson(RATE * factor, size=n)).tolist()
    size = len(p)
    times = (k * BUCKET_NS + rng.integers(0, BUCKET_NS, size=size)).tolist()
    hashes = [f"{i:016x}" for i in p]
    return LogBatch(
        sources=sources,
        source_index=[i % len(sources) for i in p],
        severity=["INFO"] * size,
        body=[""] * size,
        time_ns=times,
        trace_id=[""] * size,
        unique_id=[""] * size,
        template_id=[h[-12:] for h in hashes],
        template=[f"template {i} <*>" for i in p],
        rhythm_hash=hashes,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=2000, help="patterns (default 2000)")
    ap.add_argument("--warm", type=int, default=720, help="calm buckets first (default 720: 2 h)")
    ap.add_argument("--factor", type=float, default=4.0, help="the surge's rate factor (default 4)")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    sources = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(20)]
    eng = Engine(DetectConfig(warmup=60))
    calm: list[float] = []
    surge: list[float] = []
    events = 0
    for k in range(args.warm + SURGE_BUCKETS + 1):
        in_surge = args.warm <= k < args.warm + SURGE_BUCKETS
        batch = bucket_batch(rng, k, args.profiles, args.factor if in_surge else 1.0, sources)
        t0 = time.perf_counter()
        events += len(eng.observe(batch))  # (a close of bucket k-1 happens inside)
        dt = time.perf_counter() - t0
        if in_surge:
            surge.append(dt)
        elif args.warm - 360 <= k < args.warm:
            calm.append(dt)
        if k % 120 == 0:
            print(f"  bucket {k}/{args.warm + SURGE_BUCKETS}", flush=True)
    c, s = float(np.median(calm)), float(np.median(surge))
    print(
        f"{args.profiles:,} patterns: calm close median {c * 1e3:.1f} ms (worst {max(calm) * 1e3:.1f}); "
        f"x{args.factor:g} surge median {s * 1e3:.1f} ms (worst {max(surge) * 1e3:.1f}); "
        f"surge/calm {s / c:.1f}; {events} events"
    )


if __name__ == "__main__":
    main()
