"""The control API's token and TLS, a bare `via-otlp serve` configured by the environment alone,
and the modes of what it writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ServerProcess, free_port, server_data_dir, wait_serving

from .conftest import LEAN, Pki, grpcurl, start_secure_server, tls_block

pytestmark = pytest.mark.slow

CONTROL_TOKEN = "ctl-s3cret-91c2"
GET_STATUS = "via.v1.Control/GetStatus"


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIA_CONTROL_")}
    return subprocess.run(
        [str(BIN / "via-otlp"), "ctl", *args],
        capture_output=True, text=True, timeout=60, env={**clean, **(env or {})},
    )  # fmt: skip


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `via-otlp serve` without --config: nothing else configures it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIA_")}
    return {
        **clean,
        "VIA_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "VIA_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "VIA_CONTROL_ENDPOINT": f"127.0.0.1:{free_port()}",
        "VIA_DATA_DIR": str(server_data_dir(tmp_path)),
        **extra,
    }


def _private(path: Path, *, group_traverse_ok: bool) -> list[str]:
    """Paths under `path` (itself included) that anyone but their owner could read or write."""
    bad = []
    for p in (path, *path.rglob("*")):
        if p.is_symlink() or p.is_socket():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        allowed = 0o700 if p.is_dir() else 0o600
        if p == path and group_traverse_ok:
            allowed |= 0o010  # the embedded PostgreSQL's user passes through (as root only)
        if mode & ~allowed:
            bad.append(f"{p} {mode:o}")
    return bad


def test_bare_serve_takes_everything_from_the_environment(tmp_path: Path) -> None:
    """VIA_CONTROL_TOKEN alone protects the control API (grpcurl without it: UNAUTHENTICATED);
    every other VIA_* variable applies too; what the service writes is private to it."""
    emit_port = free_port()
    env = _bare_env(
        tmp_path,
        VIA_CONTROL_TOKEN=CONTROL_TOKEN,
        VIA_EMIT_ENDPOINT=f"http://127.0.0.1:{emit_port}",
        VIA_LOG_LEVEL="debug",
    )
    log_path = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [str(BIN / "via-otlp"), "serve"], env=env, cwd=tmp_path,
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    http = f"http://{env['VIA_HTTP_ENDPOINT']}"
    control = env["VIA_CONTROL_ENDPOINT"]
    data_dir = Path(env["VIA_DATA_DIR"])
    server = ServerProcess(
        proc, int(env["VIA_GRPC_ENDPOINT"].rsplit(":", 1)[1]),
        int(env["VIA_HTTP_ENDPOINT"].rsplit(":", 1)[1]), tmp_path / "none", data_dir, log_path,
        int(control.rsplit(":", 1)[1]),
    )  # fmt: skip
    try:
        wait_serving(f"{http}/healthz", proc, timeout=60)
        denied = grpcurl("-plaintext", control, GET_STATUS)
        assert denied.returncode != 0
        assert "Unauthenticated" in denied.stderr
        auth = ("-H", f"authorization: Bearer {CONTROL_TOKEN}")
        ok = grpcurl("-plaintext", *auth, control, GET_STATUS)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["state"] == "serving"
        status = ctl("status", "--json", env={k: env[k] for k in env if k.startswith("VIA_")})
        assert status.returncode == 0, status.stderr
        assert ctl("status", "--target", control).returncode == 1  # no token, refused
        shown = server.status()
        assert shown["emit"]["state"] != "console"  # VIA_EMIT_ENDPOINT applied
        assert CONTROL_TOKEN not in json.dumps(shown)
    finally:
        assert server.stop(timeout=60) == 0, server.log()
    assert CONTROL_TOKEN not in server.log()
    state = [*data_dir.glob("*.json"), *data_dir.glob("shards/*.snap")]
    assert state, "no state was saved"
    assert any((data_dir / "qdrant").rglob("*")), "the vector store wrote nothing"
    assert (data_dir / "postgres" / "PG_VERSION").is_file()  # the cluster stayed in place
    assert _private(data_dir, group_traverse_ok=os.geteuid() == 0) == []


def test_control_beyond_loopback_without_a_token_does_not_start(tmp_path: Path) -> None:
    env = _bare_env(tmp_path, VIA_CONTROL_ENDPOINT=f"0.0.0.0:{free_port()}")
    out = subprocess.run(
        [str(BIN / "via-otlp"), "serve"], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("via-otlp: configuration error: control.token: is required")
    assert "VIA_CONTROL_TOKEN" in lines[0]


def test_config_check_refuses_the_same(tmp_path: Path) -> None:
    config = tmp_path / "via.json5"
    config.write_text('{control: {endpoint: "0.0.0.0:4320"}}')
    out = subprocess.run(
        [str(BIN / "via-otlp"), "config", "check", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "control.token: is required" in out.stderr


def test_control_over_mutual_tls_with_ctl_and_grpcurl(tmp_path: Path, pki: Pki) -> None:
    extra = {**LEAN, "control": {"token": CONTROL_TOKEN, "tls": tls_block(pki, mutual=True)}}
    server = start_secure_server(tmp_path, extra)
    target = f"localhost:{server.control_port}"
    token = ("--token", CONTROL_TOKEN)
    client = ("--cert", str(pki.client.cert), "--key", str(pki.client.key))
    try:
        ok = ctl(
            "status", "--json", "--target", target, "--cacert", str(pki.ca.cert), *client, *token
        )
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["state"] == "serving"

        no_cert = ctl("status", "--target", target, "--cacert", str(pki.ca.cert), *token)
        assert no_cert.returncode == 1
        plaintext = ctl("status", "--target", target, *token)
        assert plaintext.returncode == 1
        assert "--cacert" in plaintext.stderr

        tls = (
            "-cacert",
            str(pki.ca.cert),
            "-cert",
            str(pki.client.cert),
            "-key",
            str(pki.client.key),
        )
        denied = grpcurl(*tls, target, GET_STATUS)
        assert "Unauthenticated" in denied.stderr
        called = grpcurl(*tls, "-H", f"authorization: Bearer {CONTROL_TOKEN}", target, GET_STATUS)
        assert called.returncode == 0, called.stderr
        assert grpcurl("-cacert", str(pki.ca.cert), target, "list").returncode != 0  # no cert
    finally:
        assert server.stop() == 0, server.log()
