"""Shared fixtures: free ports, and a via-otlp server started as a user starts it."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Before any test module imports grpc: via_otlp turns gRPC's fork handlers off (the tests fork
# servers and pg_ctl while their own gRPC client threads may be busy).
import via_otlp  # noqa: F401

# Property tests draw the same examples on every run (derandomized, seeded by each test), so CI
# passes or fails on the code, not on the draw; and no example is timed (a loaded machine made
# the 200 ms deadline and the too-slow health check fail). HYPOTHESIS_PROFILE=explore draws afresh.
_UNTIMED: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", derandomize=True, **_UNTIMED)
settings.register_profile("explore", derandomize=False, **_UNTIMED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# Listening ports come from below the ephemeral range (32768-60999 on Linux), where no client
# socket of another process can take them between our choosing and the server's binding; each
# choice is checked free, and never handed out twice by this process. Under xdist each worker
# takes only the ports of its own residue (worker index modulo the worker count): a port one
# worker chose and checked free, but whose server is not listening yet (a downstream a test
# starts later, a server still starting), is never chosen by another.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def free_port() -> int:
    """A loopback TCP port nothing listens on now (for a server a test is about to start)."""
    for _ in range(1000):
        port = _rng.randrange(_PORT_RANGE[0] + _WORKER % _WORKERS, _PORT_RANGE[1], _WORKERS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found in {_PORT_RANGE}")


# Client timeouts are deadlines for an answer that must come, not a measure of speed: generous,
# so that a busy machine slows a test down without failing it.
CLIENT_TIMEOUT = 120.0


def http_post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes]:
    """POST `body`; the status code and the response body, whatever the status."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def http_json(url: str, timeout: float = CLIENT_TIMEOUT) -> Any:
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

    def wait_for(
        self, predicate: Any, timeout: float = CLIENT_TIMEOUT, what: str = "condition"
    ) -> Any:
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

    def stop(self, timeout: float = 60.0) -> int:
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


def wait_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = CLIENT_TIMEOUT) -> float:
    """Seconds until `url` answers 200; fails fast if the process exits."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
            pass  # not up yet (or, briefly, someone else's port: the process check decides)
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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per core this process may use, at most 4 (each worker starts its own
    servers and embedded PostgreSQL; past 4 that setup costs more than the spread saves)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


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
    tmp_path: Path,
    extra: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    attempt: int = 1,
) -> ServerProcess:
    """Write a config with free loopback ports and run `via-otlp serve --config` on it
    (`preexec_fn` runs in the child before it starts, e.g. to set a resource limit)."""
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
        preexec_fn=preexec_fn,
    )
    server = ServerProcess(
        proc, grpc_port, http_port, config_path, data_dir, log_path, control_port
    )
    try:
        wait_serving(f"{server.http_url}/healthz", proc)
    except AssertionError:
        server.stop()
        if attempt < 3 and "cannot listen" in server.log():  # a port taken meanwhile
            return start_server(tmp_path, extra, env, preexec_fn, attempt=attempt + 1)
        raise AssertionError(f"server did not start; log:\n{server.log()}") from None
    return server


def intake_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server for intake tests: no registry and no correlation (none of its users reads
    them), so no embedded PostgreSQL starts with it (a second of CPU less a test)."""
    srv = start_server(tmp_path, {"registry": {"enabled": False}, "correlate": {"enabled": False}})
    yield srv
    code = srv.stop()
    assert code == 0, f"server exited with {code} on SIGTERM; log:\n{srv.log()}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """An intake server of this test's own (`intake_server`)."""
    yield from intake_server(tmp_path)


# OTLP/gRPC downstream servers that record what they receive (written for the emit tests),
# shared with the end-to-end tests.
from tests.emit.conftest import grpc_server_factory  # noqa: E402, F401
