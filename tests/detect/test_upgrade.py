"""Snapshots of the released format (engine version 3) restore with what they learned."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.hll import HyperLogLog, compact, estimate_packed
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.upgrade import _registers_v3, upgrade_engine


def _v3_forms(hll: HyperLogLog) -> list[dict[str, object]]:
    """The two ways version 3 wrote a sketch: sparse register/rank pairs, or dense base64."""
    regs = hll.registers()
    idx = np.flatnonzero(regs)
    sparse = {
        "version": 1,
        "precision": hll.precision,
        "sparse": [[int(i), int(regs[i])] for i in idx],
    }
    dense = {
        "version": 1,
        "precision": hll.precision,
        "dense": base64.b64encode(regs.tobytes()).decode(),
    }
    return [sparse, dense]


@pytest.mark.parametrize("ids", [3, 40, 5000])
def test_a_version_3_sketch_estimates_what_it_did(ids: int) -> None:
    hll = HyperLogLog(10)
    hll.update(f"user-{i}" for i in range(ids))
    for form in _v3_forms(hll):
        slots, est = estimate_packed(compact(_registers_v3(9, form)), 10)
        assert slots.tolist() == [9]
        assert est[0] == pytest.approx(hll.cardinality, rel=1e-9)


def test_a_column_the_snapshot_lacks_starts_fresh() -> None:
    """The compatibility rule: columns added later restore from older snapshots."""
    config = DetectConfig()
    table = ProfileTable(config)
    state = table.snapshot()
    state["columns"]["peak"] = np.full(table.capacity, 7.0)
    del state["columns"]["rate_trend"]
    del state["columns"]["win.disp"]
    del state["windows"]
    state["columns"]["srun_max"] = np.ones(table.capacity)  # a column since removed: ignored
    again = ProfileTable(config)
    again.restore(state)
    assert again.peak.tolist() == [7.0] * table.capacity
    assert again.rate_trend.tolist() == [0.0] * table.capacity
    assert again.win.disp.shape == table.win.disp.shape and not again.win.disp.any()


def test_an_unknown_version_is_refused_not_guessed() -> None:
    assert upgrade_engine({"version": 99}) == {"version": 99}
    with pytest.raises(ValueError, match="version 2"):
        from via_otlp.detect.engine import Engine

        Engine(DetectConfig()).restore({"version": 2})
