"""A week of stationary traffic must stay quiet: at most one false episode per profile-week.

Runs the profile layer directly (60,480 buckets of 10 s), with every count per bucket drawn at
once; an episode is counted when a (profile, kind) alarms after a calm cool-down.
"""

from __future__ import annotations

import numpy as np
import pytest

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import Source

WEEK = 7 * 24 * 360
RATES = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
SRC = Source.from_attributes((("service.name", "quiet"),))


def episodes_over(counts: np.ndarray, config: DetectConfig) -> dict[tuple[int, str], int]:
    table = ProfileTable(config)
    n_prof = counts.shape[1]
    for i in range(n_prof):
        table.add(f"{i:016x}", SRC, f"t{i}", f"template {i}", "INFO", 0, 0)
    cool = config.buckets(config.cooldown)
    last_alarm: dict[tuple[int, str], int] = {}
    onsets: dict[tuple[int, str], int] = {}
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    for b in range(counts.shape[0]):
        row[:n_prof] = counts[b]
        verdict = table.close(b, row, zeros)
        for a in verdict.alarms:
            key = (a.slot, a.kind.value)
            if b - last_alarm.get(key, -(10**9)) > cool:
                onsets[key] = onsets.get(key, 0) + 1
            last_alarm[key] = b
    return onsets


def test_poisson_week_is_quiet() -> None:
    rng = np.random.default_rng(20240601)
    rates = np.array(RATES * 2)
    counts = rng.poisson(rates, size=(WEEK, len(rates))).astype(np.float64)
    onsets = episodes_over(counts, DetectConfig())
    per_profile: dict[int, int] = {}
    for (slot, _), k in onsets.items():
        per_profile[slot] = per_profile.get(slot, 0) + k
    assert max(per_profile.values(), default=0) <= 1, onsets
    assert sum(per_profile.values()) <= 2, onsets  # 18 profile-weeks


@pytest.mark.parametrize("dispersion", [2.0])
def test_overdispersed_week_is_quiet(dispersion: float) -> None:
    """Negative binomial noise (variance = dispersion × mean) is judged by its own tails."""
    rng = np.random.default_rng(7)
    rates = np.array([1.0, 10.0, 100.0])
    var = rates * dispersion
    p = rates / var
    r = rates * p / (1 - p)
    counts = rng.negative_binomial(r, p, size=(WEEK, len(rates))).astype(np.float64)
    onsets = episodes_over(counts, DetectConfig())
    assert sum(onsets.values()) <= len(rates), onsets


def test_daily_cycle_is_learned_and_stays_quiet() -> None:
    """A ±50% daily cycle (minute buckets, four days): the hour-of-day factors learn its shape
    after a day, the expected count follows it, and no test mistakes the cycle for an anomaly."""
    cfg = DetectConfig(bucket=60.0, allowed_lateness=60.0, warmup=1800.0)
    per_day = 1440
    t = np.arange(4 * per_day)
    rates = np.array([2.0, 20.0, 200.0])
    shape = 1.0 + 0.5 * np.cos(2 * np.pi * (t / per_day - 14 / 24))
    rng = np.random.default_rng(11)
    counts = rng.poisson(rates[None, :] * shape[:, None]).astype(np.float64)
    onsets = episodes_over(counts, cfg)
    assert sum(onsets.values()) <= 1, onsets
    table = ProfileTable(cfg)
    table.add("0" * 16, SRC, "t", "t", "INFO", 0, 0)
    row = np.zeros(table.capacity)
    err = []
    for b in range(3 * per_day):
        row[0] = counts[b, 2]
        v = table.close(b, row, np.zeros(table.capacity))
        if b >= 2 * per_day:
            err.append(v.mean[0] / (rates[2] * shape[b]) - 1.0)
    assert table.season[0, 14] > 1.35 and table.season[0, 2] < 0.65
    assert abs(float(np.mean(err))) < 0.02 and float(np.max(np.abs(err))) < 0.1
