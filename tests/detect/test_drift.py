"""Drift on traffic shaped like production: a daily cycle, minute-scale wander, slow ramps.

Runs the profile layer directly (as test_rates): two days of a ±40% daily cycle whose minutes
wander (gamma, CV 0.2), then on the third day the rate ramps by a few tens of percent an hour
for two hours and stays there. The smoothed residual must leave the reference during the ramp
(a drift, in its direction) and come back within `settle` for a cool-down once the level holds,
so the episode resolves under noise.
"""

from __future__ import annotations

import numpy as np

from tests.detect.test_rates import SRC, wandering
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import AnomalyKind, Source

DAY = 8640  # 10 s buckets
RATES = np.array([2.0, 10.0, 50.0])  # records per bucket at the daily mean
START = 2 * DAY + 10 * 360  # the ramp starts at 10:00 on the third day
HOURS2 = 720  # two hours of buckets


def daily(n: int) -> np.ndarray:
    t = np.arange(n)
    return 1.0 + 0.4 * np.cos(2 * np.pi * (t / DAY - 14 / 24))


def ramp(n: int, percent_per_hour: float) -> np.ndarray:
    """1 before START, then a ramp for two hours, then the level it reached."""
    hours = np.clip(np.arange(n) - START, 0, HOURS2) / 360.0
    return 1.0 + percent_per_hour / 100.0 * hours


def drift_runs(
    cases: list[tuple[float, int]],
) -> list[tuple[dict[int, list[tuple[int, int]]], np.ndarray]]:
    """Per (percent per hour, seed) case: per profile, where (buckets from START) and in which
    direction a drift alarmed, and per bucket whether each profile's drift test was settled.
    The cases go through one table, each under a source of its own (they share nothing; see
    test_quiet_week.together)."""
    n = START + 3 * HOURS2
    k = len(RATES)
    runs = []
    for percent_per_hour, seed in cases:
        rng = np.random.default_rng(seed)
        runs.append(wandering(rng, RATES, n, 0.2, daily(n) * ramp(n, percent_per_hour)))
    counts = np.hstack(runs)
    table = ProfileTable(DetectConfig())
    for c in range(len(cases)):
        src = Source.from_attributes((("service.name", f"drift-{c}"),))
        for i in range(k):
            table.add(f"{c * k + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    hits: dict[int, list[tuple[int, int]]] = {slot: [] for slot in range(counts.shape[1])}
    settled = np.zeros(counts.shape, dtype=bool)
    for b in range(n):
        row[: counts.shape[1]] = counts[b]
        v = table.close(b, row, zeros)
        settled[b] = v.settled[AnomalyKind.DRIFT][: counts.shape[1]]
        for a in v.alarms:
            if a.kind is AnomalyKind.DRIFT:
                hits[a.slot].append((b - START, a.direction))
    return [
        ({i: hits[c * k + i] for i in range(k)}, settled[:, c * k : (c + 1) * k])
        for c in range(len(cases))
    ]


def calm_run(settled: np.ndarray, lo: int, need: int) -> bool:
    """Is there a run of `need` settled buckets from bucket `lo` on?"""
    run = 0
    for ok in settled[lo:]:
        run = run + 1 if ok else 0
        if run >= need:
            return True
    return False


def test_a_ramp_of_tens_of_percent_an_hour_is_found_and_resolves() -> None:
    """+40 %/h and -30 %/h for two hours, after two learnt days, two seeds each: found during
    the ramp (none of the two quiet days or the morning rise alarmed), in its direction, and
    settled for a cool-down within three hours of reaching the new level, all but one of the
    twelve. (Resolution under noise is a matter of luck now and then: over seeds 4-11
    three of the 48 ramps took longer, with or without the baseline's low-stretch hold; which
    three changed with it, and with one seed a case each way, the test was a coin on that.)"""
    cool = DetectConfig().buckets(DetectConfig().cooldown)
    cases = [(40.0, 1, 3), (40.0, 1, 4), (-30.0, -1, 4), (-30.0, -1, 5)]
    runs = drift_runs([(pct, seed) for pct, _, seed in cases])
    late: dict[int, list[tuple[int, int]]] = {1: [], -1: []}
    for (pct, sign, seed), (hits, settled) in zip(cases, runs, strict=True):
        for slot, at in hits.items():
            assert at, (pct, slot)
            first, direction = at[0]
            assert direction == sign and 0 <= first <= HOURS2, (pct, slot, at[:5])
            if not calm_run(settled[:, slot], START + HOURS2, cool):
                late[sign].append((seed, slot))
    assert len(late[1]) + len(late[-1]) <= 1, late


def day_one_drifts(
    rates: list[float], moved: np.ndarray, seed: int, cv: float
) -> list[tuple[int, int, int]]:
    """DRIFT alarms (slot, buckets after 06:00, direction) of one source's patterns on day one:
    all share the daily curve, pattern 2 also takes the factor `moved` (one per bucket)."""
    rate = np.array(rates)
    start, n = 6 * 360, len(moved)
    rng = np.random.default_rng(seed)
    curve = daily(n)
    counts = wandering(rng, rate, n, cv, curve)
    counts[:, 2] = wandering(rng, rate[2:3], n, cv, curve * moved)[:, 0]
    table = ProfileTable(DetectConfig())
    for i in range(len(rate)):
        table.add(f"{i:016x}", SRC, f"t{i}", f"template {i}", "INFO", 0, 0)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    hits = []
    for b in range(n):
        row[: len(rate)] = counts[b]
        hits += [
            (a.slot, b - start, a.direction)
            for a in table.close(b, row, zeros).alarms
            if a.kind is AnomalyKind.DRIFT
        ]
    return hits


def test_on_day_one_a_drift_is_told_from_the_daily_curve_by_the_sources_other_patterns() -> None:
    """Day one (no shape learnt): four patterns of one source share a ±40 % daily curve (its
    morning rise is 10-17 %/h of its level); one of them also ramps +40 %/h from 06:00 for two
    hours. Only that one alarms as a drift (upwards, during its ramp); its siblings, riding the
    same curve, never do."""
    start, n = 6 * 360, 6 * 360 + HOURS2
    hours = np.clip(np.arange(n) - start, 0, HOURS2) / 360.0
    # (seed 8: the day-one CUSUM alone misses this one)
    hits = day_one_drifts([4.0, 6.0, 10.0, 20.0], 1.0 + 0.4 * hours, seed=8, cv=0.2)
    assert hits, "the drifting pattern was not found"
    assert {s for s, _, _ in hits} == {2}, hits[:5]
    assert all(0 < at <= HOURS2 and d == 1 for _, at, d in hits), hits[:5]


def test_on_day_one_a_pattern_that_halves_does_not_make_its_siblings_drift() -> None:
    """Three or four steady patterns (little wander), one halves at 06:00 and stays there: it
    alone alarms, downwards. Its siblings' consensus once centred its clip on a mean holding
    the halved pattern, so every unchanged sibling alarmed upwards ~30 min after the step."""
    start, n = 6 * 360, 6 * 360 + HOURS2
    step = np.where(np.arange(n) >= start, 0.5, 1.0)
    for rates in ([20.0, 30.0, 50.0], [20.0, 30.0, 50.0, 40.0]):
        hits = day_one_drifts(rates, step, seed=1, cv=0.01)
        assert hits, "the halved pattern was not found"
        assert {(s, d) for s, _, d in hits} == {(2, -1)}, hits[:5]


def test_on_day_one_a_spike_is_not_a_drift_before_it_alarms() -> None:
    """A pattern its siblings cannot judge (they run below `drift.min_mean`, so the day-one
    CUSUM judges it alone) triples for six minutes: that is a spike's story. Its first buckets,
    clipped to 3σ, once filled the CUSUM before the spike alarmed (a drift 2-3 min in, every
    seed of five)."""
    start, n = 6 * 360, 6 * 360 + 360
    t = np.arange(n)
    spike = np.where((t >= start) & (t < start + 36), 3.2, 1.0)
    for seed in (1, 2):
        assert day_one_drifts([0.5, 0.5, 1.5], spike, seed=seed, cv=0.2) == []


def test_source_numbers_stay_bounded_and_consistent_as_sources_come_and_go() -> None:
    """Sources that come and go (one short-lived profile each) do not grow the numbering past
    four per slot, and live profiles of one source share a number no other source has."""
    table = ProfileTable(DetectConfig())
    keep = Source.from_attributes((("service.name", "stays"),))
    a = table.add("a" * 16, keep, "t", "t", "INFO", 0, 0)
    b = table.add("b" * 16, keep, "u", "u", "INFO", 0, 0)
    for i in range(1000):
        src = Source.from_attributes((("service.name", f"passing{i}"),))
        table.remove(table.add(f"{i:016x}", src, "t", "t", "INFO", 0, 0))
    last = Source.from_attributes((("service.name", "last"),))
    c = table.add("c" * 16, last, "t", "t", "INFO", 0, 0)
    assert len(table._src_ids) <= 4 * table.capacity
    assert table.src_id[a] == table.src_id[b] != table.src_id[c]
