"""The day-one sibling test's variance inflation (#10, day-one drift power): its 15-minute EWMA
weighs ~260 buckets, more than the longest window (46-90), so the windows' dispersion is
extrapolated to it (`smoothing_vif`) instead of taken as the max over scales, which under a
wander of 15-minute blocks counted 0.7 of the smoothing's wander (the quiet sibling z's sd 1.23).
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.ewma import decay_of
from via_otlp.detect.windows import MEAN_LEN, smoothing_vif

LAM = decay_of(90.0)  # the default sibling_window, 900 s at 10 s buckets


def _measured(period: int, seed: int) -> tuple[np.ndarray, float, float]:
    """Block-wandering Poisson counts (5 a bucket, Gamma shape 10 held `period` buckets at a
    random phase), 160 series: the windows' dispersions at the mean lengths, the bucket's, and
    the EWMA's variance over the iid one at that dispersion (the truth `smoothing_vif` models)."""
    rng = np.random.default_rng(seed)
    n, k, mu = 6000, 160, 5.0
    blocks = -(-n // period) + 1
    g = rng.gamma(10.0, 0.1, (k, blocks))
    phase = rng.integers(0, period, k)
    idx = (np.arange(n)[None, :] + phase[:, None]) // period
    c = rng.poisson(mu * np.take_along_axis(g, idx, axis=1)).astype(np.float64)
    phi = float(c.var() / mu)
    vd = []
    for length in np.rint(MEAN_LEN).astype(int):
        s = c[:, : n - n % length].reshape(k, -1, length).sum(axis=2)
        vd.append(s.var() / (length * mu))
    x = np.zeros(k)
    out = np.empty((n, k))
    for t in range(n):
        x += LAM * (c[:, t] - mu - x)
        out[t] = x
    true = float(out[1000:].var() / (phi * mu * LAM / (2.0 - LAM)))
    return np.array([vd]), phi, true


def test_the_smoothing_inflation_follows_a_coarse_wander_and_keeps_a_fine_one() -> None:
    for period, seed in ((6, 1), (90, 2)):
        vd, phi, true = _measured(period, seed)
        got = float(smoothing_vif(vd, np.array([phi]), np.ones_like(vd, bool), LAM)[0])
        longest = float(vd[0].max() / phi)
        assert abs(got / true - 1.0) < 0.12, (period, got, true, longest)
        if period == 6:  # (minute-scale: the longest window's is the smoothing's already)
            assert abs(got / longest - 1.0) < 0.05, (got, longest)
        else:  # (15-minute blocks: the max over the windows counts too little of it)
            assert longest < 0.85 * true, (longest, true)
