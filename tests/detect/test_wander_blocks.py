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

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import (
    HALF,
    MEAN_LEN,
    WindowState,
    held_age,
    held_dispersion,
    held_wander,
    pooled_growth,
)
from via_otlp.model import AnomalyKind, Source

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


def _held_low_block(
    lag: tuple[float, float, float], learnt: tuple[float, ...] = (8640.0, 8640.0)
) -> list[AnomalyKind]:
    """The kinds `_held_drops` opens, for patterns whose lags learnt over `learnt` buckets."""
    return [kind for _, kind in _held_drops(lag, learnt)]


def _held_drops(
    lag: tuple[float, float, float], learnt: tuple[float, ...]
) -> list[tuple[int, AnomalyKind]]:
    """One source's patterns (one per `learnt`) at Poisson 3 a bucket (seed 1) for 400 buckets;
    then, set directly, the
    state of a rate that wanders in blocks of 15 minutes and has been in a low one for 25: its
    lags learnt as `lag` (counts' dispersion, then the 15- and 45-bucket lags' wander) over a
    day, its windows' dispersion against the baseline as such a wander teaches it (1.3, 2, 3),
    the baseline followed down to 2 a bucket while the level from before, 3, is held for 150
    buckets, and every window's buckets at 0.9: the (slot, kind)s one more bucket of 1 opens."""
    n = len(learnt)
    table = ProfileTable(DetectConfig())
    src = Source.from_attributes((("service.name", "blocks"),))
    for k in range(n):
        table.add(f"{k:016x}", src, f"t{k}", f"template {k}", "INFO", 0, 0)
    rng = np.random.default_rng(1)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(400):
        row[:n] = rng.poisson(3.0, n)
        table.close(b, row, zeros)
    win, j, two = table.win, len(HALF), slice(0, n)
    assert win.filled is not None
    for k, (prev, cur) in enumerate(win.filled):  # (bucket 400 rolls no half-block)
        win.cnt[two, k], win.cnt[two, j + k] = 0.9 * prev, 0.9 * cur
        win.exp[two, k], win.exp[two, j + k] = 2.0 * prev, 2.0 * cur
        win.cnt2[two, k], win.exp2[two, k] = 0.9 * HALF[k], 2.0 * HALF[k]
        if k == j - 1:
            win.rexp[two] = (3.0 * prev, 3.0 * cur)
    win.lag[two], win.lag_n[two] = lag, learnt
    win.disp[two] = win.disp_v[two] = (1.3, 2.0, 3.0)
    win.disp_e[two] = 3.0 * MEAN_LEN
    table.rate.mean[two], table.rate_trend[two] = 2.0, 0.0
    table.drop_ref[two], table.ref_len[two], table.ref_cus[two] = 3.0, 150, 50.0
    table.ref_disp[two], table.ref_disp_e[two] = 3.0, 3.0 * MEAN_LEN[-1]
    row[:n] = 1.0
    return [(a.slot, a.kind) for a in table.close(400, row, zeros).alarms]


def test_a_held_drop_carries_the_wander_that_grows_with_the_lag() -> None:
    """The longest window against the held level (`ProfileTable.drop_ref`), 77 records where
    258 were expected there (172 at the baseline, which followed part of the way): at the
    dispersion its windows learnt (4-5 at that count) over 5σ, a drop; but where the wander
    grew from 0.03 at the 15-bucket lag to 0.3 at the 45-bucket one, a level held for 150
    buckets misses about half the longest lag's wander (`held_wander`), and the block is a
    wander's low, not a drop (a coarse wander's false drops, `--wander 900`). Where the
    lags learnt the same wander (a short one, or their noise), the drop stands."""
    assert AnomalyKind.DROP not in _held_low_block((1.0, 0.03, 0.3))
    assert AnomalyKind.DROP in _held_low_block((1.0, 0.3, 0.3))


def test_a_young_pattern_takes_the_held_wander_its_source_learnt() -> None:
    """The held low block of `test_a_held_drop_carries_the_wander_that_grows_with_the_lag`,
    where the lags of its patterns learnt 0.15 and 0.3 over only 400 buckets: their growth is
    within its error (about 3x a day's), so alone they say no wander grows with the lag and the
    block is a drop. Beside two siblings of the same source whose lags learnt the same over a
    day, the growth is the source's (`pooled_growth`: its traffic's wander), told from the noise
    by the siblings, and the young pattern's block is the wander's low too."""
    lag = (1.0, 0.15, 0.3)
    assert (0, AnomalyKind.DROP) in _held_drops(lag, (400.0, 400.0))
    assert (0, AnomalyKind.DROP) not in _held_drops(lag, (400.0, 8640.0, 8640.0))


def test_the_pooled_growth_is_the_sources_with_bounded_influence() -> None:
    """`pooled_growth`: a group's precision-weighted mean with its smaller error, no member
    over a third of the group (a precise one at 0.5 among three at 0.1 moves them to 0.23, not
    0.5, and keeps its own); the members not ready are given it but do not weigh; a group
    without a ready member, and a lone member, keep their own."""
    growth = np.array([0.5, 0.1, 0.1, 0.1, 0.9, 0.4, 0.2])
    err = np.array([0.01, 0.05, 0.05, 0.05, 0.2, 0.1, 0.2])
    ok = np.array([True, True, True, True, False, False, True])
    gid = np.array([0, 0, 0, 0, 0, 1, 2])
    g, e = pooled_growth(growth, err, ok, gid, 3)
    np.testing.assert_allclose(g, [0.5] + [0.2333333] * 4 + [0.4, 0.2], rtol=1e-5)
    assert e[0] == 0.01 and np.all(e[1:5] < 0.05)
    np.testing.assert_allclose(e[5:], [0.1, 0.2])


def test_the_held_wander_is_the_growth_with_the_lag_less_its_error() -> None:
    """`held_wander`: none before the longest lag is ready or where the lags learnt no growth;
    where they did, it grows with the held level's age up to half the longest lag's wander;
    a young lag (a few hundred buckets learnt, its error ~3x) or a quiet pattern (its counts'
    noise in the error) tells no growth of 0.1 from its noise."""
    n = 5
    lag = np.tile([1.0, 0.05, 0.15], (n, 1))
    lag[1, 1] = 0.15  # (no growth)
    ready = np.ones_like(lag, dtype=bool)
    ready[2, -1] = False
    e = np.tile(100.0 * MEAN_LEN / np.array(HALF), (n, 1))  # (100 a half-block at every scale)
    e[4] /= 50.0  # (2 a half-block)
    learnt = np.full(n, 8640.0)
    learnt[3] = 400.0
    old = held_wander(lag, ready, np.full(n, 300.0), e, learnt, HL)
    np.testing.assert_allclose(old, [0.075, 0.0, 0.0, 0.0, 0.0], atol=1e-9)
    young = held_wander(lag, ready, np.full(n, 20.0), e, learnt, HL)
    assert 0.0 < young[0] < 0.5 * old[0]
    assert held_age(np.array([0.0, 45.0, 150.0]), 90.0).tolist() == [0.0, 11.25, 105.0]
