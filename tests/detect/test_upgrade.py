"""Snapshots of the released format (engine version 3) restore with what they learned."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.hll import HyperLogLog, compact, estimate_packed
from via_otlp.detect.profile import RECENT, ProfileTable
from via_otlp.detect.upgrade import _registers_v3, upgrade_engine
from via_otlp.model import Source


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
    del state["columns"]["win.lag_n"]
    del state["windows"]
    state["columns"]["srun_max"] = np.ones(table.capacity)  # a column since removed: ignored
    again = ProfileTable(config)
    again.restore(state)
    assert again.peak.tolist() == [7.0] * table.capacity
    assert again.rate_trend.tolist() == [0.0] * table.capacity
    assert again.win.disp.shape == table.win.disp.shape and not again.win.disp.any()
    assert again.win.lag_n.shape == table.win.lag_n.shape and not again.win.lag_n.any()


def test_an_unknown_version_is_refused_not_guessed() -> None:
    assert upgrade_engine({"version": 99}) == {"version": 99}
    with pytest.raises(ValueError, match="version 2"):
        from via_otlp.detect.engine import Engine

        Engine(DetectConfig()).restore({"version": 2})


def _table_with_recent_buckets(first: int = 0) -> ProfileTable:
    table = ProfileTable(DetectConfig())
    for i in range(first, first + 3):
        table.add(f"{i:016x}", Source.from_attributes((("service.name", "a"),)), "t", "t", "INFO",
                  0, 0)  # fmt: skip
    for b in range(5):
        counts = np.zeros(table.capacity)
        counts[:3] = [4.0, 900.0, 1e6]
        table.close(b, counts, np.zeros(table.capacity))
    return table


@pytest.mark.parametrize("how", ["restore", "put"])
def test_the_ring_of_expected_counts_of_an_older_snapshot_is_kept(how: str) -> None:
    """Version-4 tables written before the ring kept square roots (``recent_expected``, float32
    expected counts) restore and import with those expected counts (to 3 significant digits)."""
    table = _table_with_recent_buckets()
    state = table.snapshot() if how == "restore" else table.take([0, 1, 2])
    cols = state["columns"]
    rows = RECENT * (table.capacity if how == "restore" else 3)
    old = np.linspace(0.0, 3e9, rows).astype(np.float32)
    old[-1] = 1e12  # beyond what the ring keeps: saturates at its largest
    del cols["recent_root"]
    cols["recent_expected"] = old
    slots = [0, 1, 2]
    if how == "restore":
        again = ProfileTable(DetectConfig())
        again.restore(state)
    else:  # into a table at the same bucket (the ring keeps only its own recent range)
        again = _table_with_recent_buckets(first=3)
        slots = again.put(state)
    got = np.array([[r.expected for r in again.recent(s)] for s in slots])
    want = old.reshape(RECENT, -1)[np.arange(5), :][:, [0, 1, 2]].T.astype(np.float64)
    assert got.shape == (3, 5)
    assert np.allclose(got, np.minimum(want, 65504.0**2), rtol=1e-3, atol=1e-6)
