"""SIGKILL between two snapshots, with the real server and its embedded PostgreSQL.

The second life records a spike and a new ERROR template in the registry, then is killed
before any snapshot holds them. The third life restores the first life's snapshot and
reconciles with the registry (via_otlp/recovery.py): the spike's episode is carried on and
resolves under its own id, the novelty episode is resolved with the reason, the template is
taught again, so it is not novel a second time. Nothing is left open.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, CLIENT_TIMEOUT, ServerProcess, http_post, start_server

pytestmark = pytest.mark.slow

BUCKET = 10
T0 = 1_800_000_000  # event time (2027): ahead of the wall clock, so ticks never close buckets
SERVICE = "checkout"
CONFIG = {
    "detect": {
        "warmup": "600s",
        "cooldown": "60s",
        "novelty": {"source_warmup": "600s", "threshold": 0},
    },
    "receive": {"max_future_skew": "3650d"},
    "state": {"snapshot_interval": "1h"},
    "correlate": {"enabled": False},
}


def lines(bucket: int, n: int, body: str, severity: str = "INFO") -> list[dict[str, Any]]:
    t = T0 + bucket * BUCKET
    return [
        {"time": t + i * BUCKET / (n + 1), "service": SERVICE, "severity": severity, "body": body}
        for i in range(n)
    ]


def traffic(buckets: range, extra: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in buckets:
        out += lines(b, 5, "GET /cart 200 in 12 ms") + lines(b, 3, "payment ok order 17")
        out += extra.get(b, [])
    return out


def send(server: ServerProcess, records: list[dict[str, Any]]) -> None:
    before = server.status()["intake"]["records_consumed"]
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    code, out = http_post(f"{server.http_url}/v1/ingest", body, "application/x-ndjson")
    assert code == 200 and json.loads(out)["accepted"] == len(records), out
    server.wait_for(
        lambda s: s["intake"]["records_consumed"] >= before + len(records), what="consumed"
    )


def episodes(server: ServerProcess) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(BIN / "via-otlp"), "ctl", "anomalies", "--json", "--target", server.control_target],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout).get("anomalies", [])
    return sorted(found, key=lambda a: int(a.get("started_unix_nano", 0)))


def kinds(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["kind"], a["state"]) for a in found]


def wait_episodes(server: ServerProcess, want: list[tuple[str, str]]) -> list[dict[str, Any]]:
    last: list[dict[str, Any]] = []

    def check(_status: Any) -> bool:
        nonlocal last
        last = episodes(server)
        return kinds(last) == want

    server.wait_for(check, timeout=CLIENT_TIMEOUT, what=f"episodes {want}")
    return last


def test_sigkill_between_snapshots_leaves_no_episode_open_and_none_twice(tmp_path: Path) -> None:
    first = start_server(tmp_path, CONFIG)
    try:
        send(first, traffic(range(0, 80), {}))
    finally:
        assert first.stop() == 0, first.log()  # a snapshot of the baseline

    second = start_server(tmp_path, CONFIG)
    spike = {82: lines(82, 60, "GET /cart 200 in 12 ms")}
    novel = {83: lines(83, 2, "disk full on /dev/sda1 while writing order 17", "ERROR")}
    send(second, traffic(range(80, 86), {**spike, **novel}))
    opened = wait_episodes(
        second,
        [
            ("ANOMALY_KIND_SPIKE", "EPISODE_STATE_OPEN"),
            ("ANOMALY_KIND_NOVELTY", "EPISODE_STATE_OPEN"),
        ],
    )
    os.kill(second.proc.pid, signal.SIGKILL)  # no snapshot holds what it learnt
    assert second.proc.wait(CLIENT_TIMEOUT) == -signal.SIGKILL

    third = start_server(tmp_path, CONFIG)
    try:
        # reconciled, and its writes in the registry, before serving: the novelty episode is
        # resolved, the spike carried on (read once: no waiting for a late write)
        assert "reconciled with the registry" in third.log(), third.log()
        found = episodes(third)
        assert kinds(found) == [
            ("ANOMALY_KIND_SPIKE", "EPISODE_STATE_OPEN"),
            ("ANOMALY_KIND_NOVELTY", "EPISODE_STATE_RESOLVED"),
        ], third.log()
        assert "restarted without this episode's state" in found[1]["explanation"]
        again = {95: lines(95, 2, "disk full on /dev/sda1 while writing order 99", "ERROR")}
        send(third, traffic(range(86, 100), again))
        final = wait_episodes(
            third,
            [
                ("ANOMALY_KIND_SPIKE", "EPISODE_STATE_RESOLVED"),
                ("ANOMALY_KIND_NOVELTY", "EPISODE_STATE_RESOLVED"),
            ],
        )
        assert [a["episode_id"] for a in final] == [a["episode_id"] for a in opened]
        assert "back to baseline" in final[0]["explanation"]
    finally:
        assert third.stop() == 0, third.log()
