"""A gap in event time: the CPU of the one `Engine.observe()` that follows it.

N profiles (default 20,000) each get a record every 10 s bucket for five minutes; then one
record arrives `--hours` later (default 24). Prints the CPU seconds of that observe(), the
buckets it closed, the events it returned and the profiles left (idle ones are evicted).
Target (issue #13): < 1 s for 24 h at 20,000 profiles: a gap longer than `detect.max_gap` is
skipped in one step. The same gap closed bucket by bucket (max_gap 0, the old way) is measured
in the same run over `--baseline-hours`, for comparison.

    python benchmarks/gap.py [--profiles 20000] [--hours 24] [--baseline-hours 1]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from machine import load_average

from via_otlp.detect import DetectConfig, Engine
from via_otlp.model import LogBatch, Source

S = 1_000_000_000
SRC = Source.from_attributes((("service.name", "checkout"),))


def batch(hashes: list[str], t_ns: int) -> LogBatch:
    """One record of each rhythm hash, all at `t_ns`."""
    k = len(hashes)
    return LogBatch(
        sources=[SRC], source_index=[0] * k, severity=["INFO"] * k, body=[""] * k,
        time_ns=[t_ns] * k, trace_id=[""] * k, unique_id=[""] * k,
        template_id=[f"T{h}" for h in hashes], template=[f"pattern {h}" for h in hashes],
        rhythm_hash=hashes,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument(
        "--baseline-hours", type=float, default=1.0,
        help="the same gap closed bucket by bucket (max_gap 0), the old way, for comparison",
    )  # fmt: skip
    args = parser.parse_args()
    print(load_average())
    for hours, max_gap in ((args.hours, None), (args.baseline_hours, 0.0)):
        took, closed, skipped, events, left = measure(args.profiles, hours, max_gap)
        how = "bucket by bucket (max_gap 0)" if max_gap == 0.0 else "default max_gap"
        print(
            f"{args.profiles:,} profiles, a {hours:g} h gap, {how}: observe() {took:.2f} s CPU, "
            f"{closed:,} buckets closed, {skipped:,} skipped, {events} events, "
            f"{left:,} profiles left" + ("   target < 1 s" if max_gap is None else "")
        )


def measure(profiles: int, hours: float, max_gap: float | None) -> tuple[float, int, int, int, int]:
    """CPU of the observe() after a gap of `hours`, and the buckets it closed and skipped."""
    config = DetectConfig(max_profiles=max(100_000, profiles))
    if max_gap is not None:
        config = replace(config, max_gap=max_gap)
    engine = Engine(config)
    t0 = 1_700_000_000 * S
    bucket_ns = int(config.bucket * S)
    hashes = [f"{i:016x}" for i in range(profiles)]
    warm = 30
    for b in range(warm):
        engine.observe(batch(hashes, t0 + b * bucket_ns))
    before = engine.stats()
    cpu = time.process_time()
    events = engine.observe(batch(hashes[:1], t0 + warm * bucket_ns + int(hours * 3600 * S)))
    took = time.process_time() - cpu
    after = engine.stats()
    return (
        took,
        after.buckets_closed - before.buckets_closed,
        after.buckets_skipped - before.buckets_skipped,
        len(events),
        after.profiles,
    )


if __name__ == "__main__":
    main()
