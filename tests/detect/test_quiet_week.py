"""A week of stationary traffic must stay quiet: at most one false episode per profile-week.

Runs the profile layer directly (60,480 buckets of 10 s), with every count per bucket drawn at
once; an episode is counted when a (profile, kind) alarms after a calm cool-down.

A table closes all its profiles in one call, and a close costs about the same for 3 profiles as
for 30; profiles of different sources share nothing (no sibling, no source rate), so runs that
only differ in their counts go through one table, each under a source of its own (`together`).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import Source

WEEK = 7 * 24 * 360
RATES = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
SRC = Source.from_attributes((("service.name", "quiet"),))


def alarms_over(
    counts: np.ndarray, config: DetectConfig, sources: list[Source] | None = None
) -> list[tuple[int, int, str]]:
    """(bucket, column, kind) of every alarm over `counts` (buckets × profiles); column `i` is
    a profile of `sources[i]` (all of `SRC` by default)."""
    table = ProfileTable(config)
    n_prof = counts.shape[1]
    for i in range(n_prof):
        src = SRC if sources is None else sources[i]
        assert table.add(f"{i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0) == i
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    alarms = []
    for b in range(counts.shape[0]):
        row[:n_prof] = counts[b]
        alarms += [(b, a.slot, a.kind.value) for a in table.close(b, row, zeros).alarms]
    return alarms


def onsets_of(
    alarms: list[tuple[int, int, str]], config: DetectConfig
) -> dict[tuple[int, str], int]:
    """Per (column, kind), the episodes: alarms after a calm cool-down."""
    cool = config.buckets(config.cooldown)
    last_alarm: dict[tuple[int, str], int] = {}
    onsets: dict[tuple[int, str], int] = {}
    for b, slot, kind in alarms:
        key = (slot, kind)
        if b - last_alarm.get(key, -(10**9)) > cool:
            onsets[key] = onsets.get(key, 0) + 1
        last_alarm[key] = b
    return onsets


def together(
    runs: list[np.ndarray], config: DetectConfig, name: str
) -> list[list[tuple[int, int, str]]]:
    """`alarms_over` of each run (buckets × profiles), through one table: run `k` under a source
    of its own, its alarms with its own columns and none past its own length (a shorter run's
    profiles see empty buckets after it ends, which cannot change what it alarmed before)."""
    sources = [
        Source.from_attributes((("service.name", f"{name}-{k}"),))
        for k, run in enumerate(runs)
        for _ in range(run.shape[1])
    ]
    n = max(run.shape[0] for run in runs)
    padded = [np.vstack([run, np.zeros((n - run.shape[0], run.shape[1]))]) for run in runs]
    alarms = alarms_over(np.hstack(padded), config, sources)
    starts = np.cumsum([0] + [run.shape[1] for run in runs])
    return [
        [(b, slot - lo, kind) for b, slot, kind in alarms if lo <= slot < hi and b < len(run)]
        for (lo, hi), run in zip(itertools.pairwise(starts), runs, strict=True)
    ]


@functools.cache
def quiet_weeks() -> tuple[dict[tuple[int, str], int], dict[tuple[int, str], int]]:
    """The episodes of the Poisson week (18 profiles) and of the overdispersed one (negative
    binomial, variance 2× the mean; 3 profiles), run together (`together`)."""
    rng = np.random.default_rng(20240601)
    rates = np.array(RATES * 2)
    poisson = rng.poisson(rates, size=(WEEK, len(rates))).astype(np.float64)
    rng = np.random.default_rng(7)
    rates = np.array([1.0, 10.0, 100.0])
    p = rates / (rates * 2.0)
    r = rates * p / (1 - p)
    overdispersed = rng.negative_binomial(r, p, size=(WEEK, len(rates))).astype(np.float64)
    config = DetectConfig()
    first, second = together([poisson, overdispersed], config, "quiet")
    return onsets_of(first, config), onsets_of(second, config)


def test_poisson_week_is_quiet() -> None:
    onsets = quiet_weeks()[0]
    per_profile: dict[int, int] = {}
    for (slot, _), k in onsets.items():
        per_profile[slot] = per_profile.get(slot, 0) + k
    assert max(per_profile.values(), default=0) <= 1, onsets
    assert sum(per_profile.values()) <= 2, onsets  # 18 profile-weeks


def test_overdispersed_week_is_quiet() -> None:
    """Negative binomial noise (variance = 2 × mean) is judged by its own tails."""
    onsets = quiet_weeks()[1]
    assert sum(onsets.values()) <= 3, onsets


def test_daily_cycle_is_learned_and_stays_quiet() -> None:
    """A ±50% daily cycle (minute buckets, four days): the hour-of-day factors learn its shape
    after a day, the expected count follows it, and no test mistakes the cycle for an anomaly.

    One table closes the four days of the three profiles (one source) and, under a source of
    its own, a profile with the busiest one's counts alone (what its factors and expected count
    are read from, as a table of its own would give them: sources share nothing)."""
    cfg = DetectConfig(bucket=60.0, allowed_lateness=60.0, warmup=1800.0)
    per_day = 1440
    t = np.arange(4 * per_day)
    rates = np.array([2.0, 20.0, 200.0])
    shape = 1.0 + 0.5 * np.cos(2 * np.pi * (t / per_day - 14 / 24))
    rng = np.random.default_rng(11)
    counts = rng.poisson(rates[None, :] * shape[:, None]).astype(np.float64)
    table = ProfileTable(cfg)
    for i in range(3):
        assert table.add(f"{i:016x}", SRC, f"t{i}", f"template {i}", "INFO", 0, 0) == i
    alone = Source.from_attributes((("service.name", "cycle-alone"),))
    assert table.add(f"{3:016x}", alone, "t", "t", "INFO", 0, 0) == 3
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    alarms = []
    err = []
    for b in range(4 * per_day):
        row[:3] = counts[b]
        row[3] = counts[b, 2]
        v = table.close(b, row, zeros)
        alarms += [(b, a.slot, a.kind.value) for a in v.alarms if a.slot < 3]
        if 2 * per_day <= b < 3 * per_day:
            err.append(v.mean[3] / (rates[2] * shape[b]) - 1.0)
        if b == 3 * per_day - 1:
            season = table.season[3].copy()
    onsets = onsets_of(alarms, cfg)
    assert sum(onsets.values()) <= 1, onsets
    assert season[14] > 1.35 and season[2] < 0.65
    assert abs(float(np.mean(err))) < 0.02 and float(np.max(np.abs(err))) < 0.1
