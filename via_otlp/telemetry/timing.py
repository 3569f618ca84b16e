"""Batch durations per pipeline stage, as fixed-bucket histograms that cost one bisect a batch.

The pipeline works per batch, so timing a stage is two clock reads and one bucket increment per
batch, never per record. `snapshot()` is plain JSON (it travels in `/status` and, with shards,
through their status channel); `merge` adds snapshots of several processes together.

>>> t = StageTimings()
>>> t.observe(Stage.DETECT, 0.003)
>>> snap = t.snapshot()
>>> snap["stages"]["detect"]["count"], snap["stages"]["detect"]["buckets"][:5]
(1, [0, 0, 0, 1, 1])
"""

from __future__ import annotations

import enum
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

# Upper bounds (seconds) of the cumulative buckets; +Inf is implied. A batch of 1,000 records
# takes 0.5-10 ms per stage in normal operation; a stall shows in the seconds buckets.
BOUNDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Stage(enum.StrEnum):
    """Where a batch spends its time, in pipeline order."""

    NORMALISE = "normalise"  # decoded request → LogBatch columns
    PATTERNS = "patterns"  # templating and DROP/BLOCK patches
    QUEUE = "queue"  # waiting in the intake queue
    DETECT = "detect"  # schema sampling and the detection engine
    DISPATCH = "dispatch"  # patches on events, then the emitter and correlation queues


class StageTimings:
    """Cumulative histograms of batch durations, one per `Stage`."""

    __slots__ = ("_counts", "_sums")

    def __init__(self) -> None:
        self._counts: dict[Stage, list[int]] = {s: [0] * (len(BOUNDS) + 1) for s in Stage}
        self._sums: dict[Stage, float] = dict.fromkeys(Stage, 0.0)

    def observe(self, stage: Stage, seconds: float) -> None:
        """Count one batch that spent `seconds` in `stage`."""
        self._counts[stage][bisect_left(BOUNDS, seconds)] += 1
        self._sums[stage] += seconds

    @contextmanager
    def time(self, stage: Stage) -> Iterator[None]:
        """Time the body of a `with` block as one batch of `stage`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - start)

    def snapshot(self) -> dict[str, Any]:
        """``{"bounds": [...], "stages": {stage: {"buckets": cumulative counts without +Inf,
        "count": n, "sum": seconds}}}``: the Prometheus/OTLP histogram shape, as JSON."""
        stages: dict[str, Any] = {}
        for stage in Stage:
            counts = self._counts[stage]
            cumulative, running = [], 0
            for c in counts[:-1]:
                running += c
                cumulative.append(running)
            stages[stage.value] = {
                "buckets": cumulative,
                "count": running + counts[-1],
                "sum": self._sums[stage],
            }
        return {"bounds": list(BOUNDS), "stages": stages}


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add the snapshots of several processes (same bounds) into one."""
    out: dict[str, Any] = {"bounds": list(BOUNDS), "stages": {}}
    for snap in snapshots:
        if list(snap.get("bounds", ())) != list(BOUNDS):
            raise ValueError("stage timings with different bucket bounds cannot be merged")
        for name, h in snap["stages"].items():
            acc = out["stages"].setdefault(
                name, {"buckets": [0] * len(BOUNDS), "count": 0, "sum": 0.0}
            )
            acc["buckets"] = [a + b for a, b in zip(acc["buckets"], h["buckets"], strict=True)]
            acc["count"] += h["count"]
            acc["sum"] += h["sum"]
    return out
