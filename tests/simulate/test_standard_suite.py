"""The CI gate: the standard suite (config/scenarios) meets every target, offline.

Prints the table (run with -s to see it). A drop below a target fails here: fix detection.
"""

from __future__ import annotations

import time

import pytest

from tests.simulate.offline_runs import RUNS
from via_otlp.simulate import report
from via_otlp.simulate.cli import STANDARD_SUITE, scenario_files
from via_otlp.simulate.scenario import InjectedKind, load_scenario

GATE_PATHS = [str(p) for p in scenario_files([str(STANDARD_SUITE)])]


@pytest.mark.scenario_runs
def test_standard_suite_meets_the_targets() -> None:
    started = time.monotonic()
    paths = GATE_PATHS
    scenarios = [load_scenario(p) for p in paths]
    assert len(scenarios) >= 12
    assert {k for s in scenarios for a in s.anomalies for k in [a.kind]} == set(InjectedKind)
    assert any(not s.anomalies and s.duration >= 7 * 86400 for s in scenarios)  # the quiet week
    # The scenarios are independent: each runs offline with the default config in a spawned
    # process, as many at once as there are cores, started when the session was collected
    # (tests/simulate/offline_runs.py: the gate was most of the suite's time on one core).
    results = RUNS.results(paths)
    assert [r.scenario.name for r in results] == [s.name for s in scenarios]
    print()
    print(report.table(results))
    print(f"standard suite in {time.monotonic() - started:.1f}s (waiting for its runs)")
    assert report.failures(results) == []
