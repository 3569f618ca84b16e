"""Shards forked before the service starts threads: `start` uses them even once threads run.

A shard started while another thread runs is a fresh interpreter that imports everything again;
the registry starts threads (its executor) while the shards start, so `App.start` forks them
first (`ShardPool.fork`). Run in a process of its own: the test process may have threads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import asyncio, json, sys, threading
from via_otlp.config import parse_config
from via_otlp.shard.pool import ShardPool, _Forked

config = parse_config('{pipeline: {workers: 2}, state: {data_dir: "%s"}, correlate: {enabled: false}}'
                      % sys.argv[1])
pool = ShardPool(config, [].extend, persist=False)
pool.fork()
ahead = [s.process.pid for s in pool._shards]
stop = threading.Event()
thread = threading.Thread(target=stop.wait)  # as the registry's executor would
thread.start()

async def main():
    await pool.start()
    forked = [isinstance(s.process, _Forked) for s in pool._shards]
    pids = [s.status.pid for s in pool._shards]
    await pool.stop()
    return forked, pids

forked, pids = asyncio.run(main())
stop.set()
thread.join()
print(json.dumps({"ahead": ahead, "forked": forked, "pids": pids}))
"""


def test_shards_forked_ahead_are_the_ones_started(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["forked"] == [True, True]
    assert got["pids"] == got["ahead"] and len(set(got["pids"])) == 2


_KILL_CHILD = """
import asyncio, json, sys
from via_otlp.config import parse_config
from via_otlp.shard.pool import ShardPool

config = parse_config('{pipeline: {workers: 2}, state: {data_dir: "%s"}, correlate: {enabled: false}}'
                      % sys.argv[1])
pool = ShardPool(config, [].extend, persist=False)
pool.fork()
processes = [s.process for s in pool._shards]
asyncio.run(pool.kill(grace=60))  # a start that failed before the shards were started
print(json.dumps([p.returncode for p in processes]))
"""


def test_shards_forked_ahead_and_never_started_exit_on_their_own(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _KILL_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    codes = json.loads(out.stdout.strip().splitlines()[-1])
    assert codes == [2, 2]  # `run` without an INIT frame; a SIGKILL would be -9


def test_a_forked_shard_reaped_elsewhere_reads_as_exited() -> None:
    """`kill` waits for a shard in a thread while the loop may ask its exit code (a failed
    start reports it): whichever reaps the child first, the other must not raise ECHILD."""
    import os

    from via_otlp.shard.pool import _Forked

    pid = os.fork()
    if pid == 0:
        os._exit(3)
    forked = _Forked(pid)
    assert os.waitpid(pid, 0)[0] == pid  # reaped by someone else, as by the other caller
    assert forked.poll() is not None
    assert forked.wait() == forked.returncode
