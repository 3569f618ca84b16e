"""Profiles restored without the lagged test's statistics learn them again before it judges.

A snapshot taken before the lagged test existed (or a `put` of profiles from an older shard)
has no ``win.lag``: its profiles come back with windows long ready and ``lag`` at 0, which the
lagged test read as the counts' dispersion 1 and no wander, so ordinary wandering traffic
alarmed (16 episodes, spikes and drops, in the 300 buckets after such a restore here; none
without it).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from tests.detect.test_quiet_week import onsets_of
from tests.detect.test_rates import wandering
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import HALF, MIN_WINDOWS
from via_otlp.model import Source

SRC = Source.from_attributes((("service.name", "restored"),))
RATES = np.array([3.0, 10.0, 30.0, 100.0, 300.0, 1000.0] * 2)
CV = np.array([0.2] * 6 + [0.45] * 6)  # minute-scale wander of the rate
WARM, AFTER = 450, 300  # buckets before the snapshot (the windows ready), and after it
OLD = ("win.lag", "win.cnt2", "win.exp2", "win.lag_n")  # what an older snapshot lacks


@functools.cache
def _counts() -> np.ndarray:
    """Counts whose rate wanders minute by minute (gamma, `CV`), then Poisson noise."""
    return wandering(np.random.default_rng(1), RATES, WARM + AFTER, CV)


def _onsets(
    table: ProfileTable, slots: list[int], first: int, end: int
) -> dict[tuple[int, str], int]:
    """Episodes opened per (slot, kind) over buckets `first`..`end` (a cool-down apart)."""
    counts, row, zeros = _counts(), np.zeros(table.capacity), np.zeros(table.capacity)
    alarms = []
    for b in range(first, end):
        row[slots] = counts[b]
        alarms += [(b, a.slot, a.kind.value) for a in table.close(b, row, zeros).alarms]
    return onsets_of(alarms, table.config)


@functools.cache
def _warmed() -> tuple[dict[str, Any], dict[str, Any]]:
    """A table's snapshot and a `take` of all its profiles after `WARM` buckets."""
    table = ProfileTable(DetectConfig())
    for i in range(len(RATES)):
        table.add(f"{i:016x}", SRC, f"t{i}", f"template {i}", "INFO", 0, 0)
    slots = list(range(len(RATES)))
    assert _onsets(table, slots, 0, WARM) == {}
    # Every scale's windows are ready: the lagged test would judge at once with what it has.
    assert table.dispersion.n[slots].min() >= 2 * MIN_WINDOWS * HALF[-1]
    return table.snapshot(), table.take(slots)


@pytest.mark.parametrize("how", ["restore", "put"])
def test_a_profile_restored_without_its_lagged_statistics_raises_no_false_alarms(how: str) -> None:
    state, taken = _warmed()
    tree = dict(state if how == "restore" else taken)
    tree["columns"] = {k: v for k, v in tree["columns"].items() if k not in OLD}
    table = ProfileTable(DetectConfig())
    if how == "restore":
        table.restore(tree)
        slots = list(range(len(RATES)))
    else:
        slots = table.put(tree)
    assert not table.win.lag_n[slots].any() and not table.win.lag_ready()[slots].any()
    onsets = _onsets(table, slots, WARM, WARM + AFTER)
    assert sum(onsets.values()) <= 1, onsets
    # ...and it judges again once learnt: the two shorter scales within the buckets after it.
    assert table.win.lag_ready()[slots][:, :2].all(), table.win.lag_n[slots]
