"""`serve` starts the shards before it imports the servers: they restore their snapshots while
the serving process imports gRPC, aiohttp and the control API (`app.EarlyShards`).

Timing would be flaky on a busy machine; the order is not. A fresh interpreter (no thread, so
the shards are forked) begins the shards, then holds its event loop: each shard must start its
restore all the same (its INIT went out in `begin`), and nothing of the servers is imported yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_PROBE = """
import asyncio, json, sys, time
from pathlib import Path
from via_otlp.app import EarlyShards
from via_otlp.config import load_config
from via_otlp.shard import worker

config = load_config(sys.argv[1])
marks = Path(sys.argv[2])
restore = worker.Shard.restore

def marked(self):
    (marks / f"restoring-{self.index}").touch()
    return restore(self)

worker.Shard.restore = marked  # (the forked shards inherit it)

async def main():
    early = EarlyShards(config)
    await early.begin()
    loaded = sorted(m for m in ("grpc", "aiohttp", "asyncpg", "qdrant_client") if m in sys.modules)
    # The loop is held from here until every shard has begun its restore.
    give_up = time.monotonic() + 60
    while not all((marks / f"restoring-{i}").exists() for i in range(2)):
        if time.monotonic() > give_up:
            print(json.dumps({"loaded": loaded, "ready": None}))
            await early.abandon()
            return
        time.sleep(0.01)
    ready = await early.ready
    await early.pool.stop()
    print(json.dumps({"loaded": loaded, "ready": sorted(r["shard"] for r in ready)}))

asyncio.run(main())
"""


def test_shards_restore_while_the_servers_are_imported(tmp_path: Path) -> None:
    config = tmp_path / "via.json5"
    config.write_text(json.dumps({
        "pipeline": {"workers": 2}, "state": {"data_dir": str(tmp_path / "data")},
        "registry": {"enabled": False}, "correlate": {"enabled": False},
    }))  # fmt: skip
    marks = tmp_path / "marks"
    marks.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config), str(marks)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] == [], got  # forked before the servers' modules were imported
    assert got["ready"] == [0, 1], got  # both began restoring with the loop held, then READY


def test_shards_start_early_only_with_state_to_restore(tmp_path: Path) -> None:
    from via_otlp.app import has_shard_state
    from via_otlp.config import load_config

    path = tmp_path / "via.json5"
    path.write_text(json.dumps({"state": {"data_dir": str(tmp_path / "data")}}))
    config = load_config(str(path))
    assert not has_shard_state(config)  # a first start: nothing to restore
    (tmp_path / "data" / "shards").mkdir(parents=True)
    assert not has_shard_state(config)
    (tmp_path / "data" / "shards" / "shard-0-of-4.snap").write_bytes(b"")
    assert has_shard_state(config)  # (of another shard count too: migrated from)
    (tmp_path / "data" / "shards" / "shard-0-of-4.snap").unlink()
    (tmp_path / "data" / "state.json").write_text("{}")
    assert has_shard_state(config)  # the single-process state, split among the shards


def test_the_app_takes_the_early_shards_over_and_abandon_stops_them(tmp_path: Path) -> None:
    """`App(config, early=...)` runs the shards `EarlyShards` began (no second set is started),
    and when the service cannot be built around them, `abandon` leaves no shard running."""
    import asyncio
    import os

    from via_otlp.app import App, EarlyShards
    from via_otlp.config import load_config

    path = tmp_path / "via.json5"
    path.write_text(json.dumps({
        "pipeline": {"workers": 2}, "state": {"data_dir": str(tmp_path / "data")},
        "registry": {"enabled": False}, "correlate": {"enabled": False},
    }))  # fmt: skip
    config = load_config(str(path))

    async def main() -> tuple[bool, bool, list[int]]:
        early = EarlyShards(config)
        await early.begin()
        app = App(config, early=early)
        taken = app.pool is early.pool and app._shards_ready is early.ready
        assert early.ready is not None
        await early.ready  # READY: abandon stops them (each writes its snapshot)
        pids = [s.pid for s in early.pool.status()]
        await early.abandon()
        return taken, all(pids), pids

    taken, started, pids = asyncio.run(main())
    assert taken and started
    for pid in pids:  # reaped: no such process any more
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"shard {pid} still runs")


_REGISTRY_PROBE = """
import asyncio, json, os, sys
from via_otlp.app import EarlyShards
from via_otlp.config import load_config
from via_otlp.registry import Registry

config = load_config(sys.argv[1])
seen = {}

async def start(self):  # what the real start does first: a thread runs initdb, pg_ctl
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as f:
        seen["shards_forked"] = len(f.read().split())
    seen["loaded"] = sorted(m for m in ("grpc", "aiohttp", "qdrant_client") if m in sys.modules)

Registry.start = start

async def main():
    early = EarlyShards(config, restore=False)  # a first start: nothing to restore
    await early.begin()
    seen["begun"] = early.registry_up is not None and early.registry_up.done()
    seen["init_sent"] = early.ready is not None
    await early.abandon()

asyncio.run(main())
print(json.dumps(seen))
"""


def test_the_registry_starts_while_the_servers_are_imported(tmp_path: Path) -> None:
    """On every start, a first one too, `serve` begins the registry's start (the embedded
    PostgreSQL's initdb and start: most of a first start) before it imports the servers, and
    after the shards are forked (its thread would make every shard a fresh interpreter)."""
    got, _ = _run_probe(_REGISTRY_PROBE, tmp_path)
    assert got == {"shards_forked": 2, "loaded": [], "begun": True, "init_sent": False}, got


def _run_probe(probe: str, tmp_path: Path) -> tuple[Any, str]:
    """What `probe` printed last (JSON) and its stderr, run on 2 shards with the registry."""
    config = tmp_path / "via.json5"
    config.write_text(json.dumps({
        "pipeline": {"workers": 2}, "state": {"data_dir": str(tmp_path / "data")},
        "correlate": {"enabled": False},
    }))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


_BEGIN_PROBE = """
import json, subprocess, sys, threading
from via_otlp import cli

seen = []
HEAVY = ("numpy", "via_otlp.patterns.stage", "grpc", "aiohttp", "asyncpg")

def refused(cmd, *args, **kwargs):  # the first process of the registry's start: noted, refused
    seen.append({
        "program": str(cmd[0]).rsplit("/", 1)[-1],
        "loaded": sorted(m for m in HEAVY if m in sys.modules),
        "threads": threading.active_count(),
    })
    raise OSError("refused by the test")

subprocess.Popen = refused
code = cli.main(["serve", "--config", sys.argv[1]])
print(json.dumps({"code": code, "seen": seen}))
"""


def test_serve_spawns_initdb_before_its_heavy_imports(tmp_path: Path) -> None:
    """`via-otlp serve` with the embedded registry spawns initdb (most of a first start) right
    after reading its configuration: before numpy, the pattern miner, gRPC, aiohttp or asyncpg
    are imported and before any thread (the shards are forked after it). A failure there is
    one clear error, and leaves neither the half-made cluster nor the data directory's lock."""
    import fcntl

    got, stderr = _run_probe(_BEGIN_PROBE, tmp_path)
    assert got == {"code": 1, "seen": [{"program": "initdb", "loaded": [], "threads": 1}]}, got
    assert "initdb init failed (refused by the test)" in stderr
    assert "Traceback" not in stderr
    data = tmp_path / "data"
    assert not [p.name for p in data.iterdir() if ".init-" in p.name]
    with open(data / ".postgres.lock", "wb") as lock:  # free again
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
