"""Shards under weight: health while a huge request is processed, and 100,000 profiles.

Starts a real `via-otlp serve` (registry and correlate off, so only the pipeline is measured)
and prints, for the shard count given:

1. `/healthz` and gRPC health, worst and median latency, while one 64 MiB gRPC export of tiny
   records is decoded and learnt from; the service's memory (all its processes) before, at the
   peak and after. Baseline in the same run: the same probes with nothing to do.
2. 100,000 profiles (1,000 services x 100 templates each, templates given by the
   `log.record.template` attribute): memory per profile, snapshot write time and how long a
   shard's work waited for it, SIGTERM to exit, restart to SERVING and the shards' restore time,
   and memory per profile again once the restarted server has had a record of each profile.

    python benchmarks/shards.py [--workers 0] [--profiles 100000] [--big-mib 64]

Targets: /healthz <= 1 s while the big export is processed (<= 100 ms without it); memory per
profile <= 2 KB; SIGTERM <= 5 s and restart < 5 s at 100k profiles.

3. `--only first-start`: a first start (empty data directory) on the embedded defaults (registry
   with its embedded PostgreSQL, correlate with local Qdrant, control API), from the spawn to
   gRPC SERVING and /healthz 200; then one NDJSON record posted at once: when it is answered,
   and that it is kept (consumed); then a restart on that state (the cluster exists, no
   initdb) to gRPC SERVING. With `--trees OLD NEW` each round starts one service per
   tree (PYTHONPATH), alternated: old and new on the same load.

    python benchmarks/shards.py --only first-start --rounds 3 --trees /tmp/old /work/wt/new
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from machine import compile_package, load_average
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
_PROMPT = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 50),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_each(pid: int) -> list[int]:
    """Resident bytes of a process and of each of its children (the shards), in that order."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                out.append(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
        except OSError:
            pass
    return out


def rss_tree(pid: int) -> int:
    """Resident bytes of a process and its children."""
    return sum(rss_each(pid))


def descendants(pid: int) -> list[int]:
    """A process and every process under it (shards, embedded PostgreSQL and its backends)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def rss_all(pid: int) -> int:
    """Resident bytes of every service process (shared pages counted once per process)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


class Server:
    def __init__(
        self,
        tmp: Path,
        workers: int,
        snapshot_interval: str = "10s",
        extra: dict[str, Any] | None = None,
        nofile: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.nofile = nofile  # the server's open-file limit (0: inherited)
        self.env = env  # the server's environment (None: inherited)
        self.grpc_port, self.http_port = free_port(), free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        self.cfg = tmp / "via.json5"
        self.data_dir = tmp / "data"
        config: dict[str, Any] = {
            "receive": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                        "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
                        "queue_max_records": 2_000_000},
            "pipeline": {"workers": workers},
            "detect": {"max_profiles": 400_000},
            "state": {"data_dir": str(self.data_dir), "snapshot_interval": snapshot_interval},
            "registry": {"enabled": False}, "correlate": {"enabled": False},
            "control": {"enabled": False}, "emit": {"endpoint": ""}, "log": {"level": "warning"},
        }  # fmt: skip
        for section, values in (extra or {}).items():
            config[section] = {**config.get(section, {}), **values}
        self.cfg.write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "via-otlp"), "serve", "--config", str(self.cfg)],
            stdout=subprocess.DEVNULL,
            preexec_fn=self._limit_files if self.nofile else None,
            env=self.env,
        )
        # Reconnects every 20-50 ms: with gRPC's default backoff (1 s, x1.6 per failed
        # connect) a client that began asking before the server listened saw SERVING up to
        # several seconds after it was (5.5 s measured when the server said 3.4 s to start).
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", options=_PROMPT) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return time.perf_counter() - t0
                except grpc.RpcError:
                    pass
                if self.proc.poll() is not None:
                    raise SystemExit("via-otlp exited")
                time.sleep(0.02)

    def _limit_files(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def stop(self) -> float:
        assert self.proc is not None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        return time.perf_counter() - t0

    def status(self) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/status", timeout=60) as r:
            return json.loads(r.read())


@dataclass
class Polls:
    """Latencies of `/healthz` and gRPC health answers (any answer), and how many were not OK."""

    http: list[float]
    grpc: list[float]
    http_not_ok: int = 0
    grpc_not_ok: int = 0


def _probe(grpc_port: int, http_port: int, stop: Any, ready: Any, results: Any) -> None:
    polls = Polls([], [])
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:  # a refusal (503 at the connection limit) is an answer too: timed, counted
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=30):
                    pass
            except OSError:
                polls.http_not_ok += 1
            polls.http.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=30)
            except grpc.RpcError:
                polls.grpc_not_ok += 1
            polls.grpc.append(time.perf_counter() - t0)
            ready.set()
            time.sleep(0.02)
    results.put(polls)


class Probe:
    """`/healthz` and gRPC health, every 20 ms, from a process of their own (a sender in the
    same process would hold its GIL and its gRPC core while it pushes 64 MiB)."""

    def __init__(self, server: Server) -> None:
        ctx = mp.get_context("spawn")
        self.stop, ready = ctx.Event(), ctx.Event()
        self.results = ctx.Queue()
        self.proc = ctx.Process(
            target=_probe,
            args=(server.grpc_port, server.http_port, self.stop, ready, self.results),
        )
        self.proc.start()
        ready.wait(120)  # polling (starting a process takes seconds on a busy machine)

    def finish(self) -> Polls:
        self.stop.set()
        got: Polls = self.results.get(timeout=120)
        self.proc.join(30)
        return got


def big_request(mib: int) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "flood"
    sl = rl.scope_logs.add()
    now = time.time_ns()
    one = sl.log_records.add()
    one.body.string_value = "x"
    one.time_unix_nano = now
    size = len(one.SerializeToString()) + 2
    for _ in range((mib * 1024 * 1024 - 4096) // size - 1):
        lr = sl.log_records.add()
        lr.body.string_value = "x"
        lr.time_unix_nano = now
    return req.SerializeToString()


def health_under_big_request(tmp: Path, workers: int, mib: int) -> None:
    server = Server(tmp / "big", workers)
    server.start()
    try:
        assert server.proc is not None
        probe = Probe(server)
        time.sleep(4)
        idle = probe.finish()
        quiet, quiet_grpc = idle.http, idle.grpc
        payload = big_request(mib)
        records = server.status()["intake"]["records_consumed"]
        before_each = rss_each(server.proc.pid)
        before = sum(before_each)
        probe = Probe(server)
        time.sleep(2)
        peak = before
        t0 = time.perf_counter()
        with grpc.insecure_channel(
            f"127.0.0.1:{server.grpc_port}", options=[("grpc.max_send_message_length", 1 << 30)]
        ) as ch:
            call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
            fut = call.future(payload, timeout=600)
            while not fut.done():
                peak = max(peak, rss_tree(server.proc.pid))
                time.sleep(0.05)
            fut.result()
        n = len(
            ExportLogsServiceRequest.FromString(payload).resource_logs[0].scope_logs[0].log_records
        )
        while server.status()["intake"]["records_consumed"] < records + n:
            peak = max(peak, rss_tree(server.proc.pid))
            time.sleep(0.1)
        took = time.perf_counter() - t0
        polls = probe.finish()
        busy, busy_grpc = polls.http, polls.grpc
        time.sleep(2)
        after_each = rss_each(server.proc.pid)
        after = sum(after_each)
        lag = server.status()["loop"]["lag_max_ms"]
    finally:
        server.stop()
    mb = 1024 * 1024
    print(
        f"one {len(payload) / mb:.1f} MiB export of {n:,} records: accepted and processed in {took:.1f} s"
    )
    print(
        f"  /healthz worst {max(busy) * 1e3:7.1f} ms, median {statistics.median(busy) * 1e3:5.1f} ms "
        f"(idle: worst {max(quiet) * 1e3:.1f} ms)   target <= 1000 ms"
    )
    print(
        f"  gRPC health worst {max(busy_grpc) * 1e3:4.1f} ms, median {statistics.median(busy_grpc) * 1e3:5.1f} ms "
        f"(idle: worst {max(quiet_grpc) * 1e3:.1f} ms)"
    )
    print(f"  serving event loop: woke up at most {lag:.0f} ms late (its own measure, every 50 ms)")
    print(f"  memory of all processes: before {before / mb:.0f} MiB, peak {peak / mb:.0f} MiB, "
          f"2 s after {after / mb:.0f} MiB")  # fmt: skip
    each = ", ".join(
        f"{'serving' if i == 0 else f'shard {i - 1}'} {b / mb:.0f} → {a / mb:.0f}"
        for i, (b, a) in enumerate(zip(before_each, after_each, strict=False))
    )
    print(f"  by process, before → 2 s after (MiB): {each}")


def profiles_request(services: range, templates: int, t_ns: int) -> bytes:
    req = ExportLogsServiceRequest()
    for s in services:
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = f"svc-{s}"
        sl = rl.scope_logs.add()
        for k in range(templates):
            lr = sl.log_records.add()
            lr.body.string_value = f"event {k} of service {s}"
            lr.time_unix_nano = t_ns
            lr.attributes.add(key="log.record.template").value.string_value = f"event kind {k}"
    return req.SerializeToString()


def send_profiles(server: Server, services: int, templates: int) -> None:
    """A record of each template of each service (every profile), at the present time."""
    now = time.time_ns()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        for lo in range(0, services, 50):
            call(profiles_request(range(lo, min(services, lo + 50)), templates, now), timeout=120)


def many_profiles(tmp: Path, workers: int, profiles: int) -> None:
    templates = 100
    services = profiles // templates
    server = Server(tmp / "profiles", workers, snapshot_interval="5s")
    server.start()
    try:
        assert server.proc is not None
        base = rss_tree(server.proc.pid)
        send_profiles(server, services, templates)
        while True:
            st = server.status()
            if st["detect"]["profiles"] >= profiles:
                break
            time.sleep(0.5)
        time.sleep(12)  # at least one snapshot of everything
        st = server.status()
        held = rss_tree(server.proc.pid)
        snap = st["shards"]["last_snapshot"]
    finally:
        stop_secs = server.stop()
    restart = server.start()
    try:
        st2 = server.status()
        restored = st2["detect"]["profiles"]
        restores = [s["restore_seconds"] for s in st2["shards"]["each"]]
        # Every profile once more (a later bucket), as the first server was measured.
        send_profiles(server, services, templates)
        while server.status()["detect"]["records"] < st2["detect"]["records"] + profiles:
            time.sleep(0.5)
        time.sleep(12)
        assert server.proc is not None
        held_again = rss_tree(server.proc.pid)
    finally:
        server.stop()
    n = st["detect"]["profiles"]
    print(
        f"{n:,} profiles ({services:,} services x {templates} templates), {st['shards']['workers']} shards"
    )
    print(f"  memory per profile in serve: {(held - base) / n:,.0f} B (all processes, over the idle "
          f"server's {base / 2**20:.0f} MiB)   target <= 2,048 B")  # fmt: skip
    print(
        f"  snapshot: {snap['bytes'] / 2**20:.1f} MiB written in {snap['write_seconds']:.2f} s by "
        f"forked children (slowest shard); a shard's work waited {snap['stall_seconds'] * 1e3:.0f} ms "
        f"for it (the fork; it waited the whole write before)"
    )
    print(f"  after a restart, and a record of each profile: {(held_again - base) / n:,.0f} B per "
          f"profile (over the first server's idle memory)   target <= 2,048 B")  # fmt: skip
    print(f"  SIGTERM to exit: {stop_secs:.2f} s   target <= 5 s")
    print(f"  restart to SERVING: {restart:.2f} s, shards restored in {max(restores):.2f} s, "
          f"{restored:,} profiles back   target < 5 s")  # fmt: skip


def _healthz_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _grpc_serving(stub: Any) -> bool:
    try:
        return bool(stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1)
    except grpc.RpcError:
        return False


def one_first_start(tmp: Path, tree: str) -> dict[str, float]:
    """Seconds from the spawn of a first start (embedded defaults) to the registry ready (its
    log line), to gRPC SERVING, to /healthz 200, to the answer of one NDJSON record posted
    then, to that record consumed; SIGTERM; then a restart on that state to gRPC SERVING."""
    extra = {"registry": {"enabled": True}, "correlate": {"enabled": True},
             "control": {"enabled": True, "endpoint": f"127.0.0.1:{free_port()}"},
             "log": {"level": "info"}}  # fmt: skip
    server = Server(tmp, 0, extra=extra, env={**os.environ, "PYTHONPATH": tree})
    log_path = tmp / "serve.log"
    t0 = time.perf_counter()
    wall0 = time.time()
    got: dict[str, float] = {}
    server.proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "via-otlp"), "serve", "--config", str(server.cfg)],
        stdout=subprocess.DEVNULL, stderr=log_path.open("wb"), env=server.env,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=_PROMPT) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while len(got) < 2:
                if "grpc" not in got and _grpc_serving(stub):
                    got["grpc"] = time.perf_counter() - t0
                if "healthz" not in got and _healthz_ok(server.http_port):
                    got["healthz"] = time.perf_counter() - t0
                if server.proc.poll() is not None:
                    raise SystemExit("via-otlp exited")
                time.sleep(0.01)
        line = json.dumps({"service": "checkout", "severity": "ERROR", "body": "declined 42"})
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.http_port}/v1/ingest", data=line.encode() + b"\n"
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            accepted = json.loads(r.read()).get("accepted")
        got["answered"] = time.perf_counter() - t0
        if accepted != 1:
            raise SystemExit(f"the record was not accepted: {accepted}")
        while server.status()["intake"]["records_consumed"] < 1:
            time.sleep(0.01)
        got["consumed"] = time.perf_counter() - t0
    finally:
        got["sigterm"] = server.stop()
    got["registry"] = _logged_at(log_path, "registry ready", wall0)
    config = json.loads(server.cfg.read_text())
    server.cfg.write_text(json.dumps({**config, "log": {"level": "warning"}}))
    got["restart"] = server.start()  # its state and its cluster there now: no initdb
    server.stop()
    _remove_shared_cluster(log_path)
    return got


def _remove_shared_cluster(log_path: Path) -> None:
    """Remove the copy of this run's cluster that a tree kept in /var/tmp/via-otlp (root, older
    trees: a data dir in a private temp dir was not made reachable), once its server stopped;
    the temp dir takes the rest away."""
    found = re.search(r"keeping the cluster in (\S+)", log_path.read_text(errors="replace"))
    if found:
        cluster = Path(found.group(1)).parent
        if cluster.parent == Path("/var/tmp/via-otlp") and cluster.name.startswith("cluster-"):
            shutil.rmtree(cluster, ignore_errors=True)


def _logged_at(log_path: Path, what: str, wall0: float) -> float:
    """Seconds from `wall0` to the first log line that says `what` (-1: none)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if what in line:
            stamp = time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
            return time.mktime(stamp) + int(line[20:23]) / 1e3 - wall0
    return -1.0


def first_start(tmp: Path, trees: list[str], rounds: int) -> None:
    compile_trees(trees)
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
    for r in range(rounds):
        for t in trees:
            runs[t].append(one_first_start(tmp / f"first-{r}-{len(runs[t])}-{Path(t).name}", t))
            print(f"round {r + 1} {t}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[t][-1].items())
                  + f"   ({load_average()})", flush=True)  # fmt: skip
    print("first start, seconds from the spawn (min-max over rounds):")
    for t in trees:
        cols = []
        for k in ("registry", "grpc", "healthz", "answered", "consumed", "sigterm", "restart"):
            vals = [g[k] for g in runs[t]]
            cols.append(f"{k} {min(vals):.2f}-{max(vals):.2f}")
        print(f"  {t}: " + ", ".join(cols))


def compile_trees(trees: list[str]) -> None:
    """Byte-compile via_otlp of each tree, as an installed wheel is."""
    import compileall

    for t in trees:
        compileall.compile_dir(Path(t) / "via_otlp", quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--only", choices=("big", "profiles", "first-start"),
                        help="run one part (first-start runs only with --only)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="first-start: rounds")
    parser.add_argument("--trees", nargs="+", default=[str(Path(__file__).parent.parent)],
                        help="first-start: source trees to start (PYTHONPATH), alternated")  # fmt: skip
    args = parser.parse_args()
    if args.only == "first-start":
        print(f"cores: {os.cpu_count()} (shared with whatever else runs), {load_average()}")
        with tempfile.TemporaryDirectory() as tmp:
            first_start(Path(tmp), args.trees, args.rounds)
        print(f"at the end: {load_average()}")
        return
    compile_package()  # restarts are timed as an installed wheel runs
    print(
        f"cores: {os.cpu_count()} (shared with whatever else runs), workers: "
        f"{args.workers or 'one per core'}, {load_average()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "profiles":
            health_under_big_request(Path(tmp), args.workers, args.big_mib)
        if args.only != "big":
            many_profiles(Path(tmp), args.workers, args.profiles)
    print(f"at the end: {load_average()}")


if __name__ == "__main__":
    main()
