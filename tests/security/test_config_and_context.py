"""Security settings that cannot silently not apply: config errors with key paths, the TLS
minimum version really enforced, and missing certificate files stopping the start."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.certs import CertAuthority
from tests.conftest import BIN, free_port
from via_otlp.config import parse_config
from via_otlp.errors import ConfigError, StartupError
from via_otlp.security.config import ServerTlsConfig
from via_otlp.security.tls import CertificateFiles, ssl_server_context


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{receive: {grpc: {tls: {cert_file: 'a.pem'}}}}", "receive.grpc.tls.key_file: cert_file and key_file"),
        ("{receive: {http: {tls: {key_file: 'a.key'}}}}", "receive.http.tls.cert_file: cert_file and key_file"),
        ("{receive: {http: {tls: {client_ca_file: 'ca.pem'}}}}", "receive.http.tls.client_ca_file: needs cert_file"),
        ("{receive: {http: {tls: {min_version: '1.1'}}}}", "receive.http.tls.min_version: must be one of"),
        (
            "{receive: {grpc: {tls: {cert_file: 'a', key_file: 'b', min_version: '1.3'}}}}",
            "receive.grpc.tls.min_version: '1.3' cannot be enforced on a gRPC listener",
        ),
        (
            "{control: {token: 't', tls: {cert_file: 'a', key_file: 'b', min_version: '1.3'}}}",
            "control.tls.min_version: '1.3' cannot be enforced",
        ),
        ("{receive: {grpc: {tls: {ca_file: 'ca.pem'}}}}", "receive.grpc.tls.ca_file: unknown key"),
        ("{receive: {auth: {bearer_token: 'has space'}}}", "receive.auth.bearer_token: must be printable ASCII"),
        ("{receive: {auth: {bearer_token: ['ok', 'li\\nne']}}}", "receive.auth.bearer_token[1]: must be printable"),
        ("{control: {endpoint: '0.0.0.0:4320'}}", "control.token: is required when the control API listens beyond loopback"),
        ("{control: {endpoint: '10.1.2.3:4320'}}", "control.token: is required"),
        ("{control: {endpoint: 'via.internal:4320'}}", "control.token: is required"),
    ],
)  # fmt: skip
def test_bad_security_settings_name_their_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    assert str(info.value).startswith(message), str(info.value)


def test_what_is_allowed() -> None:
    config = parse_config(
        "{receive: {http: {tls: {cert_file: 'a', key_file: 'b', min_version: '1.3'}},"
        " auth: {bearer_token: ['${env:OLD:-}', '${env:NEW}']}},"
        " control: {endpoint: 'localhost:4320', enabled: true}}",
        environ={"NEW": "n3w"},
    )
    assert config.receive.http.tls.enabled and not config.receive.http.tls.mutual
    assert config.receive.auth.tokens == ("n3w",)
    # control beyond loopback: fine with a token, or when it is off
    parse_config("{control: {endpoint: '0.0.0.0:4320', token: 's3cret'}}", environ={})
    parse_config("{control: {endpoint: '0.0.0.0:4320', enabled: false}}", environ={})
    parse_config("{}", environ={"VIA_CONTROL_ENDPOINT": "0.0.0.0:1", "VIA_CONTROL_TOKEN": "t"})


def test_missing_certificate_files_stop_the_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "via.json5"
    tls = {"cert_file": str(tmp_path / "nope.pem"), "key_file": str(tmp_path / "nope.key")}
    config.write_text(json.dumps({
        "receive": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}", "tls": tls},
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"}},
        "control": {"endpoint": f"127.0.0.1:{free_port()}"},
        "registry": {"enabled": False}, "correlate": {"enabled": False},
        "state": {"data_dir": str(tmp_path / "data")},
    }))  # fmt: skip
    out = subprocess.run(
        [str(BIN / "via-otlp"), "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("via-otlp: receive.grpc.tls: cannot read"), out.stderr
    assert "nope.pem" in last


async def _handshake(port: int, ca: Path, maximum: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = maximum
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    return str(version)


async def test_min_version_is_enforced_on_http(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    issued = ca.issue(tmp_path / "srv", "localhost")
    files = CertificateFiles(
        ServerTlsConfig(str(issued.cert), str(issued.key), min_version="1.3"), "receive.http.tls"
    )
    server = await asyncio.start_server(
        lambda r, w: w.close(), "127.0.0.1", 0, ssl=ssl_server_context(files)
    )
    port = server.sockets[0].getsockname()[1]
    try:
        assert await _handshake(port, ca.cert, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _handshake(port, ca.cert, ssl.TLSVersion.TLSv1_2)
    finally:
        server.close()
        await server.wait_closed()


def test_files_that_do_not_match_are_a_startup_error(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    one, other = ca.issue(tmp_path / "one", "localhost"), ca.issue(tmp_path / "other", "localhost")
    files = CertificateFiles(ServerTlsConfig(str(one.cert), str(other.key)), "control.tls")
    with pytest.raises(StartupError, match=r"^control\.tls: the certificate files do not load"):
        files.load()
