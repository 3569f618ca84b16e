"""The embedded PostgreSQL killed with SIGKILL under a running server: it is started again
(with backoff), anomalies recorded meanwhile wait in the write buffer and land once it is back,
and intake never stops."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, start_server
from tests.e2e.test_crash import CONFIG, episodes, lines, send, traffic

pytestmark = pytest.mark.slow


def postmaster_pid(server: ServerProcess) -> int:
    return int((server.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def test_killed_embedded_postgres_is_restarted_and_buffered_writes_land(tmp_path: Path) -> None:
    server = start_server(tmp_path, CONFIG)
    try:
        send(server, traffic(range(0, 80), {}))
        pid = postmaster_pid(server)
        os.kill(pid, signal.SIGKILL)
        # an anomaly while PostgreSQL is away (or restarting): it waits in the write buffer
        novel = {83: lines(83, 2, "disk full on /dev/sda1 while writing order 17", "ERROR")}
        send(server, traffic(range(80, 86), novel))
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=CLIENT_TIMEOUT) as r:
            assert r.status == 200
        status = server.wait_for(
            lambda s: (
                s["registry"]["embedded_restarts"] >= 1
                and s["registry"]["state"] == "ok"
                and s["registry"]["writer"]["written"] >= 1
                and s["registry"]["writer"]["buffered"] == 0
            ),
            timeout=CLIENT_TIMEOUT,
            what="PostgreSQL back and the buffer written",
        )["registry"]
        assert status["writer"]["dropped"] == 0 and status["embedded_last_restart_seconds"] > 0
        new_pid = postmaster_pid(server)
        assert new_pid != pid and Path(f"/proc/{new_pid}").exists()
        found = episodes(server)
        assert [(a["kind"], a["state"]) for a in found] == [
            ("ANOMALY_KIND_NOVELTY", "EPISODE_STATE_OPEN")
        ]
        log = server.log()
        assert "embedded PostgreSQL is gone" in log and "embedded PostgreSQL is back" in log
        # asyncpg's failed reconnects: a line a minute at most, no traceback (was one a second)
        assert "Traceback" not in log and log.count("asyncpg.pool") <= 3, log[-3000:]
    finally:
        assert server.stop() == 0, server.log()
