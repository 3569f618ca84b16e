"""A bucket's variance: the counts' own noise grows with the expected count, the rate's wander
around the baseline with its square (`bucket_dispersion`).

One dispersion for every hour (the mean Pearson r² of the day) judged a quiet hour's count at
the busy hours' wander: on noisy 5-minute count series 20-22x the mean where the counts' own
noise was 4-6x, so a night-time spike of 8x stayed under the alarm level.
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable, bucket_dispersion
from via_otlp.model import Source

SRC = Source.from_attributes((("service.name", "dispersion"),))


def test_dispersion_grows_with_the_expected_count() -> None:
    phi, short, ready = np.full(4, 9.0), np.full(4, 3.0), np.array([True, True, True, False])
    mu, level = np.array([3.0, 10.0, 20.0, 3.0]), np.full(4, 10.0)
    got = bucket_dispersion(phi, short, ready, mu, level)
    # At the mean level the day's dispersion; below it less, above it more; unlearnt: the day's.
    assert np.allclose(got, [3.0 + 6.0 * 0.3, 9.0, 15.0, 9.0])
    # Never below the counts' own noise, nor below Poisson.
    assert bucket_dispersion(phi, np.full(4, 0.2), ready, np.zeros(4), level).min() == 1.0


def quiet_hour_profile(rate: float, buckets: int, seed: int) -> tuple[ProfileTable, int]:
    """A profile learnt at a quiet hour (seasonal factor 0.3 at every hour, so its baseline is
    ``rate / 0.3``): Poisson counts at `rate` a bucket for `buckets` buckets."""
    table = ProfileTable(DetectConfig())
    slot = table.add("00000000000000aa", SRC, "t", "template", "INFO", 0, 0)
    table.season[slot] = 0.3
    table.season_n[slot] = 1
    rng = np.random.default_rng(seed)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(buckets):
        row[slot] = rng.poisson(rate)
        table.close(b, row, zeros)
    return table, slot


def test_a_quiet_hour_is_judged_at_its_own_variance() -> None:
    """A profile at a quiet hour (seasonal factor 0.3) whose day's dispersion is 9: its buckets'
    variance is the Poisson noise plus 0.3 of the wander, not 9x the expected count."""
    table, slot = quiet_hour_profile(9.0, 200, 3)  # 30 a bucket deseasonalised
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    assert table.win.lag_ready()[slot, 0]
    a = float(np.clip(table.win.lag[slot, 0], 1.0, None))
    assert a < 2.0  # (Poisson counts: their own dispersion is about 1)
    table.dispersion.mean[slot] = 9.0  # as if the day's busy hours had wandered
    row[slot] = 9.0
    level = float(table.rate.mean[slot])
    v = table.close(200, row, zeros)
    mu = float(v.mean[slot])
    assert 7.0 < mu < 11.0
    rel = mu / level
    assert abs(rel - 0.3) < 0.05
    # The variance at this hour: a + (9 - a)·0.3 times mu, not 9·mu (the rate's own spread,
    # `rate.var`, is smaller here).
    assert np.isclose(float(v.std[slot]) ** 2, mu * (a + (9.0 - a) * rel), rtol=1e-6)
    assert float(v.std[slot]) ** 2 < 0.6 * 9.0 * mu
