"""A cascading-failure day in miniature, as OTLP requests, with the true incident of every source.

Seven services log INFO traffic for 40 minutes (event time). Then:
- incident "db": `db` fails; its callers `checkout` and `cart` log errors for the same requests
  (same trace ids); `checkout -> db` and `cart -> db` are configured dependencies;
- incident "mail": at the same time `mailer` (unrelated, another namespace) has its own problem;
- incident "index": ten minutes later `index` fails and `search` logs errors with shared trace ids,
  with no configured dependency and different namespaces: only the trace ids link them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000
MIN = 60 * S

SERVICES = {  # name -> namespace
    "db": "data",
    "checkout": "shop",
    "cart": "shop",
    "mailer": "comms",
    "index": "data2",
    "search": "discovery",
    "web": "edge",
}
DEPENDENCIES = ("checkout -> db", "cart -> db")
FAIL_DB = T0 + 40 * MIN
FAIL_INDEX = T0 + 50 * MIN
FAIL_FOR = 3 * MIN
END = T0 + 62 * MIN


@dataclass
class Rec:
    service: str
    t: int
    severity: str
    body: str
    trace: str = ""


def _traffic(seed: int = 7) -> list[Rec]:
    rng = random.Random(seed)
    recs: list[Rec] = []
    t = T0
    step = S // 2
    n = 0
    while t < END:
        for svc in SERVICES:
            if rng.random() < 0.9:
                recs.append(
                    Rec(
                        svc,
                        t + rng.randrange(step),
                        "INFO",
                        f"{svc} handled request {rng.randrange(10**6)} in {rng.randrange(1, 90)} ms",
                    )
                )
        if FAIL_DB <= t < FAIL_DB + FAIL_FOR:
            for _ in range(4):
                n += 1
                tid = f"{n:032x}"
                tt = t + rng.randrange(step)
                recs.append(
                    Rec(
                        "db",
                        tt,
                        "ERROR",
                        f"connection pool exhausted on primary after {rng.randrange(100, 999)} waiters",
                        tid,
                    )
                )
                caller = "checkout" if n % 2 else "cart"
                what = "payment query" if caller == "checkout" else "cart lookup"
                recs.append(
                    Rec(
                        caller,
                        tt + 1000,
                        "ERROR",
                        f"{what} failed: upstream db timeout after {rng.randrange(1000, 5000)} ms",
                        tid,
                    )
                )
            if rng.random() < 0.8:
                recs.append(
                    Rec(
                        "mailer",
                        t + rng.randrange(step),
                        "WARN",
                        f"smtp relay rejected message {rng.randrange(10**6)}: mailbox quota",
                    )
                )
        if FAIL_INDEX <= t < FAIL_INDEX + FAIL_FOR:
            for _ in range(3):
                n += 1
                tid = f"{n:032x}"
                tt = t + rng.randrange(step)
                recs.append(
                    Rec(
                        "index",
                        tt,
                        "ERROR",
                        f"shard {rng.randrange(8)} unavailable: segment merge stalled",
                        tid,
                    )
                )
                recs.append(
                    Rec(
                        "search",
                        tt + 1000,
                        "ERROR",
                        f"query failed: backend returned {rng.choice([502, 503])}",
                        tid,
                    )
                )
        t += step
    recs.sort(key=lambda r: r.t)
    return recs


def _kv(k: str, v: str) -> KeyValue:
    return KeyValue(key=k, value=AnyValue(string_value=v))


def requests(window_ns: int = 10 * S) -> Iterator[ExportLogsServiceRequest]:
    """The traffic as OTLP requests, one per `window_ns` of event time."""
    recs = _traffic()
    i = 0
    while i < len(recs):
        start = recs[i].t - recs[i].t % window_ns
        by_service: dict[str, list[LogRecord]] = {}
        while i < len(recs) and recs[i].t < start + window_ns:
            r = recs[i]
            lr = LogRecord(
                time_unix_nano=r.t, severity_text=r.severity, body=AnyValue(string_value=r.body)
            )
            if r.trace:
                lr.trace_id = bytes.fromhex(r.trace)
            by_service.setdefault(r.service, []).append(lr)
            i += 1
        req = ExportLogsServiceRequest()
        for svc, logs in by_service.items():
            res = Resource(
                attributes=[
                    _kv("service.namespace", SERVICES[svc]),
                    _kv("service.name", svc),
                    _kv("deployment.environment.name", "prod"),
                ]
            )
            req.resource_logs.append(
                ResourceLogs(resource=res, scope_logs=[ScopeLogs(log_records=logs)])
            )
        yield req


def true_incident(service: str, started_ns: int) -> str | None:
    """The true incident of an episode, or None when it is not part of an injected failure."""
    if (
        service in ("db", "checkout", "cart")
        and FAIL_DB - 2 * MIN <= started_ns <= FAIL_DB + FAIL_FOR + 5 * MIN
    ):
        return "db"
    if service == "mailer" and FAIL_DB - 2 * MIN <= started_ns <= FAIL_DB + FAIL_FOR + 5 * MIN:
        return "mail"
    if (
        service in ("index", "search")
        and FAIL_INDEX - 2 * MIN <= started_ns <= FAIL_INDEX + FAIL_FOR + 5 * MIN
    ):
        return "index"
    return None
