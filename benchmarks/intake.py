"""Intake throughput: decode → LogBatch → templates → rhythm hash, on one core.

Prints records/s of the full intake path next to the bare decode-and-walk ceiling (parse the
protobuf and touch every field intake reads) measured in the same run, so the ratio survives a
noisy machine. Requests hold 1,000 realistic records (5 services, 40 message shapes, 4–6
attributes each, trace ids). Targets: >= 200,000 records/s and >= 0.35 of the ceiling.

    python benchmarks/intake.py [--requests 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import time

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.config import Config
from via_otlp.patterns import PatternStage
from via_otlp.receive.intake import Intake, RecordQueue
from via_otlp.receive.normalise import Normaliser

SERVICES = ["checkout", "frontend", "cart", "payments", "auth"]
SHAPES = [
    "GET /api/v1/items/{n} 200 {ms}ms",
    "POST /api/v1/orders/{n} 201 {ms}ms",
    "User {user} logged in from {ip}",
    "Payment declined for order {n}: insufficient funds",
    "Cache miss for key session:{hex}",
    "Connection to {ip}:5432 reset by peer after {ms} ms",
    "Retrying request {uuid} (attempt {k} of 5)",
    "Processed batch {n} with {k} items in {ms} ms",
]


def make_request(rng: random.Random, n_records: int = 1000) -> bytes:
    req = ExportLogsServiceRequest()
    now = time.time_ns()
    for service in SERVICES:
        rl = req.resource_logs.add()
        for key, value in (
            ("service.name", service),
            ("deployment.environment.name", "prod"),
            ("host.name", f"{service}-7f9c"),
        ):
            rl.resource.attributes.add(key=key).value.string_value = value
        sl = rl.scope_logs.add()
        sl.scope.name = "app.logger"
        for _ in range(n_records // len(SERVICES)):
            shape = rng.choice(SHAPES) + rng.choice(
                ["", " (region eu-west-1)", " [worker {k}]", " shard {k}", " v2"]
            )
            lr = sl.log_records.add()
            lr.time_unix_nano = now + rng.randrange(10**10)
            lr.severity_number = rng.choice([9, 9, 9, 13, 17])  # type: ignore[assignment,unused-ignore]
            lr.severity_text = {9: "INFO", 13: "WARN", 17: "ERROR"}[lr.severity_number]
            lr.body.string_value = shape.format(
                n=rng.randrange(10**6), ms=rng.randrange(2000), user=f"user{rng.randrange(5000)}",
                ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                hex=f"{rng.getrandbits(48):012x}", uuid=f"{rng.getrandbits(128):032x}", k=rng.randrange(8),
            )  # fmt: skip
            lr.trace_id = rng.randbytes(16)
            lr.span_id = rng.randbytes(8)
            lr.attributes.add(key="user.id").value.string_value = f"user{rng.randrange(5000)}"
            lr.attributes.add(key="http.status_code").value.int_value = 200
            lr.attributes.add(key="code.function").value.string_value = "handle"
            lr.attributes.add(key="thread.id").value.int_value = rng.randrange(64)
    return req.SerializeToString()


def ceiling(payloads: list[bytes]) -> int:
    """Parse and touch every field intake reads: the most any Python intake could do."""
    n = 0
    for data in payloads:
        req = ExportLogsServiceRequest.FromString(data)
        for rl in req.resource_logs:
            for kv in rl.resource.attributes:
                _ = kv.key, kv.value.string_value
            for sl in rl.scope_logs:
                _ = sl.scope.name
                for lr in sl.log_records:
                    _ = (lr.body.string_value, lr.severity_text, lr.severity_number, lr.time_unix_nano,
                         lr.trace_id, lr.span_id, lr.event_name)  # fmt: skip
                    for kv in lr.attributes:
                        _ = kv.key
                    n += 1
    return n


def full_intake(payloads: list[bytes], intake: Intake) -> int:
    n = 0
    for data in payloads:
        batch = intake.prepare_request(ExportLogsServiceRequest.FromString(data))
        batch = intake.process(batch)
        n += len(batch)
    return n


def best_rate(fn: object, payloads: list[bytes], repeat: int, *args: object) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        n = fn(payloads, *args)  # type: ignore[operator]
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(42)
    payloads = [make_request(rng) for _ in range(args.requests)]
    config = Config()
    intake = Intake(Normaliser(), PatternStage(config.patterns), RecordQueue(10**9))
    full_intake(payloads[:5], intake)  # warm caches as a running server has them
    base = best_rate(ceiling, payloads, args.repeat)
    full = best_rate(full_intake, payloads, args.repeat, intake)
    print(f"records per request: 1000, requests: {len(payloads)}, best of {args.repeat}")
    print(f"decode-and-walk ceiling : {base:>12,.0f} records/s")
    print(f"full intake (→ rhythm)  : {full:>12,.0f} records/s   target >= 200,000")
    print(f"ratio to ceiling        : {full / base:>12.2f}          target >= 0.35")


if __name__ == "__main__":
    main()
