"""The peak of normal buckets is kept deseasonalised: a spike at a quiet hour is measured
against the highs of the whole day relative to their hours, not against the busy hours' raw
counts, which it may never reach however far above its own hour it is (a single-bucket spike
must exceed the peak)."""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import Source

SRC = Source.from_attributes((("service.name", "peak"),))


def _quiet_hour_profile() -> tuple[ProfileTable, int]:
    """A profile learnt at a quiet hour (seasonal factor 0.3): Poisson at 6 a bucket."""
    table = ProfileTable(DetectConfig())
    slot = table.add("00000000000000bb", SRC, "t", "template", "INFO", 0, 0)
    table.season[slot] = 0.3
    table.season_n[slot] = 1
    rng = np.random.default_rng(5)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(300):
        row[slot] = rng.poisson(6.0)
        table.close(b, row, zeros)
    return table, slot


def test_the_peak_is_learnt_deseasonalised() -> None:
    table, slot = _quiet_hour_profile()
    # The highest normal bucket was about 15 records, 50 once divided by the hour's 0.3.
    assert 35.0 < float(table.peak[slot]) < 70.0
