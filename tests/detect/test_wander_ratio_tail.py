"""A count against a level the rate's wander set has the tail of a ratio of two wander factors
(#10, `--wander 900`): the baseline's forecast follows the blocks of a coarse wander, and the
lagged test's reference is one half-block's level, so the level a window is judged against is
off the one the rate wanders about by as much as the window's own block is
(`windows.level_wander_sf`). The negative binomial of the same variance falls exponentially
where that ratio's tail is polynomial: a new block at 3.8x a forecast that had followed two low
ones was p 5e-8 where its law gave 6e-4 (families dev seed 1)."""

from __future__ import annotations

import math

from tests.detect.test_forecast_wander import _after_a_low_block
from via_otlp.detect.tails import count_tail
from via_otlp.detect.windows import level_wander_sf
from via_otlp.model import AnomalyKind


def test_the_ratio_tail_is_heavier_than_the_negative_binomial_of_its_variance() -> None:
    """Against a level off by a factor of relative variance 0.05 (the window's own wander 0.05
    as well, 40 expected): beyond 3x the level the ratio's tail is the heavier by orders of
    magnitude (at 3.75x, 40x); near the centre it is the negative binomial of the two wanders'
    variance; with no spread, exactly `count_tail`."""
    e, v = 40.0, 0.05
    nb = count_tail(150, e, e + 2 * v * e * e).upper  # (one factor of the total variance)
    assert level_wander_sf(150, e, e + v * e * e, v) > 20.0 * nb
    near = level_wander_sf(50, e, e + v * e * e, v)
    assert math.isclose(near, count_tail(50, e, e + 2 * v * e * e).upper, rel_tol=0.2)
    assert level_wander_sf(120, e, 3.0 * e, 0.0) == count_tail(120, e, 3.0 * e).upper


def test_a_block_at_8x_the_last_under_a_heavy_coarse_wander_is_the_wander() -> None:
    """Lags learnt a wander growing to 0.3 at the 45-bucket lag (two levels apart: each 0.15,
    blocks of a gamma of shape ~7): a half-block at 8x the one before (as the forecast's
    windows) was a spike on the lagged test's negative binomial (p 1e-7), but a ratio of two
    such levels is 8x with p ~1e-4; 16x stays a spike. Under a moderate wander (0.1 at the
    longest lag) 6x stays one."""
    assert AnomalyKind.SPIKE not in _after_a_low_block((1.0, 0.03, 0.3), 8.0)
    assert AnomalyKind.SPIKE in _after_a_low_block((1.0, 0.03, 0.3), 16.0)
    assert AnomalyKind.SPIKE in _after_a_low_block((1.0, 0.01, 0.1), 6.0)
