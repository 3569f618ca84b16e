"""Shard snapshots written by a forked child (`via_otlp.shard.snapshots.SnapshotWriter`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from via_otlp.shard.snapshots import SnapshotWriter
from via_otlp.state import decode_tree, load_snapshot, save_snapshot


def _wait(writer: SnapshotWriter) -> None:
    writer.poll(block=True)


def test_the_child_writes_the_state_as_it_was_at_the_fork(tmp_path: Path) -> None:
    state: dict[str, Any] = {"n": 1, "a": np.arange(5)}
    path = tmp_path / "shard-0-of-1.snap"
    writer = SnapshotWriter(path, {"shard": 0}, lambda: state)
    report = writer.start()
    assert report["writing"] and "stall_seconds" in report
    state["n"] = 2  # the shard goes on: the snapshot keeps what was there at the fork
    _wait(writer)
    loaded = load_snapshot(path)
    assert loaded is not None
    tree, meta = loaded
    assert tree["n"] == 1 and tree["a"].tolist() == [0, 1, 2, 3, 4] and meta == {"shard": 0}
    assert writer.written == 1 and writer.last["bytes"] == path.stat().st_size
    assert not writer.writing


def test_an_interval_that_finds_the_last_snapshot_still_writing_is_skipped(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()

    def slow() -> dict[str, int]:
        os.read(read_end, 1)  # the child waits until the test lets it go on
        return {"n": 1}

    writer = SnapshotWriter(tmp_path / "s.snap", {}, slow)
    writer.start()
    second = writer.start()
    assert writer.skipped == 1 and second["skipped"] == 1 and second["stall_seconds"] == 0.0
    os.write(write_end, b"x")
    _wait(writer)
    assert writer.written == 1 and (tmp_path / "s.snap").exists()


def test_stop_kills_a_writing_child_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "s.snap"
    read_end, _write_end = os.pipe()

    parent = os.getpid()

    def never() -> dict[str, int]:
        if os.getpid() != parent:  # the child hangs, as a write cut short would
            (tmp_path / f".{path.name}-partial").write_bytes(b"half")
            os.read(read_end, 1)
        return {"n": 3}

    writer = SnapshotWriter(path, {}, never)
    writer.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / f".{path.name}-partial").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.stop()
    assert not writer.writing and writer.failed == 0 and writer.last == {}
    assert list(tmp_path.iterdir()) == []
    report = writer.save_now()  # the final snapshot, written in this process
    assert report["bytes"] == path.stat().st_size and writer.written == 1
    loaded = load_snapshot(path)
    assert loaded is not None and loaded[0] == {"n": 3}


def test_a_failing_snapshot_is_reported_and_counted(tmp_path: Path) -> None:
    def broken() -> dict[str, Any]:
        raise ValueError("no tree today")

    writer = SnapshotWriter(tmp_path / "s.snap", {}, broken)
    writer.start()
    _wait(writer)
    assert writer.failed == 1 and "no tree today" in writer.last["error"]
    assert not (tmp_path / "s.snap").exists()


_HEAP_HOLES = """
import sys
from pathlib import Path
from via_otlp import memory
from via_otlp.shard.snapshots import SnapshotWriter
memory.release_large_blocks()
blocks = [bytearray(4000) for _ in range(40_000)]  # 160 MB of heap, below the mmap threshold
keep = blocks[-1]
del blocks  # freed, but the last block pins the heap's top: the allocator keeps the pages
before = memory.rss_of()
writer = SnapshotWriter(Path(sys.argv[1]), {}, lambda: {"n": 1})
writer.start()
after = memory.rss_of()
writer.poll(block=True)
print(before - after)
"""


def test_the_allocator_gives_free_heap_back_before_the_fork(tmp_path: Path) -> None:
    # Bucket closes and decoding leave free heap pages that stayed resident in the shard
    # (~170 B per profile at 100,000 profiles); each snapshot interval gives them back.
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_HOLES, str(tmp_path / "s.snap")],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert int(out.stdout.strip()) > 100 * 2**20, out.stdout


def test_a_loaded_snapshot_reads_the_file_once_into_writable_arrays(tmp_path: Path) -> None:
    # The arrays are views into the one buffer the file was read into (a restore copies them
    # into its own columns: a copy per array on load doubled the bytes a restore moved), so
    # they are writable and hold the values written, each its own part of the buffer.
    path = tmp_path / "s.snap"
    save_snapshot(path, {"a": np.arange(4, dtype=np.int64), "b": [np.ones(3, dtype=np.float32)]})
    loaded = load_snapshot(path)
    assert loaded is not None
    a, b = loaded[0]["a"], loaded[0]["b"][0]
    assert a.flags.writeable and b.flags.writeable and not np.shares_memory(a, b)
    assert a.base is not None and b.base is not None  # views, not copies
    a[:] = 7
    assert a.tolist() == [7] * 4 and b.tolist() == [1.0] * 3
    again = decode_tree(path.read_bytes())  # from bytes the caller keeps: copies, writable
    assert again["a"].flags.writeable and again["a"].tolist() == [0, 1, 2, 3]


def test_a_snapshot_is_renamed_into_place_and_then_its_directory_synced(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The data is fsynced before the rename, the directory after it: without the second, a
    crash can undo the rename and bring back the snapshot before it (or none)."""
    import via_otlp.state as state

    path = tmp_path / "shard-0-of-1.snap"
    synced: list[tuple[Path, bool]] = []
    monkeypatch.setattr(state, "fsync_dir", lambda d: synced.append((Path(d), path.exists())))
    save_snapshot(path, {"n": 1})
    assert synced == [(tmp_path, True)]
