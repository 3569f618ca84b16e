"""A spike's window test scales the learnt wander to the level the window runs at (#10, coarse
wander): on a first day, where the forecast is under the level the windows learnt their
dispersion at, a window back near that level can be the wander, not a spike; a real spike there
still is one, and so is the same window once a daily shape is learnt (a quiet hour's forecast
is the shape's).

The wander's variance is ``v·μ²`` at the level ``μ`` the window runs at. Scaled to the forecast
alone, a forecast at 0.57 of the learnt level judged the wander at 0.57 of itself, and a window
at 2.3x the learnt level was a false spike under a 5-minute wander (`--wander 300`); the count
is evidence of the level as well (`windows.runs_at`).
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import HALF, MEAN_LEN
from via_otlp.model import Source

SRC = Source.from_attributes((("service.name", "wander"),))
RATE = 3.0  # records a bucket the windows learnt their dispersion at
DISP = 8.0  # that dispersion (a relative wander of 0.034 at the longest scale: CV 0.18)


def _longest_window_p(s: float, e: float, shape_learnt: bool) -> float:
    """The spike p (its budget share included) of a longest window counting `s` where `e` was
    expected, for a profile whose windows learnt `DISP` at `RATE` records a bucket, on a first
    day or once a daily shape is learnt."""
    table = ProfileTable(DetectConfig())
    table.add("0" * 16, SRC, "t", "t", "INFO", 0, 0)
    table.season_n[:] = int(shape_learnt)
    table.win.disp[:] = DISP
    table.win.disp_e[:] = RATE * MEAN_LEN[None, :]
    table.dispersion.n[:] = 1e9  # (a day's windows and more: every scale ready)
    table.win.begin(1000)
    table.win.filled = [(h, h // 2 + 1) for h in HALF]  # (mean-length windows)
    p = np.ones(table.capacity)
    phi_w = np.full((table.capacity, len(HALF)), 1e6)  # (the tail dispersion is the lighter)
    rows, cols = np.array([0]), np.array([len(HALF) - 1])
    table._window_tails(p, rows, cols, np.array([s]), np.array([e]), phi_w, True)
    return float(p[0])


def test_a_first_days_window_back_near_its_learnt_level_is_not_a_spike() -> None:
    level = RATE * float(MEAN_LEN[-1])  # a window's count at the level learnt at (204)
    low = 0.43 * level  # the forecast, under it
    p_alarm = DetectConfig().p_alarm
    # 3.2x the forecast, 1.4x the level learnt at: the wander, judged at the learnt level...
    assert _longest_window_p(round(3.2 * low), low, False) > 10.0 * p_alarm  # (old: 6.8e-8)
    # ...while 4x the level learnt, from the same forecast, is a spike...
    assert _longest_window_p(4.0 * level, low, False) < 1e-20
    # ...and so is the first window once a daily shape is learnt (a quiet hour's forecast).
    assert _longest_window_p(round(3.2 * low), low, True) < p_alarm
