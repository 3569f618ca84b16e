"""TLS, mutual TLS and bearer tokens on the intake, with the clients people really use.

The OpenTelemetry SDK's own gRPC and HTTP log exporters, grpcurl with `-cacert`, and plain
clients talk to a `via-otlp serve` process whose certificates come from a CA made by the test.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from tests.conftest import CLIENT_TIMEOUT, ServerProcess

from .conftest import (
    LEAN,
    LOGS_EXPORT,
    TOKEN,
    Pki,
    grpcurl,
    https_json,
    send_one,
    start_secure_server,
    tls_block,
)

pytestmark = pytest.mark.slow

SUCCESS, FAILURE = LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE


def _stop(server: ServerProcess) -> None:
    code = server.stop()
    assert code == 0, f"server exited with {code}; log:\n{server.log()}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    """TLS on both listeners and a bearer token (two accepted: rotation)."""
    extra = {
        **LEAN,
        "receive": {
            "grpc": {"tls": tls_block(pki)},
            "http": {"tls": tls_block(pki)},
            "auth": {"bearer_token": ["previous-token", TOKEN]},
        },
    }
    server = start_secure_server(tmp_path_factory.mktemp("tls"), extra, ca=pki.ca.cert)
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    """Mutual TLS on both listeners: clients need a certificate the test CA signed."""
    extra = {
        **LEAN,
        "receive": {
            "grpc": {"tls": tls_block(pki, mutual=True)},
            "http": {"tls": tls_block(pki, mutual=True)},
        },
    }
    server = start_secure_server(
        tmp_path_factory.mktemp("mtls"), extra, ca=pki.ca.cert, client=pki.client
    )
    yield server
    _stop(server)


def requests(server: ServerProcess, pki: Pki, outcome: str, transport: str = "grpc") -> int:
    status = https_json(f"https://localhost:{server.http_port}/status", pki.ca.cert, TOKEN)[1]
    return int(status["intake"]["requests"].get(transport, {}).get(outcome, 0))


# Exporters that must get an answer wait as long as a loaded machine may take; the ones refused
# in the TLS handshake (retried by the SDK until their deadline) are given a short one, which
# makes them no less a failure.
REFUSED_IN_HANDSHAKE = 5.0


def grpc_exporter(
    port: int, pki: Pki, token: str = "", client: bool = False, timeout: float = CLIENT_TIMEOUT
) -> GrpcLogExporter:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.pem,
        private_key=pki.client.key_pem if client else None,
        certificate_chain=pki.client.pem if client else None,
    )
    headers = {"authorization": f"Bearer {token}"} if token else None
    return GrpcLogExporter(
        endpoint=f"localhost:{port}", credentials=credentials, headers=headers, timeout=timeout
    )


@pytest.fixture(autouse=True)
def _requests_honours_certificate_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over a session's own CA file
    (psf/requests#3829), so the SDK's HTTP exporter would ignore `certificate_file` here."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def http_exporter(
    port: int,
    pki: Pki,
    token: str = "",
    client: Path | None = None,
    key: Path | None = None,
    timeout: float = CLIENT_TIMEOUT,
) -> HttpLogExporter:
    return HttpLogExporter(
        endpoint=f"https://localhost:{port}/v1/logs",
        certificate_file=str(pki.ca.cert),
        client_certificate_file=str(client) if client else None,
        client_key_file=str(key) if key else None,
        headers={"authorization": f"Bearer {token}"} if token else None,
        timeout=timeout,
    )


# -- TLS and tokens ----------------------------------------------------------------------------


def test_sdk_grpc_exporter_over_tls_needs_the_token(tls_server: ServerProcess, pki: Pki) -> None:
    before = requests(tls_server, pki, "accepted"), requests(tls_server, pki, "unauthenticated")
    assert send_one(grpc_exporter(tls_server.grpc_port, pki, TOKEN)) is SUCCESS
    assert send_one(grpc_exporter(tls_server.grpc_port, pki, "previous-token")) is SUCCESS
    assert send_one(grpc_exporter(tls_server.grpc_port, pki)) is FAILURE
    assert send_one(grpc_exporter(tls_server.grpc_port, pki, "wrong")) is FAILURE
    after = requests(tls_server, pki, "accepted"), requests(tls_server, pki, "unauthenticated")
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)


def test_sdk_http_exporter_over_tls_needs_the_token(tls_server: ServerProcess, pki: Pki) -> None:
    before = requests(tls_server, pki, "accepted", "http")
    denied = requests(tls_server, pki, "unauthenticated", "http")
    assert send_one(http_exporter(tls_server.http_port, pki, TOKEN)) is SUCCESS
    assert send_one(http_exporter(tls_server.http_port, pki)) is FAILURE
    assert send_one(http_exporter(tls_server.http_port, pki, "wrong")) is FAILURE
    assert requests(tls_server, pki, "accepted", "http") - before == 1
    assert requests(tls_server, pki, "unauthenticated", "http") - denied == 2


def test_grpcurl_with_cacert(tls_server: ServerProcess, pki: Pki) -> None:
    target = f"localhost:{tls_server.grpc_port}"
    ca = ("-cacert", str(pki.ca.cert))
    listed = grpcurl(*ca, target, "list")  # reflection stays open
    assert listed.returncode == 0, listed.stderr
    assert "opentelemetry.proto.collector.logs.v1.LogsService" in listed.stdout.split()
    health = grpcurl(*ca, target, "grpc.health.v1.Health/Check")  # health stays open
    assert json.loads(health.stdout)["status"] == "SERVING", health.stderr
    body = json.dumps(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]}
    )
    denied = grpcurl(*ca, "-d", body, target, LOGS_EXPORT)
    assert denied.returncode != 0
    assert "Unauthenticated" in denied.stderr
    ok = grpcurl(*ca, "-H", f"authorization: Bearer {TOKEN}", "-d", body, target, LOGS_EXPORT)
    assert ok.returncode == 0, ok.stderr
    untrusted = grpcurl(target, "list")  # the system CAs do not know the test CA
    assert untrusted.returncode != 0
    assert "certificate" in untrusted.stderr


def test_plaintext_clients_are_refused(tls_server: ServerProcess, pki: Pki) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    url = f"http://127.0.0.1:{tls_server.http_port}/healthz"
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(url, timeout=3)
    healthz = f"https://localhost:{tls_server.http_port}/healthz"
    assert https_json(healthz, pki.ca.cert)[0] == 200  # and TLS clients are still served


def test_health_is_open_and_status_needs_the_token(tls_server: ServerProcess, pki: Pki) -> None:
    base = f"https://localhost:{tls_server.http_port}"
    assert https_json(f"{base}/healthz", pki.ca.cert) == (200, {"status": "SERVING"})
    code, body = https_json(f"{base}/status", pki.ca.cert)
    assert code == 401 and "bearer token" in body["error"]
    code, body = https_json(f"{base}/status", pki.ca.cert, TOKEN)
    assert code == 200 and body["state"] == "serving"
    assert TOKEN not in json.dumps(body)
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/metrics", timeout=CLIENT_TIMEOUT, context=context)
    assert info.value.code == 401
    request = urllib.request.Request(f"{base}/metrics")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT, context=context) as resp:
        assert b'outcome="unauthenticated"' in resp.read()


def test_ndjson_needs_the_token_too(tls_server: ServerProcess, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    url = f"https://localhost:{tls_server.http_port}/v1/ingest"
    line = b'{"service": "checkout", "body": "hello"}\n'
    request = urllib.request.Request(url, data=line, method="POST")
    denied = requests(tls_server, pki, "unauthenticated", "ndjson")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT, context=context)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT, context=context) as resp:
        assert json.loads(resp.read())["accepted"] == 1
    assert requests(tls_server, pki, "unauthenticated", "ndjson") == denied + 1


# -- mutual TLS --------------------------------------------------------------------------------


def test_sdk_exporters_under_mutual_tls(mtls_server: ServerProcess, pki: Pki) -> None:
    grpc_port, http_port = mtls_server.grpc_port, mtls_server.http_port
    assert send_one(grpc_exporter(grpc_port, pki, client=True)) is SUCCESS
    refused = REFUSED_IN_HANDSHAKE
    assert send_one(grpc_exporter(grpc_port, pki, client=False, timeout=refused)) is FAILURE
    client, key = pki.client.cert, pki.client.key
    assert send_one(http_exporter(http_port, pki, client=client, key=key)) is SUCCESS
    assert send_one(http_exporter(http_port, pki, timeout=refused)) is FAILURE
    rogue, rogue_key = pki.rogue_client.cert, pki.rogue_client.key
    assert (
        send_one(http_exporter(http_port, pki, client=rogue, key=rogue_key, timeout=refused))
        is FAILURE
    )
    rogue_grpc = GrpcLogExporter(
        endpoint=f"localhost:{grpc_port}",
        credentials=grpc.ssl_channel_credentials(
            pki.ca.pem, pki.rogue_client.key_pem, pki.rogue_client.pem
        ),
        timeout=refused,
    )
    assert send_one(rogue_grpc) is FAILURE


def test_mutual_tls_handshake_needs_a_client_certificate(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    """Below the exporters: the HTTP listener ends a handshake without a client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    with (
        socket.create_connection(
            ("127.0.0.1", mtls_server.http_port), timeout=CLIENT_TIMEOUT
        ) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        if not tls.recv(1):  # TLS 1.3 reports the refusal on the first read
            raise ConnectionError("closed")
    context.load_cert_chain(pki.client.cert, pki.client.key)
    with (
        socket.create_connection(
            ("127.0.0.1", mtls_server.http_port), timeout=CLIENT_TIMEOUT
        ) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert tls.recv(64).startswith(b"HTTP/1.1 200")
