"""Hostile input against the real server: does `/healthz` still answer, does memory come back?

Starts a real `via-otlp serve` (shards, registry and correlation off: only intake and the
pipeline are measured) with a 1024 open-file limit, as in issue #12, and sends each hostile
input of the issue's table in turn while a poller in its own process asks `/healthz` and gRPC
health every 20 ms:

- `big`: one 64 MiB gRPC export of tiny records;
- `gzip-blank`: gzip of blank lines to /v1/ingest (64 KiB on the wire, 64 Mi lines), 8 times;
- `connections`: 1,100 idle and half-sent HTTP connections, held until the server closes them;
- `surrogates`: OTLP/JSON and NDJSON with unpaired surrogates in keys and values, 300 requests;
- `deep`: kvlist bodies nested 5,000 deep over OTLP/HTTP and gRPC, 200 requests;
- `ndjson`: 100 MB of plain NDJSON to /v1/ingest, once with its length declared, once chunked.

Before them, in the same run, the same poll with no hostile input is the baseline. For each it
prints the answers the sender got, the worst and p99 latency of both health checks (and how
many health answers were not OK: at the connection limit `/healthz` is answered 503 by
design), and the memory of all service processes before and 2 s after.
Targets: worst <= 1 s under hostile input, <= 100 ms without.

    nice -n 10 python benchmarks/hostile.py [--only big,deep] [--workers 0] [--server-nice 10]

`--server-nice N` lowers the server's priority alone (the sender and poller keep theirs), as
on a machine where other work competes with it.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.receive.test_codec
from machine import load_average
from shards import EXPORT, Polls, Probe, Server, big_request, rss_all

from tests.receive.test_codec import nested_body_request
from tests.sockets import open_idle_connections, read_until_closed

MIB = 1024 * 1024
BASELINE_SECONDS = 10.0

Outcomes = Counter[str]


def post(server: Server, path: str, body: bytes, content_type: str, **headers: str) -> str:
    """POST and return the answer's status as text (or the error's kind)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}",
        data=body,
        headers={"Content-Type": content_type, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as resp:
            resp.read()
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except OSError as err:
        return type(err).__name__


def export(server: Server, payload: bytes) -> str:
    """One gRPC Export of `payload`; its status code's name."""
    with grpc.insecure_channel(
        f"127.0.0.1:{server.grpc_port}", options=[("grpc.max_send_message_length", 1 << 30)]
    ) as ch:
        call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(payload, timeout=600)
            return "gRPC OK"
        except grpc.RpcError as err:
            return f"gRPC {err.code().name}"


def consumed(server: Server) -> int:
    return int(server.status()["intake"]["records_consumed"])


def wait_consumed(server: Server, at_least: int) -> None:
    while consumed(server) < at_least:
        time.sleep(0.25)


def nothing(server: Server) -> Outcomes:
    """The baseline: no hostile input, the poll alone."""
    time.sleep(BASELINE_SECONDS)
    return Counter()


def big(server: Server) -> Outcomes:
    payload = big_request(64)
    before = consumed(server)
    answer = export(server, payload)
    records = ExportLogsServiceRequest.FromString(payload).resource_logs[0].scope_logs[0]
    wait_consumed(server, before + len(records.log_records))  # every record learnt from
    return Counter({f"{answer} ({len(payload) / MIB:.0f} MiB)": 1})


def gzip_blank(server: Server) -> Outcomes:
    bomb = gzip.compress(b"\n" * (64 * MIB))
    out: Outcomes = Counter()
    for _ in range(8):
        out[
            post(server, "/v1/ingest", bomb, "application/x-ndjson", **{"Content-Encoding": "gzip"})
        ] += 1
    out[f"({len(bomb) / 1024:.0f} KiB each)"] = 8
    return out


def connections(server: Server) -> Outcomes:
    out: Outcomes = Counter()
    for s in open_idle_connections(server.http_port, 1100):
        answer = b"reset"  # refused while its half-sent request was unread
        with contextlib.suppress(OSError):  # closed by the server: refused, or timed out
            answer = read_until_closed(s)[:12]
        out[answer.decode(errors="replace") or "closed, no answer"] += 1
        s.close()
    return out


SURROGATE_JSON = (
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\\udc00"},'
    b'"attributes":[{"key":"k\\ud800","value":{"stringValue":"v"}}]}]}]}]}'
)
SURROGATE_KEY = b'{"resourceLogs":[{"\\ud800":1}]}'
SURROGATE_NDJSON = b'{"body": "x\\ud800", "attributes": {"\\udc00": 1}}\n' * 100


def surrogates(server: Server) -> Outcomes:
    out: Outcomes = Counter()
    for _ in range(100):
        out[post(server, "/v1/logs", SURROGATE_JSON, "application/json")] += 1
        out[post(server, "/v1/logs", SURROGATE_KEY, "application/json")] += 1
        out[post(server, "/v1/ingest", SURROGATE_NDJSON, "application/x-ndjson")] += 1
    return out


def deep(server: Server) -> Outcomes:
    payload = nested_body_request(5000, attribute_levels=5000)
    out: Outcomes = Counter()
    for _ in range(100):
        out[post(server, "/v1/logs", payload, "application/x-protobuf")] += 1
        out[export(server, payload)] += 1
    return out


def ndjson_lines(total: int) -> Iterator[bytes]:
    line = b'{"body": "order %d shipped to warehouse 7", "service": "flood"}\n'
    chunk = b"".join(line % i for i in range(10_000))
    for _ in range(total // len(chunk) + 1):
        yield chunk


def ndjson(server: Server) -> Outcomes:
    body = b"".join(ndjson_lines(100 * 1000 * 1000))
    out: Outcomes = Counter()
    out[post(server, "/v1/ingest", body, "application/x-ndjson") + " (length declared)"] += 1
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=600)
    try:
        conn.request("POST", "/v1/ingest", body=ndjson_lines(len(body)), encode_chunked=True,
                     headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        out[f"HTTP {resp.status} (chunked)"] += 1
    except OSError as err:  # the server answers 413 and closes while the sender still sends
        out[f"{type(err).__name__} (chunked)"] += 1
    finally:
        conn.close()
    out[f"({len(body) / 1e6:.0f} MB each)"] = 2
    return out


INPUTS: dict[str, Callable[[Server], Outcomes]] = {
    "baseline": nothing,
    "big": big,
    "gzip-blank": gzip_blank,
    "connections": connections,
    "surrogates": surrogates,
    "deep": deep,
    "ndjson": ndjson,
}


class NicedServer(Server):
    """The server (and its shards) at a lower CPU priority than the sender and the poller, as
    on a machine where other work competes with it (`--server-nice`)."""

    def __init__(self, tmp: Path, workers: int, nice: int) -> None:
        super().__init__(tmp, workers, nofile=1024)
        self.nice = nice

    def _limit_files(self) -> None:
        super()._limit_files()
        os.nice(self.nice)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def report(name: str, took: float, outcomes: Outcomes, polls: Polls, rss: tuple[int, int]) -> None:
    target = 100 if name == "baseline" else 1000
    worst = max(max(polls.http), max(polls.grpc)) * 1e3
    print(f"{name} ({took:.1f} s): {', '.join(f'{k} x{v}' for k, v in sorted(outcomes.items()))}")
    print(f"  /healthz    worst {max(polls.http) * 1e3:7.1f} ms, p99 {p99(polls.http) * 1e3:6.1f} ms "
          f"({len(polls.http)} polls, {polls.http_not_ok} not OK)")  # fmt: skip
    print(f"  gRPC health worst {max(polls.grpc) * 1e3:7.1f} ms, p99 {p99(polls.grpc) * 1e3:6.1f} ms "
          f"({len(polls.grpc)} polls, {polls.grpc_not_ok} not OK)")  # fmt: skip
    print(f"  target worst <= {target} ms: {'met' if worst <= target else 'MISSED'}; "
          f"memory of all processes {rss[0] / MIB:.0f} -> {rss[1] / MIB:.0f} MiB (2 s after)",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(INPUTS), help="comma-separated inputs")
    parser.add_argument("--workers", type=int, default=0, help="shards (0: one per core)")
    parser.add_argument(
        "--server-nice", type=int, default=0, help="niceness added to the server's alone"
    )
    args = parser.parse_args()
    names = ["baseline"] + [n for n in args.only.split(",") if n != "baseline"]
    print(f"cores: {os.cpu_count()} (shared), {load_average()}; server open-file "
          f"limit 1024; polls every 20 ms from their own process; server niced "
          f"+{args.server_nice}; server {Path(sys.executable).parent / 'via-otlp'}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        server = NicedServer(Path(tmp), args.workers, args.server_nice)
        server.start()
        assert server.proc is not None
        try:
            for name in names:
                before = rss_all(server.proc.pid)
                probe = Probe(server)
                time.sleep(1)  # the poller is polling
                t0 = time.perf_counter()
                outcomes = INPUTS[name](server)
                took = time.perf_counter() - t0
                polls = probe.finish()
                time.sleep(2)
                report(name, took, outcomes, polls, (before, rss_all(server.proc.pid)))
            print(f"status after: {json.dumps(server.status()['loop'])}")
        finally:
            print(f"SIGTERM to exit: {server.stop():.2f} s, {load_average()}")


if __name__ == "__main__":
    main()
