"""Learned state outlives the process: SIGTERM saves it (versioned JSON, atomic write), the next
start restores it, so baselines and template ids carry on where they stopped."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CLIENT_TIMEOUT, start_server
from via_otlp.state import load_snapshot

pytestmark = pytest.mark.slow

# An hour that ends a minute ago: the server's clock moves event time on (and closes, skips and
# finally evicts idle profiles) when records are far older than now, which races the reads below.
T0 = int(time.time()) - 3660


def post_ndjson(url: str, lines: list[dict[str, object]]) -> dict[str, object]:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    req = urllib.request.Request(f"{url}/v1/ingest", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_state_is_saved_at_shutdown_and_restored_at_start(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    try:
        lines = [
            {"time": T0 + s, "service": "api", "body": f"request {s} served in {s % 50} ms"}
            for s in range(3600)
        ]
        lines += [
            {"time": T0 + s, "service": "api", "severity": "WARN", "body": f"slow query {s}"}
            for s in range(0, 3600, 30)
        ]
        assert post_ndjson(first.http_url, lines)["accepted"] == len(lines)
        # The shards report their profiles after the records are counted as consumed: wait for both.
        before = first.wait_for(
            lambda s: s["intake"]["records_consumed"] == len(lines) and s["detect"]["profiles"] == 2
        )
        rhythms_before = set(before["rhythm_counts"])
    finally:
        assert first.stop() == 0, first.log()
    snapshots = sorted((first.data_dir / "shards").glob("shard-*.snap"))
    assert snapshots, "no shard wrote its snapshot"
    for path in snapshots:
        loaded = load_snapshot(path)
        assert loaded is not None and {"patterns", "engine", "schemas"} <= set(loaded[0])
    assert before["detect"]["profiles"] == 2

    second = start_server(tmp_path)
    try:
        restored = second.status()
        assert restored["detect"]["profiles"] == before["detect"]["profiles"]
        assert restored["patterns"]["templates"] == before["patterns"]["templates"]
        # the same lines after the restart land on the same rhythm hashes
        more = [
            {"time": T0 + 3600 + s, "service": "api", "body": f"request {s} served in 7 ms"}
            for s in range(10)
        ]
        post_ndjson(second.http_url, more)
        after = second.wait_for(lambda s: s["intake"]["records_consumed"] == len(more))
        assert set(after["rhythm_counts"]) <= rhythms_before
    finally:
        assert second.stop() == 0, second.log()
