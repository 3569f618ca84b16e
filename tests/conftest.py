"""Shared fixtures: free ports, and a via-otlp server started as a user starts it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class ServerProcess:
    """A `via-otlp serve` child process with its ports and config file."""

    proc: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    config_path: Path
    data_dir: Path
    log_path: Path
    control_port: int = 0

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def control_target(self) -> str:
        return f"127.0.0.1:{self.control_port}"

    def status(self, detail: str = "") -> Any:
        return http_json(f"{self.http_url}/status" + (f"?detail={detail}" if detail else ""))

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status("rhythms")
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; last status: {json.dumps(last)[:2000]}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"server did not stop on SIGTERM; log:\n{self.log()}"
                ) from None
        return int(self.proc.returncode)


def wait_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> float:
    """Seconds until `url` answers 200; fails fast if the process exits."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"server not serving at {url} after {timeout}s")


_DATA_ROOT: Path | None = None


def server_data_dir(tmp_path: Path) -> Path:
    """A data directory for a server of this test, the same for every server started from it.

    pytest's own tmp_path sits under a directory only root may enter; run as root, the embedded
    PostgreSQL would then move its cluster to /var/tmp (see registry/embedded.py) and leave it
    there. This one is reachable by the server user and removed when the session ends.
    """
    global _DATA_ROOT
    if _DATA_ROOT is None:
        _DATA_ROOT = Path(tempfile.mkdtemp(prefix="via-test-data-"))
        _DATA_ROOT.chmod(0o755)
    path = _DATA_ROOT / hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    path.mkdir(exist_ok=True)
    path.chmod(0o755)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _DATA_ROOT is not None:
        shutil.rmtree(_DATA_ROOT, ignore_errors=True)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Merge `extra` into `base` recursively (dicts merge, other values replace)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def start_server(
    tmp_path: Path, extra: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> ServerProcess:
    """Write a config with free loopback ports and run `via-otlp serve --config` on it."""
    grpc_port, http_port = free_port(), free_port()
    control_port = free_port()
    data_dir = server_data_dir(tmp_path)
    config: dict[str, Any] = {
        "receive": {
            "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
            "http": {"endpoint": f"127.0.0.1:{http_port}"},
        },
        "control": {"endpoint": f"127.0.0.1:{control_port}"},
        "state": {"data_dir": str(data_dir)},
    }
    deep_merge(config, extra or {})
    config_path = tmp_path / "via.json5"
    config_path.write_text(json.dumps(config, indent=2))
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [str(BIN / "via-otlp"), "serve", "--config", str(config_path)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
    )
    server = ServerProcess(
        proc, grpc_port, http_port, config_path, data_dir, log_path, control_port
    )
    try:
        wait_serving(f"{server.http_url}/healthz", proc)
    except AssertionError:
        server.stop()
        raise AssertionError(f"server did not start; log:\n{server.log()}") from None
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path)
    yield srv
    code = srv.stop()
    assert code == 0, f"server exited with {code} on SIGTERM; log:\n{srv.log()}"


# OTLP/gRPC downstream servers that record what they receive (written for the emit tests),
# shared with the end-to-end tests.
from tests.emit.conftest import grpc_server_factory  # noqa: E402, F401
