"""A gap in event time: the CPU of the one `Engine.observe()` that follows it.

N profiles (default 20,000) each get a record every 10 s bucket for five minutes; then one
record arrives `--hours` later (default 24). Prints the CPU seconds of that observe(), the
buckets it closed, the events it returned and the profiles left (idle ones are evicted).
Target (issue #13): < 1 s for 24 h at 20,000 profiles, i.e. runs of empty buckets closed in
closed form, not one bucket at a time.

    python benchmarks/gap.py [--profiles 20000] [--hours 24]
"""

from __future__ import annotations

import argparse
import time

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
    args = parser.parse_args()
    config = DetectConfig(max_profiles=max(100_000, args.profiles))
    engine = Engine(config)
    t0 = 1_700_000_000 * S
    bucket_ns = int(config.bucket * S)
    hashes = [f"{i:016x}" for i in range(args.profiles)]
    warm = 30
    for b in range(warm):
        engine.observe(batch(hashes, t0 + b * bucket_ns))
    closed = engine.stats().buckets_closed
    cpu = time.process_time()
    events = engine.observe(batch(hashes[:1], t0 + warm * bucket_ns + int(args.hours * 3600 * S)))
    took = time.process_time() - cpu
    print(load_average())
    print(
        f"{args.profiles:,} profiles, a {args.hours:g} h gap: observe() {took:.2f} s CPU, "
        f"{engine.stats().buckets_closed - closed:,} buckets closed, {len(events)} events, "
        f"{engine.stats().profiles:,} profiles left   target < 1 s"
    )


if __name__ == "__main__":
    main()
