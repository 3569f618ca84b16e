"""Soak: minutes of steady overload, with the memory of every service process sampled.

Starts a real `via-otlp serve` (embedded PostgreSQL registry and correlation on, as shipped;
emit off), measures its rated load on this machine (records/s accepted and fully processed
while a client sends as fast as the server takes it), then offers `--factor` times that
(default 2x) for `--minutes`, paced, from a client in its own process. Requests the server
sheds (UNAVAILABLE + RetryInfo: memory admission) are counted, not retried: the offered load
stays what it is. Every 10 s the memory of all service processes is sampled: the serving
process, the shards (and a shard's forked snapshot writer, while it runs), the embedded
PostgreSQL and its backends (a daemon: not under the serving process). Memory is the
proportional set size (PSS): pages shared between processes (PostgreSQL's shared buffers, a
forked writer's copy-on-write pages) are counted once, not once per process as RSS would.

Prints the rated load, what was offered, accepted and shed, and the first, last and largest
sample after the warm-up (`--warm-minutes`, default 5: caches, templates and the requests in
flight at their working size; the sample at minute 1 is printed too); memory is flat when the
last sample is within 10 % of the first. One sample swings with the requests in flight, so it also
prints the medians of the first and last 3 minutes and the least-squares slope: a leak is a slope.

    nice -n 10 python benchmarks/soak.py [--minutes 30] [--factor 2] [--rate RECORDS_PER_S]
        [--warm-minutes 5] [--fast-path-bytes BYTES]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake import make_request
from machine import load_average
from shards import EXPORT, Server, descendants

RECORDS_PER_REQUEST = 1000
SAMPLE_EVERY = 10.0
QUEUE_MAX_RECORDS = 200_000  # the shipped default (benchmarks/shards.py raises it)
ROLES = ("serving", "shards", "postgres")


def pss(pid: int) -> int:
    """Proportional resident bytes of one process (its RSS where smaps_rollup is unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def memory(server: Server) -> dict[str, int]:
    """PSS of the serving process, of its shards (and their children), of PostgreSQL."""
    assert server.proc is not None
    pid = server.proc.pid
    out = {"serving": pss(pid), "shards": sum(pss(p) for p in descendants(pid)[1:])}
    try:
        postmaster = int((server.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        out["postgres"] = sum(pss(p) for p in descendants(postmaster))
    except (OSError, ValueError, IndexError):
        out["postgres"] = 0
    return out


def _client(
    port: int, rate: float, seconds: float, cap: int, out: Any, max_age: float = 5.0
) -> None:
    """Offer `rate` records/s (0: as fast as accepted) for `seconds`; counts outcomes.

    Payloads carry the current time: one of the 30 is rebuilt every `max_age / 30` seconds, so
    records are at most `max_age` old when sent, as a live sender's are (records older than
    `detect.allowed_lateness`, 10 s, are counted late and skip detection).
    """
    rng = random.Random(11)
    payloads = [make_request(rng, RECORDS_PER_REQUEST) for _ in range(30)]
    counts = {"sent": 0, "accepted": 0, "shed": 0, "failed": 0, "client_cap": 0}
    lock = threading.Lock()
    in_flight = threading.BoundedSemaphore(cap)

    def done(fut: grpc.Future) -> None:
        err = fut.exception()
        with lock:
            if err is None:
                counts["accepted"] += 1
            elif err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                counts["shed"] += 1
            else:
                counts["failed"] += 1
        in_flight.release()

    with grpc.insecure_channel(f"127.0.0.1:{port}", compression=grpc.Compression.Gzip) as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        start = time.perf_counter()
        rebuilt = start
        i = 0
        while (now := time.perf_counter()) - start < seconds:
            if now - rebuilt >= max_age / len(payloads):
                payloads[i % len(payloads)] = make_request(rng, RECORDS_PER_REQUEST)
                rebuilt = now
            if rate:
                due = start + i * RECORDS_PER_REQUEST / rate
                if due > now:
                    time.sleep(min(due - now, 0.2))
                    continue
                if not in_flight.acquire(blocking=False):  # the server is that far behind
                    counts["client_cap"] += 1
                    i += 1
                    continue
            else:
                in_flight.acquire()
            with lock:
                counts["sent"] += 1
            call.future(payloads[i % len(payloads)], timeout=60).add_done_callback(done)
            i += 1
        for _ in range(cap):  # wait for every answer
            in_flight.acquire()
    out.put(counts)


def offer(server: Server, rate: float, seconds: float, cap: int = 64, max_age: float = 5.0) -> Any:
    """Start the client process (at most `cap` requests in flight); returns it and its queue."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(
        target=_client, args=(server.grpc_port, rate, seconds, cap, results, max_age)
    )
    proc.start()
    return proc, results


def cache_bytes(server: Server) -> int:
    """The miner's fast-path caches, all shards (bounded by patterns.fast_path_bytes each)."""
    return int(server.status()["patterns"]["cache_bytes"])


def consumed(server: Server) -> int:
    return int(server.status()["intake"]["records_consumed"])


def rated_load(server: Server, seconds: float) -> float:
    """Records/s accepted and fully processed when the client sends as fast as it is taken."""
    before = consumed(server)
    t0 = time.perf_counter()
    proc, results = offer(server, 0, seconds, cap=4)  # as benchmarks/e2e_grpc.py
    counts = results.get()
    proc.join()
    target = before + counts["accepted"] * RECORDS_PER_REQUEST
    while consumed(server) < target:
        time.sleep(0.25)
    return counts["accepted"] * RECORDS_PER_REQUEST / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--factor", type=float, default=2.0, help="times the rated load")
    parser.add_argument("--rate", type=float, default=0.0, help="records/s; skips the rating")
    parser.add_argument("--rating-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=0, help="shards (0: one per core)")
    parser.add_argument("--warm-minutes", type=float, default=5.0)
    parser.add_argument("--payload-age", type=float, default=5.0,
                        help="seconds: the oldest a sent record's timestamp is (30 before 12-02)")  # fmt: skip
    parser.add_argument(
        "--fast-path-bytes", type=int, default=0,
        help="patterns.fast_path_bytes (default: as shipped, 8 MiB per shard; this traffic "
        "fills any bound for hours: every line differs, so a large cache is the growth)",
    )  # fmt: skip
    args = parser.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as another user when started by root
        server = Server(
            Path(tmp), args.workers, snapshot_interval="60s",
            extra={"registry": {"enabled": True}, "correlate": {"enabled": True},
                   "receive": {"queue_max_records": QUEUE_MAX_RECORDS},
                   **({"patterns": {"fast_path_bytes": args.fast_path_bytes}}
                      if args.fast_path_bytes else {})},
        )  # fmt: skip
        server.start()
        assert server.proc is not None
        try:
            idle = memory(server)
            rated = rated_load(server, args.rating_seconds)
            rate = args.rate or args.factor * rated
            print(f"cores: {os.cpu_count()} (shared), {load_average()}; "
                  f"rated load {rated:,.0f} records/s (accepted and processed, as fast as taken, "
                  f"{args.rating_seconds:.0f} s); offering {rate:,.0f} records/s for "
                  f"{args.minutes:g} min", flush=True)  # fmt: skip
            seconds = args.minutes * 60
            before = consumed(server)
            late_before = int(server.status()["detect"]["late_records"])
            proc, results = offer(server, rate, seconds, max_age=args.payload_age)
            t0 = time.perf_counter()
            samples: list[tuple[float, dict[str, int]]] = []
            while (t := time.perf_counter() - t0) < seconds:
                mem = memory(server)
                samples.append((t, mem))
                print(f"  {t / 60:5.1f} min  PSS {sum(mem.values()) / mib:7.0f} MiB ("
                      + ", ".join(f"{r} {mem[r] / mib:.0f}" for r in ROLES)
                      + f"; miner caches {cache_bytes(server) / mib:.0f})  load "
                      f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
                time.sleep(SAMPLE_EVERY)
            counts = results.get()
            proc.join()
            processed = consumed(server) - before
            late = int(server.status()["detect"]["late_records"]) - late_before
            final = memory(server)
        finally:
            server.stop()
    report(args, seconds, counts, processed, idle, samples, final)
    print(f"late (older than detect.allowed_lateness when their shard saw them: counted, not "
          f"analysed): {late / max(processed, 1):.1%} of the records processed")  # fmt: skip


# The median of 3 minutes of samples: one sample swings with the requests in flight.
TREND_WINDOW_S = 180.0


def trend(points: list[tuple[float, int]]) -> tuple[float, float, float]:
    """Medians of the first and last `TREND_WINDOW_S` of samples and the least-squares slope
    (bytes per second): a leak shows as a slope; the bytes of requests in flight only as scatter."""
    if len(points) < 3:
        return 0.0, 0.0, 0.0
    t0, t1 = points[0][0], points[-1][0]
    head = statistics.median(b for t, b in points if t <= t0 + TREND_WINDOW_S)
    tail = statistics.median(b for t, b in points if t >= t1 - TREND_WINDOW_S)
    mean_t = statistics.fmean(t for t, _ in points)
    mean_b = statistics.fmean(b for _, b in points)
    cov = sum((t - mean_t) * (b - mean_b) for t, b in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return float(head), float(tail), cov / var if var else 0.0


def report(
    args: argparse.Namespace,
    seconds: float,
    counts: dict[str, int],
    processed: int,
    idle: dict[str, int],
    samples: list[tuple[float, dict[str, int]]],
    final: dict[str, int],
) -> None:
    """The soak's figures: load offered and taken, memory first/last/max after the warm-up."""
    mib = 2**20
    warm_s = min(args.warm_minutes * 60, seconds / 2)
    warm = [m for t, m in samples if t >= warm_s] or [final]
    minute_one = next((m for t, m in samples if t >= 60), warm[0])
    first, last = sum(warm[0].values()), sum(warm[-1].values())
    peak = max(sum(m.values()) for m in warm)
    offered = counts["sent"] + counts["client_cap"]
    print(json.dumps(counts))
    print(f"offered {offered * RECORDS_PER_REQUEST / seconds:,.0f} records/s, accepted "
          f"{counts['accepted'] * RECORDS_PER_REQUEST / seconds:,.0f}/s, shed (UNAVAILABLE) "
          f"{counts['shed']} requests, failed {counts['failed']}, not sent (64 in flight) "
          f"{counts['client_cap']}; processed {processed / seconds:,.0f} records/s")  # fmt: skip
    print(f"PSS of all service processes (MiB): idle {sum(idle.values()) / mib:.0f}, minute 1 "
          f"{sum(minute_one.values()) / mib:.0f}; from minute {warm_s / 60:g}: first "
          f"{first / mib:.0f}, last {last / mib:.0f}, max {peak / mib:.0f}; after the load "
          f"{sum(final.values()) / mib:.0f}")  # fmt: skip
    for role in ROLES:
        print(f"  {role:<8} idle {idle[role] / mib:4.0f}, minute 1 {minute_one[role] / mib:4.0f}, "
              f"first {warm[0][role] / mib:4.0f}, last {warm[-1][role] / mib:4.0f}, max "
              f"{max(m[role] for m in warm) / mib:4.0f}")  # fmt: skip
    drift = (last - first) / first
    print(f"flat within 10 %: {'yes' if abs(drift) <= 0.10 else 'NO'} (last vs first {drift:+.1%}; "
          f"max vs first {(peak - first) / first:+.1%})")  # fmt: skip
    head, tail, slope = trend([(t, sum(m.values())) for t, m in samples if t >= warm_s])
    if head:
        print(f"trend after the warm-up: median of the first {TREND_WINDOW_S / 60:g} min "
              f"{head / mib:.0f} MiB, of the last {tail / mib:.0f} MiB ({(tail - head) / head:+.1%}); "
              f"least-squares slope {slope * 600 / mib:+.1f} MiB per 10 min "
              f"({slope * 600 / head:+.1%} of the first per 10 min)")  # fmt: skip
    print(load_average())


if __name__ == "__main__":
    main()
