"""Benchmark of the detect engine alone on LogBatches (rhythm hashes already filled).

Prints records/s for a few batch shapes, each next to a ceiling measured in the same run on the
same batches (the bare numpy grouping of records by rhythm hash and bucket, see `Ceiling`) and
the ratio of the two, which is what to compare between runs on a shared machine; then the memory
per profile at 100,000 profiles (typical: few distinct ids; worst case: an open bucket with a
dense HyperLogLog per profile; both include the ring of recent buckets).
Run: ``python benchmarks/engine.py``. Numbers are for one core; the machine may be shared.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Sequence

import numpy as np

from via_otlp.detect import DetectConfig, Engine
from via_otlp.model import LogBatch, Source
from via_otlp.receive.normalise import HexIds

BUCKET_NS = 10_000_000_000


def make_batches(
    n_batches: int, size: int, n_profiles: int, uid_share: float, seed: int = 1, wire: bool = False
) -> list[LogBatch]:
    """Batches of `size` records spread over `n_profiles` patterns, 1 s of event time each;
    trace ids as strs, or with `wire` as the intake gives them (16 bytes each, `HexIds`)."""
    rng = np.random.default_rng(seed)
    sources = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(20)]
    hashes = [f"{i:016x}" for i in range(n_profiles)]
    weights = 1.0 / np.arange(1, n_profiles + 1)  # Zipf-like: a few loud patterns, a long tail
    weights /= weights.sum()
    out = []
    for k in range(n_batches):
        p = rng.choice(n_profiles, size=size, p=weights)
        t0 = k * 1_000_000_000
        times = (t0 + rng.integers(0, 1_000_000_000, size=size)).tolist()
        uids = [
            f"user{u}" if r < uid_share else ""
            for u, r in zip(
                rng.integers(0, 5000, size).tolist(), rng.random(size).tolist(), strict=True
            )
        ]
        tids: Sequence[str] = [f"{x:032x}" for x in rng.integers(0, 2**62, size=size).tolist()]
        if wire:
            tids = HexIds.packed(bytes.fromhex("".join(tids)), 16, size)
        pl = p.tolist()
        out.append(
            LogBatch(
                sources=sources,
                source_index=[i % 20 for i in pl],
                severity=["INFO"] * size,
                body=[""] * size,
                time_ns=times,
                trace_id=tids,  # type: ignore[arg-type]
                unique_id=uids,
                template_id=[hashes[i][-12:] for i in pl],
                template=[f"template {i} <*>" for i in pl],
                rhythm_hash=[hashes[i] for i in pl],
            )
        )
    return out


class Ceiling:
    """The bare grouping of the same batches: the least any engine must do per record.

    Rhythm hash → code (a dict look-up per record, as the engine's profile index), bucket of
    each record, and the count of every (code, bucket) group (one `np.unique`). The engine's
    rate divided by this one is a ratio that survives a shared, noisy machine.
    """

    def __init__(self, n_profiles: int) -> None:
        self.code = {f"{i:016x}": i for i in range(n_profiles)}

    def group(self, batch: LogBatch) -> int:
        n = len(batch)
        codes = np.fromiter(map(self.code.__getitem__, batch.rhythm_hash), np.int64, count=n)
        b = np.asarray(batch.time_ns, dtype=np.int64) // BUCKET_NS
        bmin = int(b.min())
        span = int(b.max()) - bmin + 1
        _, counts = np.unique(codes * span + (b - bmin), return_counts=True)
        return len(counts)


def throughput(
    label: str,
    size: int,
    n_profiles: int,
    uid_share: float,
    seconds: int = 300,
    wire: bool = False,
) -> None:
    """Engine and ceiling on the same batches, interleaved batch by batch (same noise)."""
    batches = make_batches(seconds, size, n_profiles, uid_share, wire=wire)
    eng = Engine(DetectConfig(warmup=60))
    ceiling = Ceiling(n_profiles)
    gc.collect()
    t_eng = t_ceil = 0.0
    events = 0
    for b in batches:
        t0 = time.perf_counter()
        ceiling.group(b)
        t1 = time.perf_counter()
        events += len(eng.observe(b))
        t_eng += time.perf_counter() - t1
        t_ceil += t1 - t0
    t0 = time.perf_counter()
    events += len(eng.flush())
    t_eng += time.perf_counter() - t0
    recs = size * len(batches)
    st = eng.stats()
    print(
        f"{label:<46} {recs / t_eng:>12,.0f} rec/s  ceiling {recs / t_ceil:>11,.0f} rec/s  "
        f"engine/ceiling {t_ceil / t_eng:.2f}  ({recs:,} records, {st.profiles:,} profiles, "
        f"{st.buckets_closed} buckets, {events} events, {t_eng:.2f}s)"
    )


def memory_batch(
    src: list[Source], ids: range, distinct_per_profile: int, traces: int = 0
) -> LogBatch:
    """A record per profile of `ids`, or one per distinct id or trace id: `traces` of them
    with their own trace id (lower hex, as the intake gives them), so that as many are held."""
    rows = [(i, j) for i in ids for j in range(max(1, distinct_per_profile, traces))]
    return LogBatch(
        sources=src,
        source_index=[i % 100 for i, _ in rows],
        severity=["INFO"] * len(rows),
        body=[""] * len(rows),
        time_ns=[1_000_000_000] * len(rows),
        trace_id=[f"{i:016x}{j:016x}" if j < traces else "" for i, j in rows],
        unique_id=[f"u{i}-{j}" if j < distinct_per_profile else "" for i, j in rows],
        template_id=[f"{i:012x}" for i, _ in rows],
        template=[f"GET /api/v1/orders/<*> returned <*> for user <*> ({i})" for i, _ in rows],
        rhythm_hash=[f"{i:016x}" for i, _ in rows],
    )


def memory(n_profiles: int, distinct_per_profile: int, label: str, traces: int = 0) -> None:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    eng = Engine(DetectConfig(max_profiles=n_profiles))
    src = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(100)]
    chunk = 10_000
    for lo in range(0, n_profiles, chunk):
        eng.observe(
            memory_batch(src, range(lo, min(n_profiles, lo + chunk)), distinct_per_profile, traces)
        )
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    eng.tick(3 * BUCKET_NS)  # close the bucket: its sketches go, the learned state stays
    gc.collect()
    settled = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(
        f"{label:<46} {used / n_profiles:>8,.0f} B/profile with the bucket open, "
        f"{settled / n_profiles:,.0f} B/profile after it closed ({n_profiles:,} profiles)"
    )


def main() -> None:
    print("detect engine benchmark (one core, shared machine: compare runs made together)")
    throughput("batch 8192, 1,000 profiles, no unique ids", 8192, 1_000, 0.0)
    throughput("batch 8192, 1,000 profiles, 50% unique ids", 8192, 1_000, 0.5)
    throughput("batch 1024, 1,000 profiles, no unique ids", 1024, 1_000, 0.0, seconds=1000)
    throughput("batch 8192, 20,000 profiles, no unique ids", 8192, 20_000, 0.0)
    throughput("  the same, trace ids as bytes (HexIds)", 8192, 20_000, 0.0, wire=True)
    memory(100_000, 0, "memory, typical (no unique ids)")
    memory(100_000, 3, "memory, typical (3 distinct ids each)")
    memory(100_000, 0, "memory, 5 trace ids each (as many held)", traces=5)
    memory(20_000, 200, "memory, worst (200 ids, dense sketches)")


if __name__ == "__main__":
    main()
