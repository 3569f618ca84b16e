"""The day-one sibling test's noise at a busy hour (#10).

A wander is relative: its variance grows with the rate squared, the counts' own with the rate. The
windows learn their dispersion over day one's curve at about the rate the longest window learnt at
(its `disp_e`), so at an hour busier than that the learnt inflation is short of the wander's share
and the sibling test's z too wide (driftnull's null probe: z sd 0.975 / 1.098 / 1.143 at wander 60 /
300 / 900 s). The judged pattern's own noise now has the wander part scaled by how much busier it is,
never scaled down: at a rate below the learnt one a coarse wander moves mu itself, and scaled down
the null's tails grew. (The old code had one inflation at every rate.)
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import MEAN_LEN, smoothing_vif
from via_otlp.model import Source

RATE = 6.0  # records a bucket
HOURS = 3


def _learnt_table() -> ProfileTable:
    """Four patterns of one source at a flat RATE a 60-s bucket under a gamma wander (CV 0.3)
    held for 20 minutes at a time, HOURS hours: the windows have learnt their dispersion, in
    excess of the counts' own."""
    config = DetectConfig(bucket=60.0)
    table = ProfileTable(config)
    src = Source.from_attributes((("service.name", "busy"),))
    slots = [table.add(f"{i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0) for i in range(4)]
    rng = np.random.default_rng(3)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(HOURS * 60):
        if b % 20 == 0:
            f = rng.gamma(1 / 0.09, 0.09, 4)
        row[slots] = rng.poisson(RATE * f)
        table.close(b, row, zeros)
    return table


def test_the_judged_noise_widens_at_a_busy_hour_and_never_narrows() -> None:
    """At three times the rate the longest window learnt at, the judged pattern's inflation is
    wider than the rate-blind one (the old code's, still the gate's) by 1.5x at least; at that
    rate and at a third of it, the same."""
    table = _learnt_table()
    n = 4
    vd = table.win.vif_disp()
    phi = np.maximum(1.0, np.where(table.dispersion.n > 0, table.dispersion.mean, 1.0))
    ready = np.ones(vd.shape, dtype=bool)
    vif = np.maximum(np.max(np.where(ready, vd / phi[:, None], 1.0), axis=1), 1.0)
    old = np.maximum(vif, smoothing_vif(vd, phi, ready, table._sib_lam))
    learnt = table.win.disp_e[:, -1].astype(np.float64) / MEAN_LEN[-1]
    assert (learnt[:n] > 0.5 * RATE).all() and (vd[:n].max(axis=1) > 1.5).all(), (learnt, vd)
    busy = table._sibling_vif(vd, phi, 3.0 * learnt, ready)[:n]
    old = old[:n]
    assert (busy >= 1.5 * old).all(), (busy, old)
    assert (busy <= 3.0 * old).all(), (busy, old)  # (the wander's excess tripled, no more)
    for f in (1.0, 1.0 / 3.0):
        same = table._sibling_vif(vd, phi, f * learnt, ready)[:n]
        np.testing.assert_allclose(same, old, rtol=1e-6)
