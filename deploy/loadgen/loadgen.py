"""Load generator of the demo stack: a small shop's logs over OTLP/HTTP, with an incident.

Five services log at their own steady rates (with a daily-ish wobble and Poisson noise): HTTP
access lines, logins with user ids, cache misses, payment authorisations, background jobs, each
with trace ids. The timeline starts `--backfill` seconds in the past and is sent as fast as the
receiver takes it (so baselines are learned at once), then follows the wall clock. At
`--incident-after` seconds past "now" (negative: inside the backfill) the payment gateway starts
timing out for `--incident-duration` seconds: `payments` logs a new ERROR pattern, `checkout`
errors spike, authorisations drop, and many distinct users hit the failure.

    python loadgen.py --endpoint http://collector:4318 --backfill 3600 --incident-after 300

Needs only `opentelemetry-proto` (in the via-otlp image) and the standard library.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

SECOND = 1_000_000_000
SEVERITY = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}


@dataclass(frozen=True)
class Pattern:
    """One kind of line of one service: its rate per second and how to write it."""

    service: str
    severity: str
    rate: float
    text: Callable[[random.Random], str]
    user: bool = False


def _ip(r: random.Random) -> str:
    return f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


NORMAL = [
    Pattern("frontend", "INFO", 12.0, lambda r: f"GET /products/{r.randrange(5000)} 200 {r.randrange(5, 90)}ms"),
    Pattern("frontend", "INFO", 4.0, lambda r: f"GET /cart 200 {r.randrange(8, 60)}ms"),
    Pattern("frontend", "WARN", 0.3, lambda r: f"slow response GET /search?q=item{r.randrange(900)} {r.randrange(900, 3000)}ms"),
    Pattern("auth", "INFO", 3.0, lambda r: f"user u{r.randrange(20000)} logged in from {_ip(r)}", user=True),
    Pattern("auth", "INFO", 0.8, lambda r: f"session s{r.getrandbits(40):010x} expired"),
    Pattern("cart", "INFO", 5.0, lambda r: f"cart {r.getrandbits(32):08x} updated: {r.randrange(1, 9)} items"),
    Pattern("cart", "DEBUG", 2.0, lambda r: f"cache miss for key cart:{r.getrandbits(32):08x}"),
    Pattern("checkout", "INFO", 1.5, lambda r: f"order {r.randrange(10**6)} placed total {r.randrange(500, 90000) / 100:.2f} EUR", user=True),
    Pattern("checkout", "ERROR", 0.05, lambda r: f"order {r.randrange(10**6)} failed: address validation rejected"),
    Pattern("payments", "INFO", 1.5, lambda r: f"payment authorised for order {r.randrange(10**6)} via card", user=True),
    Pattern("payments", "INFO", 0.2, lambda r: f"refund issued for order {r.randrange(10**6)}"),
    Pattern("jobs", "INFO", 1 / 60, lambda r: f"nightly export finished in {r.randrange(20, 90)}s"),
]  # fmt: skip
INCIDENT = [
    Pattern("payments", "ERROR", 4.0, lambda r: f"payment gateway timeout after {r.randrange(5000, 9000)}ms for order {r.randrange(10**6)}", user=True),
    Pattern("checkout", "ERROR", 3.0, lambda r: f"order {r.randrange(10**6)} failed: payment service unavailable", user=True),
]  # fmt: skip


def _poisson(r: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


def second_of_logs(
    r: random.Random, t_ns: int, in_incident: bool
) -> Iterator[tuple[Pattern, int, str]]:
    """(pattern, time, body) of every record of the second starting at `t_ns`."""
    hour = (t_ns // SECOND) % 86_400 / 3600
    wobble = 1.0 + 0.3 * math.sin(2 * math.pi * hour / 24)
    for p in NORMAL:
        rate = p.rate * wobble
        if in_incident and p.service == "payments" and p.severity == "INFO":
            rate *= 0.1  # authorisations stop going through
        for _ in range(_poisson(r, rate)):
            yield p, t_ns + r.randrange(SECOND), p.text(r)
    if in_incident:
        for p in INCIDENT:
            for _ in range(_poisson(r, p.rate)):
                yield p, t_ns + r.randrange(SECOND), p.text(r)


def build_request(records: list[tuple[Pattern, int, str]], r: random.Random) -> bytes:
    req = ExportLogsServiceRequest()
    by_service: dict[str, object] = {}
    for p, t, body in sorted(records, key=lambda x: x[1]):
        sl = by_service.get(p.service)
        if sl is None:
            rl = req.resource_logs.add()
            for key, value in (("service.name", p.service), ("service.namespace", "shop"),
                               ("deployment.environment.name", "demo")):  # fmt: skip
                rl.resource.attributes.add(key=key).value.string_value = value
            sl = by_service[p.service] = rl.scope_logs.add()
            sl.scope.name = "shop.logging"  # type: ignore[attr-defined]
        lr = sl.log_records.add()  # type: ignore[attr-defined]
        lr.time_unix_nano = t
        lr.observed_time_unix_nano = t
        lr.severity_text = p.severity
        lr.severity_number = SEVERITY[p.severity]
        lr.body.string_value = body
        lr.trace_id = r.randbytes(16)
        lr.span_id = r.randbytes(8)
        if p.user:
            lr.attributes.add(key="enduser.id").value.string_value = f"u{r.randrange(20000)}"
    return req.SerializeToString()


def post(endpoint: str, payload: bytes, timeout: float = 10.0) -> None:
    """POST one request to OTLP/HTTP, retrying what the receiver asks to retry."""
    url = endpoint.rstrip("/") + "/v1/logs"
    body = gzip.compress(payload)
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    for attempt in range(30):
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, data=body, headers=headers), timeout=timeout
            ) as resp:
                resp.read()
                return
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503, 504):
                raise
            delay = float(exc.headers.get("Retry-After") or 1)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            delay = min(2.0**attempt, 10.0)  # the receiver is not up yet
        time.sleep(delay)
    raise SystemExit(f"loadgen: {url} did not accept a request after 30 attempts")


def run(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    """Send the timeline; returns the number of records sent."""
    r = random.Random(args.seed)
    start = int(clock()) - args.backfill
    incident_from = start + args.backfill + args.incident_after
    incident_to = incident_from + args.incident_duration
    end = start + args.backfill + args.duration if args.duration >= 0 else None
    sent, pending, second = 0, [], start
    while end is None or second < end:
        ahead = second - clock()
        if ahead > 0:  # live: wait for the wall clock
            if pending:
                post(args.endpoint, build_request(pending, r))
                sent, pending = sent + len(pending), []
            time.sleep(ahead)
        pending += second_of_logs(r, second * SECOND, incident_from <= second < incident_to)
        if len(pending) >= args.batch:
            post(args.endpoint, build_request(pending, r))
            sent, pending = sent + len(pending), []
        second += 1
    if pending:
        post(args.endpoint, build_request(pending, r))
        sent += len(pending)
    return sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default="http://localhost:4318", help="OTLP/HTTP base URL")
    ap.add_argument("--backfill", type=int, default=3600, help="seconds of history sent first")
    ap.add_argument("--incident-after", type=int, default=300,
                    help="seconds after now the incident starts (negative: in the history)")  # fmt: skip
    ap.add_argument("--incident-duration", type=int, default=180, help="seconds it lasts")
    ap.add_argument("--duration", type=int, default=-1,
                    help="seconds of live traffic after now, then exit (default: forever)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=1000, help="records per request at most")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sent = run(args)
    print(f"loadgen: sent {sent} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
