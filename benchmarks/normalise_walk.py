"""Normalisation alone, with the compiled walker (`_wirewalk`) and without it, in one run.

CPU seconds per million records of `Normaliser.batches` on parsed 1,000-record requests, the
two paths in alternating rounds, so the ratio survives a noisy machine; and the protobuf parse
before it, for scale. Two shapes: the requests of benchmarks/intake.py (string bodies, as
e2e_grpc.py sends), and structured logs (a kvlist body per record, an int user id).

    python benchmarks/normalise_walk.py [--requests 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from intake import make_request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.receive import normalise
from via_otlp.receive.normalise import Normaliser
from via_otlp.receive.otlp_codec import decode_protobuf

NOW = 1_800_000_000 * 10**9


def seconds_per_million(payloads: list[bytes], walk: bool, repeat: int) -> float:
    """CPU seconds per million records of `batches` over `payloads`, `repeat` times."""
    parsed = [decode_protobuf(raw)[0] for raw in payloads]
    saved = normalise._walk
    normalise._walk = saved if walk else None
    try:
        n = Normaliser()
        t0 = time.process_time()
        for _ in range(repeat):
            for raw, message in zip(payloads, parsed, strict=True):
                for _batch in n.batches(message, NOW, raw, 16384, parsed_from_raw=True):
                    pass
        spent = time.process_time() - t0
    finally:
        normalise._walk = saved
    return spent * 1e6 / (repeat * len(payloads) * 1000)


def structured_request(rng: random.Random, n_records: int = 1000) -> bytes:
    """Structured logs: each body a kvlist (message, status, duration), user ids as ints."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "orders"
    sl = rl.scope_logs.add()
    for i in range(n_records):
        lr = sl.log_records.add(time_unix_nano=NOW + i, severity_number=9, severity_text="INFO")
        lr.trace_id = rng.randbytes(16)
        body = lr.body.kvlist_value.values
        body.add(key="msg").value.string_value = f"order {rng.randrange(10**6)} shipped"
        body.add(key="status").value.int_value = rng.choice([200, 201, 404])
        body.add(key="duration_ms").value.double_value = rng.random() * 100
        lr.attributes.add(key="user.id").value.int_value = rng.randrange(5000)
    return req.SerializeToString()


def parse_per_million(payloads: list[bytes], repeat: int) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        for raw in payloads:
            decode_protobuf(raw)
    return (time.process_time() - t0) * 1e6 / (repeat * len(payloads) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if normalise._walk is None:
        raise SystemExit("the walker is not built: pip install -e . (or setup.py build_ext -i)")
    rng = random.Random(7)
    print(f"{args.requests} requests x 1000 records, {args.rounds} alternating rounds (median)")
    for shape, make in (("intake.py requests", make_request), ("structured", structured_request)):
        payloads = [make(rng) for _ in range(args.requests)]
        python, walked = [], []
        for _ in range(args.rounds):
            python.append(seconds_per_million(payloads, False, args.repeat))
            walked.append(seconds_per_million(payloads, True, args.repeat))
        py, c = statistics.median(python), statistics.median(walked)
        parse = parse_per_million(payloads, args.repeat)
        print(f"{shape}: protobuf parse (before normalise) {parse:.3f} s/M")
        print(f"  normalise, Python path:      {py:.3f} s/M  {[round(x, 3) for x in python]}")
        print(f"  normalise, compiled walker:  {c:.3f} s/M  {[round(x, 3) for x in walked]}")
        print(f"  ratio Python / walker:       {py / c:.2f}x")


if __name__ == "__main__":
    main()
