"""A day-one ramp that the sibling test finds is one drift episode (#10, day-one drift power).

After the sibling test alarms, the ramp goes on for up to the rest of its two hours, and the
15-minute smoothing lags it by ~20 minutes. With the accepted level the lagging smoothed one and
the episode resolved as soon as the z was back near 0, each stretch of ramp the accepted level
did not hold alarmed again as a new episode, the last often after the ramp had ended (the
families score such an episode as a false one: "drift, after its window"). Now the level
accepted includes the ramp's lag (its growth) and the episode stays open while the level grows.
"""

from __future__ import annotations

import numpy as np

from tests.detect.test_drift import minute_daily
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import AnomalyKind, Source

START = 6 * 60  # minute buckets: the ramp starts at 06:00 on day one
RAMP = 120  # for two hours
HOLD = 180  # then three hours at the level it reached
RATES = np.array([24.0, 36.0, 60.0, 120.0])  # records a minute at the daily mean; #2 ramps
CASES = ((40.0, 2), (-30.0, 2))  # (percent an hour, seed)


def _episodes() -> list[list[int]]:
    """Per case, the minutes (from the ramp's start) at which a drift episode of the ramping
    pattern opened: one opens on an alarm while none is open, and resolves after the cool-down's
    buckets in a row of settled drift test (as the engine does). Each case is a source of four
    patterns on a ±40 % daily curve (gamma minutes, CV 0.2); pattern 2 also ramps."""
    config = DetectConfig(bucket=60.0)
    cool = config.buckets(config.cooldown)
    n = START + RAMP + HOLD
    t = np.arange(n)
    k = len(RATES)
    table = ProfileTable(config)
    cols = []
    for c, (pct, seed) in enumerate(CASES):
        rng = np.random.default_rng(seed)
        factor = np.repeat(minute_daily(t)[:, None], k, axis=1)
        factor[:, 2] *= 1.0 + pct / 100.0 * np.clip(t - START, 0, RAMP) / 60.0
        factor *= rng.gamma(25.0, 1.0 / 25.0, (n, k))
        cols.append(rng.poisson(RATES[None, :] * factor).astype(np.float64))
        src = Source.from_attributes((("service.name", f"ramp-{c}"),))
        for i in range(k):
            table.add(f"{c * k + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
    counts = np.hstack(cols)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    opened: list[list[int]] = [[] for _ in CASES]
    is_open, calm = [False] * len(CASES), [0] * len(CASES)
    for b in range(n):
        row[: counts.shape[1]] = counts[b]
        v = table.close(b, row, zeros)
        fired = {a.slot for a in v.alarms if a.kind is AnomalyKind.DRIFT}
        for c in range(len(CASES)):
            slot = c * k + 2
            if slot in fired:
                if not is_open[c]:
                    opened[c].append(b - START)
                is_open[c], calm[c] = True, 0
            elif is_open[c]:
                calm[c] = calm[c] + 1 if v.settled[AnomalyKind.DRIFT][slot] else 0
                if calm[c] >= cool:
                    is_open[c], calm[c] = False, 0
    return opened


def test_a_day_one_ramp_the_siblings_find_is_one_episode_within_it() -> None:
    """+40 %/h and -30 %/h for two hours on one pattern of four, then held: each is found
    during its ramp, and opens no second episode, in the ramp or after it. (On the old code
    the +40 %/h one opened two, at 71 and 121 minutes: the second as the ramp ended; now one
    at 66, and the -30 %/h one at 85.)"""
    for (pct, _), opened in zip(CASES, _episodes(), strict=True):
        assert opened, (pct, "not found")
        assert len(opened) == 1 and 0 < opened[0] <= RAMP, (pct, opened)
