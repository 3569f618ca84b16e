"""gRPC end to end: a client in a second process sends gzip-compressed 1,000-record requests to a
real `via-otlp serve`; records/s accepted and fully processed, and seconds from start to SERVING.

The same client also sends to a null LogsService (accepts and discards, in its own process) in
the same run: that is the transport ceiling, and the ratio survives a noisy machine.
Targets: >= 100,000 records/s through via-otlp; < 1.5 s from process start to SERVING.

Traffic (`--shape`): `issue` (default) is the shape issue #13 measured: 12 services (the
OpenTelemetry demo's names, resource `service.name` + `deployment.environment.name`), 59 message
templates (each service logs its own 4-5), 1,000 records a request split evenly. `intake` is the
earlier shape (benchmarks/intake.py: 5 services, 40 shapes; figures before 2026-12-04 used it), in
which 4 of the 5 sources hash to one shard of 2. Each sharded run prints how the records split
across the shards (`shard_of` on the source keys sent) and each shard's CPU, so records/s can be
read against the busiest shard.

`--tls` adds the cost of security in the same run: via-otlp with `receive.grpc.tls` (a CA and a
certificate made for the run) and a bearer token, against the same server in plaintext, in
alternating rounds (median of each). Target: TLS costs < 25 % of plaintext throughput.

    python benchmarks/e2e_grpc.py [--requests 300] [--concurrency 4] [--workers in,1,2,0]
                                  [--shape issue|intake] [--tls [--rounds 3]]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES, source_key
from via_otlp.shard.wire import shard_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake import SHAPES, make_request
from machine import compile_package, load_average

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.certs, for --tls

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
# Senders in fresh interpreters: a client forked from this process after it had used gRPC (the
# health checks) hung in gRPC now and then, and the run with it.
_SPAWN = mp.get_context("spawn")

# The issue's shape: 12 services, each logging its own templates (59 in all).
SERVICES = [
    "frontend", "cart", "checkout", "payment", "shipping", "email", "currency", "ad",
    "recommendation", "product-catalog", "quote", "fraud-detection",
]  # fmt: skip
TEMPLATES = [
    *SHAPES,  # benchmarks/intake.py's 8, and 51 more
    "Added {k} units of product {hex} to cart of {user}",
    "Cart {uuid} emptied by {user}",
    "Order {n} placed: {k} items, total {ms}.{k}9 USD",
    "Charged card ending {k}{k}{k}{k} for order {n}",
    "Shipping quote for zip {n} is {ms} cents",
    "Tracking id {uuid} assigned to order {n}",
    "Sent order confirmation to {user}@example.com",
    "Converted {ms} EUR to USD at rate 1.0{k}",
    "Served ad {hex} for context category {k}",
    "Recommended {k} products to {user} in {ms} ms",
    "Product catalog reloaded: {n} products",
    "Quote calculated for {k} items: {ms} units",
    "Fraud score {k}.{k} for order {n} below threshold",
    "TLS handshake with {ip} failed: certificate expired",
    "Slow query on table orders took {ms} ms",
    "Kafka consumer lag on partition {k} is {n} messages",
    "gRPC call oteldemo.CartService/GetCart returned OK in {ms} ms",
    "Health check passed for upstream {ip}",
    "Rate limit exceeded for client {ip}, dropping request",
    "Feature flag productCatalogFailure evaluated to false for {user}",
    "Session {hex} expired after {ms} seconds of inactivity",
    "Inventory for sku {hex} dropped to {k}",
    "Email template order-confirmation rendered in {ms} ms",
    "Currency list fetched: {k} currencies supported",
    "Ad request without context keys, serving random ads",
    "Cache warmed with {n} recommendations",
    "Product {hex} not found in catalog",
    "Shipping cost for order {n} computed as free over threshold",
    "Fraud check queued for order {n} with priority {k}",
    "Websocket connection {uuid} closed by client",
    "Image resize for product {hex} took {ms} ms",
    "Received {k} messages from topic orders in {ms} ms",
    "Redis SET cart:{uuid} took {ms} us",
    "Checkout {uuid} failed: payment service unavailable",
    "Refund of {ms} cents issued for order {n}",
    "Delivery window for order {n} is {k} to {k} days",
    "SMTP server accepted message {hex} for delivery",
    "Exchange rates refreshed from upstream in {ms} ms",
    "Ad campaign {n} budget at {k}0 percent",
    "Model version {k} loaded for recommendations",
    "Search for products matching query returned {n} results",
    "Quote service cold start took {ms} ms",
    "Transaction {uuid} flagged for manual review",
    "Garbage collection paused worker {k} for {ms} ms",
    "Config reloaded from /etc/app/config.yaml, {k} keys changed",
    "Circuit breaker for payment opened after {k} failures",
    "Upstream {ip} responded 503, retry in {ms} ms",
    "JWT for {user} verified, expires in {n} s",
    "Wrote {n} bytes to object store bucket exports",
    "DNS lookup for {hex}.svc.cluster.local took {ms} ms",
    "Worker pool resized from {k} to {k} threads",
]


def issue_request(rng: random.Random, n_records: int = 1000) -> bytes:
    """One request of the issue's shape: the records of `make_request` (times, severities, trace
    and span ids, 4 attributes; `n_records` rounded down to a multiple of 5) regrouped evenly
    under `SERVICES`, each body one of its service's own templates."""
    sent = ExportLogsServiceRequest.FromString(make_request(rng, n_records))
    records = [lr for rl in sent.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    req = ExportLogsServiceRequest()
    start = 0
    for i, service in enumerate(SERVICES):
        rl = req.resource_logs.add()
        rl.resource.CopyFrom(sent.resource_logs[0].resource)
        for kv in rl.resource.attributes:
            if kv.key in ("service.name", "host.name"):
                kv.value.string_value = service if kv.key == "service.name" else f"{service}-5d8b"
        sl = rl.scope_logs.add()
        sl.scope.CopyFrom(sent.resource_logs[0].scope_logs[0].scope)
        own = TEMPLATES[i :: len(SERVICES)]
        share = len(records) // len(SERVICES) + (i < len(records) % len(SERVICES))
        for lr in records[start : start + share]:
            record = sl.log_records.add()
            record.CopyFrom(lr)
            record.body.string_value = rng.choice(own).format(
                n=rng.randrange(10**6), ms=rng.randrange(2000), user=f"user{rng.randrange(5000)}",
                ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                hex=f"{rng.getrandbits(48):012x}", uuid=f"{rng.getrandbits(128):032x}", k=rng.randrange(8),
            )  # fmt: skip
        start += share
    return req.SerializeToString()


def records_by_source(payloads: list[bytes]) -> dict[str, int]:
    """Records sent per source key (the default `receive.source_attributes`)."""
    counts: dict[bytes, dict[str, int]] = {}
    out: dict[str, int] = {}
    for data in payloads:
        if data not in counts:  # payloads repeat a few distinct requests
            per: dict[str, int] = {}
            for rl in ExportLogsServiceRequest.FromString(data).resource_logs:
                present = {kv.key: kv.value.string_value for kv in rl.resource.attributes}
                identity = [(n, present[n]) for n in DEFAULT_SOURCE_ATTRIBUTES if n in present]
                key = source_key(identity, DEFAULT_SOURCE_ATTRIBUTES)
                per[key] = per.get(key, 0) + sum(len(sl.log_records) for sl in rl.scope_logs)
            counts[data] = per
        for key, n in counts[data].items():
            out[key] = out.get(key, 0) + n
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def channel_to(target: str, root_ca: bytes | None) -> grpc.Channel:
    if root_ca is None:
        return grpc.insecure_channel(target, compression=grpc.Compression.Gzip)
    credentials = grpc.ssl_channel_credentials(root_ca)
    return grpc.secure_channel(target, credentials, compression=grpc.Compression.Gzip)


def client(
    target: str,
    payloads: list[bytes],
    concurrency: int,
    out: mp.Queue,  # type: ignore[type-arg]
    root_ca: bytes | None = None,
    token: str = "",
) -> None:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with channel_to(target, root_ca) as channel:
        call = channel.unary_unary(
            EXPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        retries = 0

        def send(p: bytes) -> None:
            nonlocal retries
            while True:
                try:
                    call(p, timeout=60, metadata=metadata)
                    return
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    retries += 1
                    time.sleep(0.05)

        start = time.perf_counter()
        with futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, payloads))
        # The start too: perf_counter is the system's monotonic clock, the same in every process.
        out.put((time.perf_counter() - start, retries, start))


def null_server(port: int, ready: mp.Event) -> None:  # type: ignore[valid-type]
    server = grpc.server(futures.ThreadPoolExecutor(4))
    handler = grpc.unary_unary_rpc_method_handler(
        lambda req, ctx: b"", request_deserializer=None, response_serializer=None
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": handler}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def run_client(
    target: str,
    payloads: list[bytes],
    concurrency: int,
    root_ca: bytes | None = None,
    token: str = "",
) -> tuple[float, int, float]:
    """Seconds to send `payloads`, retries, and when the sending started (`perf_counter`)."""
    q: mp.Queue = _SPAWN.Queue()  # type: ignore[type-arg]
    proc = _SPAWN.Process(target=client, args=(target, payloads, concurrency, q, root_ca, token))
    proc.start()
    result = q.get()
    proc.join()
    return result  # type: ignore[no-any-return]


def wait_serving(
    target: str, proc: subprocess.Popen[bytes], timeout: float = 30, root_ca: bytes | None = None
) -> float:
    start = time.perf_counter()
    with channel_to(target, root_ca) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"via-otlp exited with {proc.returncode}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return time.perf_counter() - start
            except grpc.RpcError:
                time.sleep(0.01)
    raise SystemExit("via-otlp did not become SERVING")


def secured_vs_plaintext(args: argparse.Namespace, payloads: list[bytes]) -> None:
    """Throughput of the same server in plaintext and with TLS and a bearer token, in rounds."""
    import statistics

    from tests.certs import CertAuthority

    records = len(payloads) * 1000
    token = "bench-token-0123456789abcdef"
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertAuthority.create(Path(tmp) / "ca")
        issued = ca.issue(Path(tmp) / "server", "localhost")
        tls = {"cert_file": str(issued.cert), "key_file": str(issued.key)}
        results: dict[str, list[tuple[float, float]]] = {"plaintext": [], "tls": []}
        for _ in range(args.rounds):
            for mode in ("plaintext", "tls"):
                grpc_port, http_port = free_port(), free_port()
                receive: dict[str, object] = {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
                if mode == "tls":
                    receive["grpc"] = {**receive["grpc"], "tls": tls}  # type: ignore[dict-item]
                    receive["auth"] = {"bearer_token": token}
                data = Path(tmp) / f"data-{mode}"
                cfg = Path(tmp) / f"{mode}.json5"
                cfg.write_text(json.dumps({
                    "receive": receive, "state": {"data_dir": str(data)},
                    "emit": {"endpoint": ""}, "log": {"level": "warning"},
                    "registry": {"enabled": False}, "correlate": {"enabled": False},
                    "control": {"endpoint": f"127.0.0.1:{free_port()}"},
                }))  # fmt: skip
                root = ca.pem if mode == "tls" else None
                target = f"localhost:{grpc_port}"
                proc = subprocess.Popen(
                    [str(Path(sys.executable).parent / "via-otlp"), "serve", "--config", str(cfg)],
                    stdout=subprocess.DEVNULL,
                )
                try:
                    wait_serving(target, proc, root_ca=root)
                    send_secs, _, t1 = run_client(
                        target, payloads, args.concurrency, root, token if root else ""
                    )
                    while True:
                        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/status")
                        if root:
                            request.add_header("Authorization", f"Bearer {token}")
                        with urllib.request.urlopen(request) as resp:
                            status = json.loads(resp.read())
                        if status["intake"]["records_consumed"] >= records:
                            break
                        time.sleep(0.02)
                    results[mode].append(
                        (records / send_secs, records / (time.perf_counter() - t1))
                    )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    print(f"--tls: {args.rounds} alternating rounds, median (registry and correlate off)")
    medians = {}
    for mode, runs in results.items():
        accepted = statistics.median(r[0] for r in runs)
        processed = statistics.median(r[1] for r in runs)
        medians[mode] = (accepted, processed)
        label = "plaintext" if mode == "plaintext" else "TLS + bearer token"
        print(
            f"{label:<22} accepted {accepted:>10,.0f} records/s   processed {processed:>10,.0f} records/s"
        )
    for i, what in enumerate(("accepted", "processed")):
        cost = 1 - medians["tls"][i] / medians["plaintext"][i]
        print(f"TLS cost, {what:<9}: {cost:>6.1%} of plaintext throughput   target < 25 %")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--shape",
        choices=("issue", "intake"),
        default="issue",
        help="traffic: issue #13's 12 services / 59 templates, or benchmarks/intake.py's 5 / 40",
    )
    parser.add_argument("--tls", action="store_true", help="also: TLS + token vs plaintext")
    parser.add_argument("--rounds", type=int, default=3, help="--tls: alternating rounds")
    parser.add_argument(
        "--workers",
        default="in,1,2,0",
        help="shard counts to run (0: one per core; 'in': the pipeline in the serving process)",
    )
    args = parser.parse_args()
    compile_package()  # starts are timed as an installed wheel runs
    rng = random.Random(7)
    make = issue_request if args.shape == "issue" else make_request
    distinct = [make(rng) for _ in range(30)]
    payloads = [distinct[i % len(distinct)] for i in range(args.requests)]
    records = args.requests * 1000
    if args.tls:
        secured_vs_plaintext(args, payloads)

    null_port = free_port()
    ready = _SPAWN.Event()
    null = _SPAWN.Process(target=null_server, args=(null_port, ready), daemon=True)
    null.start()
    ready.wait(10)
    assert null.pid is not None
    null_cpu0 = cpu_seconds(null.pid)[0]
    null_secs, _, _ = run_client(f"127.0.0.1:{null_port}", payloads, args.concurrency)
    null_cpu = cpu_seconds(null.pid)[0] - null_cpu0
    null.terminate()

    print(
        f"requests: {args.requests} x 1000 records, gzip, concurrency {args.concurrency}, "
        f"cores: {os.cpu_count()} (shared with whatever else runs), {load_average()}"
    )
    print(
        f"null LogsService (transport ceiling): {records / null_secs:>10,.0f} records/s, "
        f"CPU per million records {null_cpu * 1e6 / records:.2f} s"
    )
    sources = records_by_source(payloads)
    print(
        f"traffic (--shape {args.shape}): {len(sources)} sources, each "
        f"{min(sources.values()) / records:.1%}-{max(sources.values()) / records:.1%} of records"
    )
    for workers in args.workers.split(","):
        run_server(workers, payloads, records, null_secs, args.concurrency, sources)
    print(f"at the end: {load_average()}")


def _stat_seconds(path: str) -> tuple[str, float, float] | None:
    """The name, user CPU and system CPU (seconds) in a /proc `stat` file; None if gone."""
    try:
        with open(path) as f:
            name, rest = f.read().split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        tick = os.sysconf("SC_CLK_TCK")
        return name, int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """User + system CPU of a process, and of its children (the shards), from /proc; and the
    system CPU of both (the kernel's share: sockets, copies, scheduling)."""
    own = total = system = 0.0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    for p in pids:
        got = _stat_seconds(f"/proc/{p}/stat")
        if got is not None:
            total += got[1] + got[2]
            system += got[2]
        if p == pid:
            own = total
    return own, total - own, system


def thread_seconds(pid: int) -> dict[str, float]:
    """User + system CPU of each thread of a process by thread name (summed per name)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        got = _stat_seconds(f"/proc/{pid}/task/{tid}/stat")
        if got is None:
            continue
        key = "event loop" if tid == str(pid) else got[0]
        out[key] = out.get(key, 0.0) + got[1] + got[2]
    return out


def shard_split(sources: dict[str, int], shards: int) -> tuple[list[int], list[int]]:
    """Records and sources per shard, as the pipeline routes them (`shard_of`)."""
    records, count = [0] * shards, [0] * shards
    for key, n in sources.items():
        records[shard_of(key, shards)] += n
        count[shard_of(key, shards)] += 1
    return records, count


def shard_pids(http_port: int) -> list[int]:
    """The shards' pids by index, from /status."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status") as resp:
        each = json.loads(resp.read()).get("shards", {}).get("each", [])
    return [int(s["pid"]) for s in sorted(each, key=lambda s: s["index"])]


def process_seconds(pid: int) -> float:
    got = _stat_seconds(f"/proc/{pid}/stat")
    return got[1] + got[2] if got is not None else 0.0


def run_server(
    workers: str,
    payloads: list[bytes],
    records: int,
    null_secs: float,
    concurrency: int,
    sources: dict[str, int],
) -> None:
    """One via-otlp configuration: start, restart, load, stop; prints its figures."""
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "via.json5"
        cfg.write_text(json.dumps({
            "receive": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": {"endpoint": f"127.0.0.1:{http_port}"}},
            "pipeline": {"in_process": True} if workers == "in" else {"workers": int(workers)},
            "state": {"data_dir": tmp}, "emit": {"endpoint": ""}, "log": {"level": "warning"},
            "control": {"endpoint": f"127.0.0.1:{free_port()}"},
        }))  # fmt: skip
        via_bin = Path(sys.executable).parent / "via-otlp"
        starts = []
        for _ in range(2):  # a first start (creates the embedded database), then a restart
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [str(via_bin), "serve", "--config", str(cfg)], stdout=subprocess.DEVNULL
            )
            wait_serving(f"127.0.0.1:{grpc_port}", proc)
            starts.append(time.perf_counter() - t0)
            if len(starts) == 1:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        try:
            pids = shard_pids(http_port) if workers != "in" else []
            cpu0 = cpu_seconds(proc.pid)
            each0 = [process_seconds(p) for p in pids]
            threads0 = thread_seconds(proc.pid)
            send_secs, retries, t1 = run_client(f"127.0.0.1:{grpc_port}", payloads, concurrency)
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status") as resp:
                    status = json.loads(resp.read())
                if status["intake"]["records_consumed"] >= records:
                    break
                time.sleep(0.25)  # /status asks every shard: not too often
            total_secs = time.perf_counter() - t1
            cpu1 = cpu_seconds(proc.pid)
            each_cpu = [process_seconds(p) - c for p, c in zip(pids, each0, strict=True)]
            threads1 = thread_seconds(proc.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status") as resp:
                each = json.loads(resp.read()).get("shards", {}).get("each", [])
            coalesced = sum(int(s.get("batches_coalesced", 0)) for s in each)
            main_cpu, shard_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            sys_cpu = cpu1[2] - cpu0[2]
        finally:
            t2 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            stop_secs = time.perf_counter() - t2
    label = "in process" if workers == "in" else f"workers={int(workers) or os.cpu_count()}"
    per_m = 1e6 / records
    print(
        f"[{label}] accepted               : {records / send_secs:>10,.0f} records/s  (retries {retries})"
    )
    print(
        f"[{label}] accepted and processed : {records / total_secs:>10,.0f} records/s  "
        f"ratio to ceiling {null_secs / total_secs:.2f}  target >= 0.4"
    )
    print(
        f"[{label}] CPU per million records: {(main_cpu + shard_cpu) * per_m:>9.2f} s "
        f"(serving process {main_cpu * per_m:.2f} s, shards {shard_cpu * per_m:.2f} s; "
        f"in the kernel {sys_cpu * per_m:.2f} s)"
    )
    threads = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
    busiest = sorted(((v, k) for k, v in threads.items() if v > 0), reverse=True)[:4]
    print(f"[{label}] serving process threads: " + ", ".join(
        f"{k} {v * per_m:.2f} s" for v, k in busiest) + " (per million records)")  # fmt: skip
    if workers != "in":
        print(f"[{label}] batches coalesced      : {coalesced} (consumed with the one before)")
        split, count = shard_split(sources, len(pids))
        print(f"[{label}] records per shard      : " + ", ".join(
            f"{i}: {n:,} ({n / records:.0%}, {c} sources, CPU {cpu * per_m:.2f} s per million)"
            for i, (n, c, cpu) in enumerate(zip(split, count, each_cpu, strict=True)))
            + f"; busiest {max(split) / records:.0%}, even {1 / len(split):.0%}")  # fmt: skip
    print(f"[{label}] start to SERVING       : first {starts[0]:.2f} s, restart {starts[1]:.2f} s; "
          f"SIGTERM to exit {stop_secs:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
