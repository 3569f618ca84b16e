"""A day-one pattern the sibling test first judges after a gap is taken as it is (#10).

The sibling test judges a pattern only while it runs at `drift.min_mean` a bucket or more (or its
reference does) and its siblings' consensus is known. A pattern lifted over `min_mean` by a ramp
the test could not judge is first judged already far off its reference: the old code alarmed at
that very close, however long after the ramp (the families score such a find after the window as
a miss and a false episode: families day1 dev seed 4, a drift from 0.7 a bucket first judged at
3.4σ as its ramp lifted it over `min_mean`, found 29 minutes after its window). Now a look after
the test could not judge the pattern for longer than its smoothing's half-life is a first look:
beyond the screen, the pattern's share is taken as normal, and what the test judges from then on
is change it sees happen.
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import AnomalyKind, Source

BUCKET = 10.0
PER_H = int(3600 / BUCKET)
FROM_H, TO_H = 4.0, 8.5  # the hours of day one run
RAMP_H = (5.0, 7.0)  # the low pattern ramps by PCT an hour between these, then holds
PCT = 160.0
RATES = np.array([1.5, 2.5, 4.0, 0.24])  # records a bucket at the daily mean; #3 ramps
SEEDS = (1, 2)


def _alarms() -> list[list[float]]:
    """Per seed (a source of four patterns on a ±50 % daily curve peaking at 14:00, 10-second
    buckets, gamma wander CV 0.22), the hours at which the ramping pattern's drift alarmed."""
    config = DetectConfig(bucket=BUCKET)
    t = np.arange(int(FROM_H * PER_H), int(TO_H * PER_H))
    hour = t / PER_H
    k = len(RATES)
    table = ProfileTable(config)
    cols, slots = [], []
    for c, seed in enumerate(SEEDS):
        rng = np.random.default_rng(seed)
        f = np.repeat((1.0 + 0.5 * np.cos(2 * np.pi * (hour - 14.0) / 24.0))[:, None], k, axis=1)
        f[:, -1] *= 1.0 + PCT / 100.0 * np.clip(hour - RAMP_H[0], 0.0, RAMP_H[1] - RAMP_H[0])
        f *= rng.gamma(20.0, 1.0 / 20.0, (len(t), k))
        cols.append(rng.poisson(RATES[None, :] * f).astype(np.float64))
        src = Source.from_attributes((("service.name", f"lifted-{c}"),))
        slots.append(
            [table.add(f"{c * k + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
             for i in range(k)]
        )  # fmt: skip
    counts = np.hstack(cols)
    flat = [s for group in slots for s in group]
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    out: list[list[float]] = [[] for _ in SEEDS]
    lifted = {group[-1]: c for c, group in enumerate(slots)}
    for j, b in enumerate(t.tolist()):
        row[flat] = counts[j]
        v = table.close(b, row, zeros)
        for a in v.alarms:
            if a.kind is AnomalyKind.DRIFT and a.slot in lifted:
                out[lifted[a.slot]].append(float(hour[j]))
    return out


def test_a_pattern_first_judged_after_its_ramp_is_not_reported_then() -> None:
    """A pattern at 0.1-0.2 records a bucket ramps by 160 %/h for two hours and holds, under
    `min_mean` until the morning's rise lifts it over after the ramp: no drift alarm on it after
    its ramp. (On the old code both alarmed at the close the pattern was first judged, 7.31 and
    7.82 h, 19 and 49 minutes after the ramp ended.)"""
    for seed, hours in zip(SEEDS, _alarms(), strict=True):
        assert not [h for h in hours if h >= RAMP_H[1]], (seed, hours)
