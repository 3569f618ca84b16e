"""TLS with a private CA: OTLP/gRPC and OTLP/HTTPS to loopback servers with a test certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import grpc.aio
import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from via_otlp.emit import Emitter
from via_otlp.emit.config import TlsConfig

from .conftest import GrpcServer, Recorder, _LogsServicer, fast_config, make_event, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=via-test-ca",
    )
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    run(
        "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "1", "-extfile", "san.ext",
    )  # fmt: skip
    return Certs(d / "ca.pem", d / "srv.pem", d / "srv.key")


async def test_grpc_over_tls_with_ca_file(certs: Certs) -> None:
    rec = Recorder()
    server = grpc.aio.server()
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(rec), server)
    creds = grpc.ssl_server_credentials([(certs.key.read_bytes(), certs.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        config = fast_config(
            f"localhost:{port}", tls=TlsConfig(insecure=False, ca_file=str(certs.ca))
        )
        emitter = Emitter(config)
        await emitter.start()
        emitter.submit([make_event()])
        await emitter.shutdown()
        assert len(rec.log_records) == 1
        assert emitter.stats().sent == 1
    finally:
        await server.stop(grace=None)


async def test_https_with_ca_file_and_untrusted_without(certs: Certs) -> None:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        body = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/logs", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        base = fast_config(f"https://localhost:{port}", protocol="http")
        trusted = Emitter(replace(base, tls=TlsConfig(ca_file=str(certs.ca))))
        await trusted.start()
        trusted.submit([make_event()])
        await trusted.shutdown()
        assert trusted.stats().sent == 1

        # The system CAs do not know the test CA. A long request timeout: on a loaded machine
        # (CI with burners beside it) four 2 s handshakes timed out and no attempt reached the
        # certificate check; the refusal itself is immediate.
        untrusted = Emitter(replace(base, timeout=30.0))
        await untrusted.start()
        untrusted.submit([make_event()])
        # its first attempt has failed (on a loaded machine, not necessarily within the 0.3 s
        # the shutdown below allows)
        await wait_until(lambda: bool(untrusted.stats().last_error))
        await untrusted.shutdown(timeout=0.3)
        assert untrusted.stats().sent == 0
        assert "certificate" in untrusted.stats().last_error.lower()
        assert len(received) == 1
    finally:
        await runner.cleanup()


async def test_no_scheme_means_tls_and_the_error_says_how_to_send_plaintext(
    grpc_server: GrpcServer,
) -> None:
    """The Collector's rule: `host:port` is TLS, so a plaintext receiver refuses the handshake,
    and the error names the fix; `http://host:port` reaches the same receiver."""
    tls = Emitter(fast_config(f"127.0.0.1:{grpc_server.port}"))
    await tls.start()
    tls.submit([make_event()])
    await wait_until(lambda: tls.stats().retries >= 1)
    await tls.shutdown(timeout=0.3)
    assert tls.stats().sent == 0
    assert "has no scheme, so TLS is used" in tls.stats().last_error
    assert grpc_server.rec.logs == []

    plain = Emitter(fast_config(f"http://127.0.0.1:{grpc_server.port}"))
    await plain.start()
    plain.submit([make_event()])
    await plain.shutdown()
    assert plain.stats().sent == 1
    assert len(grpc_server.rec.log_records) == 1
