"""Certificate rotation while serving: new files on disk are served without a restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from tests.certs import CertAuthority, Issued
from tests.conftest import CLIENT_TIMEOUT

from .conftest import (
    LEAN,
    TOKEN,
    https_json,
    send_one,
    served_certificate_serial,
    start_secure_server,
    wait_until,
)

pytestmark = pytest.mark.slow


def _install(issued: Issued, cert: Path, key: Path) -> None:
    """Replace the served files the way a certificate manager does: write aside, rename."""
    for source, target in ((issued.key, key), (issued.cert, cert)):
        staging = target.with_name(f".{target.name}.new")
        shutil.copyfile(source, staging)
        os.replace(staging, target)


def _exporter(port: int, ca: CertAuthority, timeout: float = CLIENT_TIMEOUT) -> GrpcLogExporter:
    """An exporter trusting `ca`: `timeout` is generous for one that must succeed; one refused
    in the handshake is retried by the SDK until it, so the refused one is given a short one."""
    return GrpcLogExporter(
        endpoint=f"localhost:{port}",
        credentials=grpc.ssl_channel_credentials(ca.pem),
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=timeout,
    )


def test_rotated_certificates_are_served_without_a_restart(tmp_path: Path) -> None:
    old_ca = CertAuthority.create(tmp_path / "old-ca", "old-ca")
    new_ca = CertAuthority.create(tmp_path / "new-ca", "new-ca")
    first = old_ca.issue(tmp_path / "issued" / "first", "localhost")
    second = new_ca.issue(tmp_path / "issued" / "second", "localhost")
    served = tmp_path / "served"
    served.mkdir()
    cert, key = served / "tls.crt", served / "tls.key"
    _install(first, cert, key)
    tls = {"cert_file": str(cert), "key_file": str(key)}
    extra = {
        **LEAN,
        "receive": {"grpc": {"tls": tls}, "http": {"tls": tls}, "auth": {"bearer_token": TOKEN}},
        "control": {"token": "ctl", "tls": tls},
    }
    server = start_secure_server(tmp_path, extra, ca=old_ca.cert)
    ports = {"grpc": (server.grpc_port, "h2"), "http": (server.http_port, ""),
             "control": (server.control_port, "h2")}  # fmt: skip
    try:
        for port, alpn in ports.values():
            assert served_certificate_serial(port, alpn=alpn) == first.serial
        assert send_one(_exporter(server.grpc_port, old_ca)) is LogRecordExportResult.SUCCESS

        # A broken certificate is not served: the previous one stays, with one warning.
        cert.write_text(
            "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
        )
        for port, alpn in ports.values():
            assert served_certificate_serial(port, alpn=alpn) == first.serial
            assert served_certificate_serial(port, alpn=alpn) == first.serial
        assert "cannot reload the certificate files" in server.log()

        _install(second, cert, key)
        for name, (port, alpn) in ports.items():
            wait_until(
                lambda port=port, alpn=alpn: (
                    served_certificate_serial(port, alpn=alpn) == second.serial
                ),
                what=f"the {name} listener to serve the new certificate",
            )
        assert send_one(_exporter(server.grpc_port, new_ca)) is LogRecordExportResult.SUCCESS
        refused = _exporter(server.grpc_port, old_ca, timeout=5)
        assert send_one(refused) is LogRecordExportResult.FAILURE
        status = https_json(f"https://localhost:{server.http_port}/status", new_ca.cert, TOKEN)[1]
        assert status["intake"]["requests"]["grpc"]["accepted"] == 2
        log = server.log()
        for where in ("receive.grpc.tls", "receive.http.tls", "control.tls"):
            assert f"{where}: certificate files changed, reloaded" in log
            # one warning per broken version of the files, not one per handshake
            assert log.count(f"{where}: cannot reload the certificate files") == 1
    finally:
        assert server.stop() == 0, server.log()
