"""The CI gate: the standard suite (config/scenarios) meets every target, offline.

Prints the table (run with -s to see it). A drop below a target fails here: fix detection.
"""

from __future__ import annotations

import time

from via_otlp.config import Config
from via_otlp.simulate import report
from via_otlp.simulate.cli import STANDARD_SUITE, scenario_files
from via_otlp.simulate.run import run_offline
from via_otlp.simulate.scenario import InjectedKind, load_scenario


def test_standard_suite_meets_the_targets() -> None:
    started = time.monotonic()
    scenarios = [load_scenario(p) for p in scenario_files([str(STANDARD_SUITE)])]
    assert len(scenarios) >= 12
    assert {k for s in scenarios for a in s.anomalies for k in [a.kind]} == set(InjectedKind)
    assert any(not s.anomalies and s.duration >= 7 * 86400 for s in scenarios)  # the quiet week
    results = [run_offline(s, Config()) for s in scenarios]
    print()
    print(report.table(results))
    print(f"standard suite in {time.monotonic() - started:.1f}s")
    assert report.failures(results) == []
