"""A shard's snapshots, written by a forked child so that the shard's work never waits for them.

Encoding 100,000 profiles and writing them takes seconds (155 MiB in 3.5 s on a loaded
machine), and a shard that did it itself stopped learning for that long every interval. A fork
takes a copy-on-write picture of the shard between two batches in milliseconds; the child
encodes and writes it (`state.save_snapshot`: temporary file, fsync, atomic rename) and exits,
while the shard goes on with the next batch. What a snapshot holds is exactly the batches
before it, as before. Only one child writes at a time: an interval that comes while the last
one is still writing is skipped (counted). The final snapshot at shutdown is written in the
shard itself, after a child still writing is stopped (its file is superseded anyway).

The cost moves to memory: pages the shard changes while the child writes are copied (the
child's garbage collector is off, so it does not touch every object itself). Before each fork
the allocator gives its free memory back (`memory.trim`, ~15 ms once, then < 1 ms): a bucket
close's temporaries and a request's decoding leave free heap pages the shard would keep
resident (~170 B per profile at 100,000 profiles), and the child would map them too.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from via_otlp import memory
from via_otlp.state import save_snapshot

log = logging.getLogger("via_otlp.shard")


class SnapshotWriter:
    """Writes `take()` (a snapshot tree) to `path` in a forked child, one child at a time."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        take: Callable[[], Any],
        close_in_child: Sequence[int] = (),
    ) -> None:
        self.path = path
        self.meta = meta
        self.take = take
        self.close_in_child = tuple(close_in_child)  # e.g. the shard's socket to the server
        self.written = 0  # snapshots finished
        self.skipped = 0  # intervals that found the previous snapshot still being written
        self.failed = 0
        self.last: dict[str, Any] = {}  # the report of the last finished snapshot
        self._child = 0
        self._pipe = -1
        self._stopping = False
        self._remove_leftovers()

    @property
    def writing(self) -> bool:
        return bool(self._child)

    def start(self) -> dict[str, Any]:
        """Fork a child that writes the snapshot; returns at once with the time the fork held
        the shard (`stall_seconds`) and the report of the last finished snapshot."""
        self.poll()
        if self._child:
            self.skipped += 1
            return {**self.last, "stall_seconds": 0.0, "writing": True, "skipped": self.skipped}
        began = time.perf_counter()
        memory.trim()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write, report through the pipe, exit without cleanup
            os.close(read_end)
            self._write_in_child(write_end)
        os.close(write_end)
        self._child, self._pipe = pid, read_end
        stall = time.perf_counter() - began
        return {**self.last, "stall_seconds": round(stall, 4), "writing": True}

    def _write_in_child(self, pipe: int) -> None:
        code = 1
        try:
            gc.disable()  # a collection would touch, and so copy, every object of the shard
            for fd in self.close_in_child:
                with contextlib.suppress(OSError):
                    os.close(fd)
            started = time.monotonic()
            tree = self.take()
            took = time.monotonic() - started
            size = save_snapshot(self.path, tree, self.meta)
            report = {
                "bytes": size,
                "snapshot_seconds": round(took, 4),
                "seconds": round(time.monotonic() - started, 4),
            }
            os.write(pipe, json.dumps(report).encode())
            code = 0
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(pipe, json.dumps({"error": f"cannot save {self.path}: {exc}"}).encode())
        finally:
            os._exit(code)

    def poll(self, block: bool = False) -> None:
        """Collect a child that finished (or wait for it, with `block`)."""
        if not self._child:
            return
        pid, status = os.waitpid(self._child, 0 if block else os.WNOHANG)
        if not pid:
            return
        try:
            raw = os.read(self._pipe, 65536)
        except OSError:
            raw = b""
        os.close(self._pipe)
        self._child, self._pipe = 0, -1
        try:
            report = json.loads(raw) if raw else {"error": "the snapshot writer died"}
        except ValueError:
            report = {"error": "the snapshot writer's report is unreadable"}
        code = os.waitstatus_to_exitcode(status)
        if self._stopping:  # stopped on purpose: a newer snapshot follows
            self._stopping = False
            self._remove_leftovers()
            return
        if code != 0 or "error" in report:
            self.failed += 1
            log.error("%s (exit %s)", report.get("error", "snapshot failed"), code)
            self._remove_leftovers()
            self.last = {**self.last, "error": report.get("error", f"exit {code}")}
            return
        self.written += 1
        self.last = report

    def stop(self) -> None:
        """Stop a child still writing (the caller writes a newer snapshot itself)."""
        if not self._child:
            return
        self._stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._child, signal.SIGKILL)
        self.poll(block=True)
        self._remove_leftovers()

    def save_now(self) -> dict[str, Any]:
        """Write the snapshot in this process (at shutdown: it must be complete before exit)."""
        self.stop()
        started = time.monotonic()
        tree = self.take()
        took = time.monotonic() - started
        size = save_snapshot(self.path, tree, self.meta)
        self.written += 1
        self.last = {
            "bytes": size,
            "snapshot_seconds": round(took, 4),
            "seconds": round(time.monotonic() - started, 4),
        }
        return dict(self.last)

    def _remove_leftovers(self) -> None:
        """Temporary files of a writer that was stopped or died (`state.write_atomic`'s names)."""
        with contextlib.suppress(OSError):
            for stale in self.path.parent.glob(f".{self.path.name}-*"):
                stale.unlink(missing_ok=True)
