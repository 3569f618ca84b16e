"""The CI gate: the standard suite (config/scenarios) meets every target, offline.

Prints the table (run with -s to see it). A drop below a target fails here: fix detection.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from via_otlp.config import Config
from via_otlp.simulate import report
from via_otlp.simulate.cli import STANDARD_SUITE, scenario_files
from via_otlp.simulate.run import RunResult, run_offline
from via_otlp.simulate.scenario import InjectedKind, load_scenario


def test_standard_suite_meets_the_targets() -> None:
    started = time.monotonic()
    paths = [str(p) for p in scenario_files([str(STANDARD_SUITE)])]
    scenarios = [load_scenario(p) for p in paths]
    assert len(scenarios) >= 12
    assert {k for s in scenarios for a in s.anomalies for k in [a.kind]} == set(InjectedKind)
    assert any(not s.anomalies and s.duration >= 7 * 86400 for s in scenarios)  # the quiet week
    # The scenarios are independent: one process each, as many at once as there are cores
    # (the gate was most of the suite's time on one core). Spawned, not forked, from a test
    # process that may hold gRPC and event-loop threads.
    workers = max(1, min(len(scenarios), len(os.sched_getaffinity(0))))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_run, paths))
    assert [r.scenario.name for r in results] == [s.name for s in scenarios]
    print()
    print(report.table(results))
    print(f"standard suite in {time.monotonic() - started:.1f}s")
    assert report.failures(results) == []


def _run(path: str) -> RunResult:
    """One scenario, offline, with the default config (in a worker process)."""
    return run_offline(load_scenario(Path(path)), Config())
