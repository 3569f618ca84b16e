"""A rate that wanders in blocks as long as a window (#10, coarse wander): the windows' dispersion
learns the blocks that trip the screen, and a window against a level held from before is judged
with the wander between the two times.

Under a wander of 5-15 minutes a whole block runs high or low, so its windows go beyond the 3σ
screen that makes a stretch unusual; learnt at the anomaly weight, they were left out of the
spread the windows learnt (0.5-0.85 of the truth on busy templates), and the next such block
was a false spike or drop. The drift tests' variance inflation stays on the dispersion as
learnt before (grown with it, a day-7 drift found in its window was found just after it).
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.windows import HALF, WindowState, held_dispersion

HL = 2160.0  # the default dispersion half-life in buckets


def _learnt_once(r2: float, weight: float, edge: bool) -> WindowState:
    """A window state at dispersion 2 (every scale) that learns one window of ``(S-E)²/E``
    `r2` at `weight`, as a shielded stretch (`edge`) or not."""
    win = WindowState(1)
    win.disp[:] = 2.0
    win.disp_v[:] = 2.0
    win.disp_e[:] = 100.0
    e = np.full((1, len(HALF)), 100.0)
    s = e + np.sqrt(r2 * e)
    n = np.array([1e9])  # (long learnt: the step is each scale's rate)
    w = np.array([1.0 if edge else weight])
    win.learn(s, e, w, n, HL, np.array([edge]), 4.0, np.array([weight]))
    return win


def test_a_shielded_window_teaches_the_dispersion_in_full_up_to_the_edge_of_normal() -> None:
    shielded = _learnt_once(100.0, 0.1, edge=True)
    plain = _learnt_once(100.0, 0.1, edge=False)
    # At full weight, its r2 capped at settle_sigma² x the dispersion (4 x 2 = 8): the step is
    # ten times the anomaly weight's, towards 8 rather than towards the bound (25 x 2)...
    up_shielded = shielded.disp - 2.0
    up_plain = plain.disp - 2.0
    assert (up_shielded > 0).all() and (up_plain > 0).all()
    np.testing.assert_allclose(up_shielded / up_plain, 10.0 * 6.0 / 48.0, rtol=1e-3)
    # ...while the drift tests' copy learns it as before (anomaly weight, no cap).
    np.testing.assert_allclose(shielded.disp_v, plain.disp_v, rtol=1e-6)
    np.testing.assert_allclose(plain.disp_v, plain.disp, rtol=1e-6)


def test_a_window_against_a_held_level_carries_the_wander_between_the_two_times() -> None:
    # Counts' dispersion 1.2 and a relative wander of 0.02 between half-blocks of the longest
    # scale: a window expecting 100 against a held level varies at least 1.2 + 0.02 x 100.
    lag = np.zeros((2, len(HALF)))
    lag[:, 0], lag[:, -1] = 1.2, 0.02
    ready = np.ones_like(lag, dtype=bool)
    ready[1] = False  # (not learnt yet: the counts as Poisson, no wander)
    got = held_dispersion(lag, ready, np.array([100.0, 100.0]))
    np.testing.assert_allclose(got, [3.2, 1.0])
