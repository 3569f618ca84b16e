"""Control API fixtures: a `via-otlp serve` process with a token and some learned traffic, and
the three ways to talk to it (grpcurl as README shows, the `via-otlp ctl` CLI, a Python stub)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import BIN, CLIENT_TIMEOUT, ServerProcess, start_server
from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.control.gen.via.v1 import control_pb2_grpc as pb2_grpc

TOKEN = "s3cret-test-token"
SECOND = 10**9
SERVICE = "checkout"  # the source README's recipes use
NOVEL_ERROR = "Disk /dev/sda1 failing: 3 bad sectors"
HISTORY_TEMPLATE = "GET <*> <*> in <*>"  # what the miner makes of the history lines


def control_config(token: str = TOKEN, **detect: Any) -> dict[str, Any]:
    """Config for tests: the token, quick detection and quick schema inference."""
    return {
        "control": {"token": token},
        "receive": {"attribute_sample_every": 1},
        "detect": {
            "bucket": "1s",
            "allowed_lateness": "1s",
            "novelty": {"source_warmup": "30s", "threshold": 0},  # every new pattern
            **detect,
        },
        "registry": {
            "schema_save_interval": "500ms",
            "schema": {"window": "1s", "min_samples": 5, "warmup_windows": 1},
        },
    }


def grpcurl(
    target: str, method: str, data: dict[str, Any] | None = None, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    """`grpcurl -plaintext [-H authorization] [-d JSON] TARGET via.v1.Control/METHOD`."""
    args = [str(BIN / "grpcurl"), "-plaintext"]
    if token is not None:
        args += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        args += ["-d", json.dumps(data)]
    args += [target, f"via.v1.Control/{method}" if "/" not in method else method]
    return subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)


def call(target: str, method: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A grpcurl call that must succeed; its JSON answer."""
    out = grpcurl(target, method, data)
    assert out.returncode == 0, f"{method}: {out.stderr}"
    return json.loads(out.stdout or "{}")


def ctl(
    *args: str, target: str, token: str | None = TOKEN, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`via-otlp ctl ARGS --target TARGET [--token TOKEN]` as a user runs it."""
    argv = [str(BIN / "via-otlp"), "ctl", *args, "--target", target]
    if token is not None:
        argv += ["--token", token]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VIA_CONTROL_")}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, env={**environ, **(env or {})}
    )


def stub(target: str) -> tuple[grpc.Channel, pb2_grpc.ControlStub]:
    channel = grpc.insecure_channel(target)
    return channel, pb2_grpc.ControlStub(channel)


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def ingest(server: ServerProcess, records: list[dict[str, Any]]) -> None:
    """POST records as NDJSON to /v1/ingest."""
    body = "\n".join(json.dumps(r) for r in records).encode()
    req = urllib.request.Request(
        f"{server.http_url}/v1/ingest",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as resp:
        assert resp.status == 200, resp.read()


def history_then_novel_error(
    service: str, now_ns: int, error: str = NOVEL_ERROR, copies: int = 1
) -> list[dict[str, Any]]:
    """60 s of a steady INFO pattern (past the source's 30 s warm-up), then a never-seen ERROR."""
    start = now_ns - 60 * SECOND
    records = [
        {
            "time": start + s * SECOND,
            "service": service,
            "severity": "INFO",
            "body": f"GET /api/items/{s} 200 in {s % 7 + 1}ms",
            "attributes": {"http.route": "/api/items", "user.id": f"u{s % 5}"},
        }
        for s in range(55)
    ]
    records += [
        {"time": now_ns + i, "service": service, "severity": "ERROR", "body": error}
        for i in range(copies)
    ]
    return records


CALLER, CALLEE = "orders", "payments"  # the incident README's incident recipes show
CALLEE_ERROR = "Payment gateway timeout after 3000 ms for merchant 42"
CALLER_ERROR = "Order placement failed: payments returned 504"


def incident_traffic(now_ns: int, copies: int = 3) -> list[dict[str, Any]]:
    """History of `orders` and `payments`, then new ERRORs in both for the same requests (shared
    trace ids): the correlator links them into one incident by their traces alone (no namespace,
    no configured dependency)."""
    records: list[dict[str, Any]] = []
    for service in (CALLER, CALLEE):
        records += history_then_novel_error(service, now_ns, copies=0)
    for i in range(copies):
        trace = f"{0xC0FFEE00 + i:032x}"
        records.append({"time": now_ns + 2 * i, "service": CALLEE, "severity": "ERROR",
                        "body": CALLEE_ERROR, "trace_id": trace})  # fmt: skip
        records.append({"time": now_ns + 2 * i + 1, "service": CALLER, "severity": "ERROR",
                        "body": CALLER_ERROR, "trace_id": trace})  # fmt: skip
    return records


def the_incident(target: str) -> dict[str, Any] | None:
    """The orders/payments incident once it is recorded with both members."""
    out = grpcurl(target, "ListIncidents", {"source": CALLEE, "include_graph": True})
    if out.returncode != 0:
        return None
    for inc in json.loads(out.stdout or "{}").get("incidents", []):
        if int(inc.get("member_count", 0)) >= 2:
            return inc
    return None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="package")
def control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a token that has learned `checkout`, found a novelty and saved a schema,
    and grouped the new errors of `orders` and `payments` into one incident."""
    tmp_path: Path = tmp_path_factory.mktemp("control")
    # The tests read this server for as long as a worker runs the package's share of them, which
    # on a loaded machine is minutes: its wall clock closes buckets all the while, and with the
    # default cool-down (120 one-second buckets) the episodes and incidents the tests find open
    # would resolve under them. An hour's cool-down keeps them open whatever the tests' pace.
    server = start_server(tmp_path, control_config(cooldown="1h"))
    try:
        now = time.time_ns()
        ingest(server, history_then_novel_error(SERVICE, now) + incident_traffic(now))
        channel, control = stub(server.control_target)
        with channel:
            wait_until(lambda: the_incident(server.control_target), CLIENT_TIMEOUT, "the incident")
            wait_until(
                lambda: (
                    control.SearchSimilar(
                        pb2.SearchSimilarRequest(text=CALLEE_ERROR), metadata=AUTH
                    ).episodes
                ),
                CLIENT_TIMEOUT,
                "the episodes' vectors to be stored",
            )
            wait_until(
                lambda: control.ListAnomalies(pb2.ListAnomaliesRequest(), metadata=AUTH).anomalies,
                CLIENT_TIMEOUT,
                "the novelty to be recorded",
            )
            wait_until(
                lambda: control.ListSchemas(pb2.ListSchemasRequest(), metadata=AUTH).schemas,
                CLIENT_TIMEOUT,
                "the schema of checkout to be saved",
            )
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"server exited with {code}; log:\n{server.log()}"
