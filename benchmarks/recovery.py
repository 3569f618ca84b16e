"""After a SIGKILL: how much learning is lost, and how soon the embedded PostgreSQL is back.

1. Learning lost: a real `via-otlp serve` (default `state.snapshot_interval`, 10 s) learns one
   new service (one template, so one profile) every 0.2 s, with event times of the wall clock;
   at a random moment every service process is killed with SIGKILL (as a container kill), the
   server is started again on the same data directory, and the profiles it restored say which
   services it still knows: the seconds between the kill and when the newest service it knows
   was sent are what was lost. Several kills; worst and mean. Target <= 10 s.
2. PostgreSQL back: the embedded PostgreSQL's postmaster is killed with SIGKILL while the server
   runs; the time until `/status` shows the registry `ok` again with one more restart counted
   (the server's own measure beside it). Several kills. Target <= 10 s.

    nice -n 10 python benchmarks/recovery.py [--kills 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from machine import load_average
from shards import EXPORT, Server, descendants

NEW_SERVICE_EVERY = 0.2


def one_service(n: int) -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = f"learnt-{n}"
    sl = rl.scope_logs.add()
    now = time.time_ns()
    for i in range(5):
        lr = sl.log_records.add()
        lr.body.string_value = f"order {i} shipped"
        lr.time_unix_nano = now
        lr.attributes.add(key="log.record.template").value.string_value = "order <*> shipped"
    return req.SerializeToString()


def profiles(server: Server) -> int:
    return int(server.status()["detect"]["profiles"])


def kill_all(server: Server) -> None:
    """SIGKILL every service process at once (the serving process, its shards, PostgreSQL)."""
    assert server.proc is not None
    for pid in descendants(server.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(60)


def learning_lost(tmp: Path, kills: int, rng: random.Random) -> list[float]:
    """Seconds of learning lost at each of `kills` SIGKILLs."""
    server = Server(tmp / "learn", 0, snapshot_interval="10s")
    server.start()
    sent_at: list[float] = []  # when service n was sent (and answered)
    lost = []
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
        call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        for k in range(kills):
            run = rng.uniform(25, 45)  # a random phase against the snapshot interval
            stop = threading.Event()

            def feed(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    try:
                        call(one_service(len(sent_at)), timeout=60)
                    except grpc.RpcError:  # killed meanwhile
                        return
                    sent_at.append(time.monotonic())
                    time.sleep(NEW_SERVICE_EVERY)

            feeder = threading.Thread(target=feed)
            feeder.start()
            time.sleep(run)
            killed_at = time.monotonic()
            kill_all(server)
            stop.set()
            feeder.join()
            server.start()
            known = profiles(server)  # one profile per service, services learnt in order
            newest = sent_at[known - 1] if known else sent_at[0]
            lost.append(killed_at - newest)
            print(f"  kill {k + 1}: after {run:.0f} s of feeding, {len(sent_at)} services sent, "
                  f"{known} restored: {killed_at - newest:.1f} s of learning lost", flush=True)  # fmt: skip
            del sent_at[known:]  # what was lost is sent again, under new numbers
    server.stop()
    return lost


def postmaster(server: Server) -> int:
    return int((server.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def postgres_back(tmp: Path, kills: int) -> list[tuple[float, float]]:
    """(seconds until `/status` shows the registry ok again, the server's own measure)."""
    server = Server(tmp / "pg", 0, extra={"registry": {"enabled": True}})
    server.start()
    out = []
    try:
        for k in range(kills):
            registry = server.status()["registry"]
            while registry["state"] != "ok":
                time.sleep(0.05)
                registry = server.status()["registry"]
            restarts = registry["embedded_restarts"]
            t0 = time.monotonic()
            os.kill(postmaster(server), signal.SIGKILL)
            while not (registry["embedded_restarts"] > restarts and registry["state"] == "ok"):
                time.sleep(0.05)
                registry = server.status()["registry"]
            back = time.monotonic() - t0
            out.append((back, float(registry["embedded_last_restart_seconds"])))
            print(f"  kill {k + 1}: registry ok again after {back:.2f} s (the server's measure "
                  f"{out[-1][1]:.2f} s)", flush=True)  # fmt: skip
    finally:
        server.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--only", choices=("learning", "postgres"))
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()} (shared), {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as another user when started by root
        if args.only != "postgres":
            print("learning lost on SIGKILL (snapshot every 10 s, a new service every 0.2 s):")
            lost = learning_lost(Path(tmp), args.kills, random.Random(3))
            print(f"learning lost: worst {max(lost):.1f} s, mean {statistics.mean(lost):.1f} s "
                  f"over {len(lost)} kills   target <= 10 s", flush=True)  # fmt: skip
        if args.only != "learning":
            print("embedded PostgreSQL killed (SIGKILL of its postmaster):")
            back = postgres_back(Path(tmp), args.kills)
            print(f"PostgreSQL back: worst {max(b for b, _ in back):.2f} s, mean "
                  f"{statistics.mean(b for b, _ in back):.2f} s over {len(back)} kills   "
                  f"target <= 10 s")  # fmt: skip
    print(load_average())


if __name__ == "__main__":
    main()
