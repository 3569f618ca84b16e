"""Fixtures of the security tests: a test PKI, SDK exporters that report their result, grpcurl."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.certs import CertAuthority, Issued, served_serial
from tests.conftest import (
    BIN,
    CLIENT_TIMEOUT,
    ServerProcess,
    deep_merge,
    free_port,
    http_json,
    server_data_dir,
)

TOKEN = "intake-s3cret-7f3a"
LOGS_EXPORT = "opentelemetry.proto.collector.logs.v1.LogsService/Export"


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate it signed, and a
    client certificate of another CA (which a server under mutual TLS must refuse)."""

    ca: CertAuthority
    server: Issued
    client: Issued
    rogue_client: Issued
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority.create(d / "ca", "via-test-ca")
    rogue = CertAuthority.create(d / "rogue", "rogue-ca")
    return Pki(
        ca=ca,
        server=ca.issue(d / "server", "localhost"),
        client=ca.issue(d / "client", "collector", client=True, dns=(), ip=()),
        rogue_client=rogue.issue(d / "rogue-client", "collector", client=True, dns=(), ip=()),
        directory=d,
    )


def tls_block(pki: Pki, *, mutual: bool = False) -> dict[str, str]:
    block = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key)}
    if mutual:
        block["client_ca_file"] = str(pki.ca.cert)
    return block


class RecordingExporter:
    """An SDK log exporter whose every export result is kept (the SDK processors drop them)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.results: list[LogRecordExportResult] = []

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        self.results.append(result)
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self.inner.shutdown()


def send_one(exporter: Any, body: str = "Payment declined for order 42") -> LogRecordExportResult:
    """Emit one log record through the SDK with `exporter`; the exporter's answer."""
    recording = RecordingExporter(exporter)
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(recording))  # type: ignore[arg-type]
    provider.get_logger("test.security").emit(body=body, severity_text="ERROR")
    provider.shutdown()
    assert len(recording.results) == 1
    return recording.results[0]


def grpcurl(*args: str, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """grpcurl with a deadline for an answer that must come (generous: a loaded machine is slow)."""
    return subprocess.run(
        [str(BIN / "grpcurl"), "-max-time", "60", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def https_json(
    url: str,
    ca: Path,
    token: str = "",
    timeout: float = CLIENT_TIMEOUT,
    client: Issued | None = None,
) -> tuple[int, Any]:
    """GET over TLS trusting `ca` (with a `client` certificate under mutual TLS): (status, JSON)."""
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def served_certificate_serial(port: int, ca_files: Sequence[Path] = (), alpn: str = "") -> int:
    """The serial of the certificate a TLS listener presents now (verification off: we only
    look at it; `alpn` "h2" for a gRPC port)."""
    import socket

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return served_serial(der)


def wait_until(predicate: Any, timeout: float = CLIENT_TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- a `via-otlp serve` process whose listeners may speak TLS ---------------------------------

LEAN = {"registry": {"enabled": False}, "correlate": {"enabled": False}}  # fast to start


def start_secure_server(
    tmp_path: Path,
    extra: dict[str, Any],
    *,
    ca: Path | None = None,
    client: Issued | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """`via-otlp serve` on free loopback ports with `extra` merged into its config; `ca` (and
    `client` under mutual TLS) is what /healthz is checked with when receive.http.tls is set."""
    import os

    grpc_port, http_port, control_port = free_port(), free_port(), free_port()
    config: dict[str, Any] = {
        "receive": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
        },
        "control": {"endpoint": f"127.0.0.1:{control_port}"},
        "state": {"data_dir": str(server_data_dir(tmp_path))},
    }
    deep_merge(config, json.loads(json.dumps(extra)))
    config_path = tmp_path / "via.json5"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = tmp_path / "server.log"
    proc = subprocess.Popen(
        [str(BIN / "via-otlp"), "serve", "--config", str(config_path)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})}, cwd=tmp_path,
    )  # fmt: skip
    server = ServerProcess(
        proc, grpc_port, http_port, config_path, Path(config["state"]["data_dir"]), log_path,
        control_port,
    )  # fmt: skip
    scheme = "https" if ca is not None else "http"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}; log:\n{server.log()}")
        try:
            if ca is None:
                return bool(http_json(f"{scheme}://127.0.0.1:{http_port}/healthz", timeout=1))
            url = f"https://localhost:{http_port}/healthz"
            return https_json(url, ca, timeout=1, client=client)[0] == 200
        except OSError:
            return False

    try:
        wait_until(healthy, CLIENT_TIMEOUT, "the server to serve")
    except AssertionError:
        server.stop()
        raise
    return server
