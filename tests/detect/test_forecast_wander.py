"""A window against the baseline's forecast carries the wander the forecast misses (#10, coarse
wander): under a rate that holds a level for tens of minutes the baseline follows each block
part of the way, and the windows just after a step see the whole step against a forecast that
followed the block before (`ProfileTable._forecast_wander`)."""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import HALF, MEAN_LEN
from via_otlp.model import AnomalyKind, Source


def _after_a_low_block(
    lag: tuple[float, float, float], ratio: float, level: float = 1.5, block: bool = True
) -> list[AnomalyKind]:
    """One pattern at Poisson 3 a bucket (seed 1) for 400 buckets; then, set directly, the
    state of a rate that wanders in blocks of 15 minutes: its lags learnt as `lag` (counts'
    dispersion, then the 15- and 45-bucket lags' wander) over a day, its windows' dispersion
    against the baseline as such a wander teaches it (1.3, 2, 3, at twice `level`), the baseline
    followed a low block down to `level` a bucket, and the current half-blocks of every scale at
    `ratio` times it (a new `block`; else at it, and the peak at 1.2x it): the kinds one more
    bucket at that ratio opens."""
    table = ProfileTable(DetectConfig())
    src = Source.from_attributes((("service.name", "blocks"),))
    table.add(f"{0:016x}", src, "t0", "template 0", "INFO", 0, 0)
    rng = np.random.default_rng(1)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(400):
        row[0] = rng.poisson(3.0)
        table.close(b, row, zeros)
    win, j = table.win, len(HALF)
    assert win.filled is not None
    for k, (prev, cur) in enumerate(win.filled):  # (bucket 400 rolls no half-block)
        now = ratio if block else 1.0
        win.cnt[0, k], win.cnt[0, j + k] = level * prev, level * now * cur
        win.exp[0, k], win.exp[0, j + k] = level * prev, level * cur
        win.cnt2[0, k], win.exp2[0, k] = level * HALF[k], level * HALF[k]
    win.lag[0], win.lag_n[0] = lag, 8640.0
    win.disp[0] = win.disp_v[0] = (1.3, 2.0, 3.0)
    win.disp_e[0] = 2.0 * level * MEAN_LEN
    table.dispersion.n[0] = 8640.0
    table.rate.mean[0], table.rate_trend[0] = level, 0.0
    table.rate.var[0] = 1.3 * level
    table.drop_ref[0], table.ref_len[0] = level, 0
    table.peak[0] = 1e9 if block else 1.2 * level  # (the one-bucket test, where not a block)
    row[0] = round(level * ratio)
    return [a.kind for a in table.close(400, row, zeros).alarms]


def test_a_new_block_against_a_forecast_that_followed_the_last_one_is_the_wander() -> None:
    """A block at 4x a forecast that followed a low one down (a window of 6 buckets and one of
    16-30 at 4x): at the dispersion the windows learnt (an average over every phase of the
    blocks, mostly where the baseline has caught up) a spike; but where the lags learnt a wander
    that grows from 0.03 at the 15-bucket lag to 0.3 at the 45-bucket one, the forecast, a level
    held from about its memory before, misses half the longest lag's wander, and the block is
    the wander's. Where the lags learnt no growth (a short wander, or their noise), it stands."""
    assert AnomalyKind.SPIKE not in _after_a_low_block((1.0, 0.03, 0.3), 4.0)
    assert AnomalyKind.SPIKE in _after_a_low_block((1.0, 0.3, 0.3), 4.0)
    # (A spike far beyond the wander is one under it too: beyond the ratio of two of its
    # levels, `test_wander_ratio_tail`.)
    assert AnomalyKind.SPIKE in _after_a_low_block((1.0, 0.03, 0.3), 16.0)
