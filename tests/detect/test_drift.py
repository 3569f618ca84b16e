"""Drift on traffic shaped like production: a daily cycle, minute-scale wander, slow ramps.

Runs the profile layer directly (as test_rates): patterns on a ±40% daily cycle whose minutes
wander (gamma, CV 0.2), the cycle learnt as after two days; then the rate ramps by a few tens
of percent an hour for two hours and stays there. The smoothed residual must leave the
reference during the ramp (a drift, in its direction) and come back within `settle` for a
cool-down once the level holds, so the episode resolves under noise.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.detect.test_rates import wandering
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable, _stabilised
from via_otlp.model import AnomalyKind, Source

DAY = 8640  # 10 s buckets
HOURS2 = 720  # two hours of buckets
# The ramps' runs: 1-minute buckets (the default durations span a sixth of the buckets they span
# at 10 s: 600 closes, not 23 000), from 06:00 of a day whose shape is learnt.
MINUTE_RATES = np.array([12.0, 60.0, 300.0])  # records a minute at the daily mean
RAMP_FROM = 6 * 60  # 06:00: the morning rise, the warm-up and the 2 h reference before the ramp
RAMP_START = 10 * 60  # the ramp starts at 10:00
RAMP_LEN = 120  # for two hours
RAMP_END = RAMP_START + RAMP_LEN + 240  # then four hours at the level it reached


def daily(n: int) -> np.ndarray:
    t = np.arange(n)
    return 1.0 + 0.4 * np.cos(2 * np.pi * (t / DAY - 14 / 24))


def minute_daily(t: np.ndarray) -> np.ndarray:
    """`daily` at minute `t` of the day."""
    return 1.0 + 0.4 * np.cos(2 * np.pi * (t / 1440 - 14 / 24))


def drift_runs(
    cases: list[tuple[float, int]],
) -> list[tuple[dict[int, list[tuple[int, int]]], np.ndarray]]:
    """Per (percent per hour, seed) case: per profile, where (minutes from RAMP_START) and in
    which direction a drift alarmed, and per minute from RAMP_FROM whether each profile's drift
    test was settled. Patterns at MINUTE_RATES on a ±40 % daily curve whose minutes wander
    (gamma, CV 0.2), as after two learnt days (`season` holds the curve, `season_n` 2): from
    10:00 the rate ramps by `percent per hour` for two hours and stays there. The cases go
    through one table, each under a source of its own (they share nothing; see
    test_quiet_week.together)."""
    t = np.arange(RAMP_FROM, RAMP_END)
    k = len(MINUTE_RATES)
    g = 1.0 / 0.2**2
    runs = []
    for percent_per_hour, seed in cases:
        rng = np.random.default_rng(seed)
        hours = np.clip(t - RAMP_START, 0, RAMP_LEN) / 60.0
        shape = minute_daily(t) * (1.0 + percent_per_hour / 100.0 * hours)
        wander = rng.gamma(g, 1.0 / g, (len(t), k))
        runs.append(rng.poisson(MINUTE_RATES[None, :] * shape[:, None] * wander).astype(float))
    counts = np.hstack(runs)
    m = counts.shape[1]
    table = ProfileTable(DetectConfig(bucket=60.0))
    for c in range(len(cases)):
        src = Source.from_attributes((("service.name", f"drift-{c}"),))
        for i in range(k):
            table.add(f"{c * k + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, RAMP_FROM)
    table.season[:m] = minute_daily(np.arange(24) * 60 + 30)[None, :]
    table.season_n[:m] = 2
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    hits: dict[int, list[tuple[int, int]]] = {slot: [] for slot in range(m)}
    settled = np.zeros(counts.shape, dtype=bool)
    for j, b in enumerate(t.tolist()):
        row[:m] = counts[j]
        v = table.close(b, row, zeros)
        settled[j] = v.settled[AnomalyKind.DRIFT][:m]
        for a in v.alarms:
            if a.kind is AnomalyKind.DRIFT:
                hits[a.slot].append((b - RAMP_START, a.direction))
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
    """+40 %/h and -30 %/h for two hours on learnt patterns, two seeds each: found during the
    ramp (neither the morning rise nor the two hours before it alarmed), in its direction, and
    settled for a cool-down within four hours of reaching the new level, all but one of the
    twelve. (Resolution under noise is a matter of luck now and then: over seeds 1-8 one of the
    48 ramps took longer; the first alarms came 47-103 minutes into the ramp.)"""
    config = DetectConfig(bucket=60.0)
    cool = config.buckets(config.cooldown)
    cases = [(40.0, 1, 3), (40.0, 1, 4), (-30.0, -1, 4), (-30.0, -1, 5)]
    runs = drift_runs([(pct, seed) for pct, _, seed in cases])
    late: dict[int, list[tuple[int, int]]] = {1: [], -1: []}
    for (pct, sign, seed), (hits, settled) in zip(cases, runs, strict=True):
        for slot, at in hits.items():
            assert at, (pct, slot)
            first, direction = at[0]
            assert direction == sign and 0 <= first <= RAMP_LEN, (pct, slot, at[:5])
            if not calm_run(settled[:, slot], RAMP_START + RAMP_LEN - RAMP_FROM, cool):
                late[sign].append((seed, slot))
    assert len(late[1]) + len(late[-1]) <= 1, late


def day_one_counts(rates: list[float], moved: np.ndarray, seed: int, cv: float) -> np.ndarray:
    """Day-one counts (buckets × patterns) of one source's patterns: all share the daily curve,
    pattern 2 also takes the factor `moved` (one per bucket)."""
    rate = np.array(rates)
    n = len(moved)
    rng = np.random.default_rng(seed)
    curve = daily(n)
    counts = wandering(rng, rate, n, cv, curve)
    counts[:, 2] = wandering(rng, rate[2:3], n, cv, curve * moved)[:, 0]
    return counts


DAY_ONE_START = 6 * 360  # 06:00 on day one
DAY_ONE_MOVES = 6 * 360 + HOURS2  # the runs in which a pattern ramps or halves: 06:00 + 2 h
DAY_ONE_SPIKE = 6 * 360 + 360  # the spike runs: 06:00 + 1 h
HALVES_RATES = ([20.0, 30.0, 50.0], [20.0, 30.0, 50.0, 40.0])
SPIKE_SEEDS = (1, 2)


@functools.cache
def day_one_runs() -> dict[str, list[list[tuple[int, int, int]]]]:
    """The day-one tests' runs (`day_one_counts`, drawn as each test's docstring says), per test
    and run the DRIFT alarms (slot, buckets after 06:00, direction). The five runs go through
    one table, each under a source of its own (its patterns are siblings of each other, of no
    other run's; see test_quiet_week.together), each with its own columns and length: a run
    gets the alarms a table of its own gives it, and the morning is closed once, not five times."""
    t = np.arange(DAY_ONE_MOVES)
    hours = np.clip(t - DAY_ONE_START, 0, HOURS2) / 360.0
    step = np.where(t >= DAY_ONE_START, 0.5, 1.0)
    ts = np.arange(DAY_ONE_SPIKE)
    spike = np.where((ts >= DAY_ONE_START) & (ts < DAY_ONE_START + 36), 3.2, 1.0)
    runs = {
        # (seed 8: the day-one CUSUM alone misses this one)
        "ramp": [day_one_counts([4.0, 6.0, 10.0, 20.0], 1.0 + 0.4 * hours, seed=8, cv=0.2)],
        "halves": [day_one_counts(rates, step, seed=1, cv=0.01) for rates in HALVES_RATES],
        "spike": [day_one_counts([0.5, 0.5, 1.5], spike, seed=s, cv=0.2) for s in SPIKE_SEEDS],
    }
    cases = [c for cs in runs.values() for c in cs]
    los = np.cumsum([0] + [c.shape[1] for c in cases])
    n = max(c.shape[0] for c in cases)
    counts = np.hstack([np.vstack([c, np.zeros((n - len(c), c.shape[1]))]) for c in cases])
    table = ProfileTable(DetectConfig())
    for k, c in enumerate(cases):
        src = Source.from_attributes((("service.name", f"day-one-{k}"),))
        for i in range(c.shape[1]):
            table.add(f"{los[k] + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    hits: list[list[tuple[int, int, int]]] = [[] for _ in cases]
    case_of = np.repeat(np.arange(len(cases)), [c.shape[1] for c in cases])
    for b in range(n):
        row[: counts.shape[1]] = counts[b]
        for a in table.close(b, row, zeros).alarms:
            k = case_of[a.slot]
            if a.kind is AnomalyKind.DRIFT and b < len(cases[k]):
                hits[k].append((int(a.slot - los[k]), b - DAY_ONE_START, a.direction))
    out, at = {}, 0
    for name, cs in runs.items():
        out[name], at = hits[at : at + len(cs)], at + len(cs)
    return out


def test_on_day_one_a_drift_is_told_from_the_daily_curve_by_the_sources_other_patterns() -> None:
    """Day one (no shape learnt): four patterns of one source share a ±40 % daily curve (its
    morning rise is 10-17 %/h of its level); one of them also ramps +40 %/h from 06:00 for two
    hours. Only that one alarms as a drift (upwards, during its ramp); its siblings, riding the
    same curve, never do. (Rates 4, 6, 10 and 20, CV 0.2, seed 8: `day_one_runs`.)"""
    (hits,) = day_one_runs()["ramp"]
    assert hits, "the drifting pattern was not found"
    assert {s for s, _, _ in hits} == {2}, hits[:5]
    assert all(0 < at <= HOURS2 and d == 1 for _, at, d in hits), hits[:5]


def test_on_day_one_a_pattern_that_halves_does_not_make_its_siblings_drift() -> None:
    """Three or four steady patterns (little wander), one halves at 06:00 and stays there: it
    alone alarms, downwards. Its siblings' consensus once centred its clip on a mean holding
    the halved pattern, so every unchanged sibling alarmed upwards ~30 min after the step.
    (Rates 20, 30, 50 and 20, 30, 50, 40, CV 0.01, seed 1, for two hours after: `day_one_runs`.)"""
    for rates, hits in zip(HALVES_RATES, day_one_runs()["halves"], strict=True):
        assert hits, ("the halved pattern was not found", rates)
        assert {(s, d) for s, _, d in hits} == {(2, -1)}, (rates, hits[:5])


def test_on_day_one_a_spike_is_not_a_drift_before_it_alarms() -> None:
    """A pattern its siblings cannot judge (they run below `drift.min_mean`, so the day-one
    CUSUM judges it alone) triples for six minutes: that is a spike's story. Its first buckets,
    clipped to 3σ, once filled the CUSUM before the spike alarmed (a drift 2-3 min in, every
    seed of five). (Rates 0.5, 0.5 and 1.5, CV 0.2, seeds 1 and 2, for an hour after 06:00:
    `day_one_runs`.)"""
    for seed, hits in zip(SPIKE_SEEDS, day_one_runs()["spike"], strict=True):
        assert hits == [], (seed, hits)


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


SLOW_START = 360  # minute buckets of a learnt flat shape before the ramps and the slow fall


@functools.cache
def minute_runs() -> list[list[tuple[int, int]]]:
    """The drift alarms (minutes from SLOW_START, direction; `learnt_drifts`) of patterns at 100
    records a minute (gamma wander CV 0.2 a minute): +25 %/h, -25 %/h for two hours, and a fall
    of 3 %/h for ten (a weekday running into a weekend is at most that steep)."""
    rng = np.random.default_rng(3)
    t = np.arange(SLOW_START + 600)
    ramp = np.clip(t - SLOW_START, 0, 120) / 60.0
    slow = np.clip(t - SLOW_START, 0, 600) / 60.0
    shapes = [1.0 + 0.25 * ramp, 1.0 - 0.25 * ramp, 1.0 - 0.03 * slow]
    k = 1.0 / 0.2**2
    counts = np.stack([rng.poisson(100.0 * f * rng.gamma(k, 1 / k, len(t))) for f in shapes], 1)
    return learnt_drifts(counts, SLOW_START)


def learnt_drifts(counts: np.ndarray, start: int) -> list[list[tuple[int, int]]]:
    """The drift alarms (buckets from `start`, direction) of each column of `counts` (a pattern
    under a source of its own), closed as 1-minute buckets with the default durations as after
    two learnt days of a flat shape (`season_n` set: a tenth of the closes and none of a day's)."""
    m = counts.shape[1]
    table = ProfileTable(DetectConfig(bucket=60.0))
    for i in range(m):
        src = Source.from_attributes((("service.name", f"minute-{i}"),))
        table.add(f"{i:016x}", src, "t", "template", "INFO", 0, 0)
    table.season_n[:m] = 2
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    hits: list[list[tuple[int, int]]] = [[] for _ in range(m)]
    for b in range(len(counts)):
        row[:m] = counts[b]
        for a in table.close(b, row, zeros).alarms:
            if a.kind is AnomalyKind.DRIFT:
                hits[a.slot].append((b - start, a.direction))
    return hits


def test_a_ramp_of_25_percent_an_hour_is_found_during_its_two_hours() -> None:
    """+25 %/h and -25 %/h for two hours on a learnt pattern: a change the 2 h reference
    absorbs a fifth of, its noise on top, was found at ~1.5x an ideal test's delay or not at
    all (here: not before 120 and 87 minutes). The slow reference (6 h, held while the
    residual is steep) finds each during its ramp, in its direction, and nothing before."""
    for sign, h in zip((1, -1), minute_runs()[:2], strict=True):
        assert h, sign
        at, direction = h[0]
        assert direction == sign and 0 < at <= 110, (sign, h[:3])


def test_a_fall_of_3_percent_an_hour_is_not_a_drift() -> None:
    """A learnt pattern falls by 3 %/h for ten hours (30 %): the slow reference lags it by a
    fifth of its level, far past its alarm, but the change is not steep (the 2 h reference
    has taken most of it), so neither test calls it a drift."""
    assert minute_runs()[2] == []


STEP_LEN = 96  # minutes: a weekend of the count series (two days of 5-minute rows) at x30


@functools.cache
def step_runs() -> tuple[int, list[list[int | None]]]:
    """Weekend-style steps and ramps as on the count series (x30: a 5-minute row is a 10 s
    bucket, an hour of its wander two minutes): 150 records a minute at variance 2x the mean,
    the rate wandering by a gamma factor (shape 10) drawn every two minutes and interpolated.
    Six patterns step to 0.55-0.8 of their level for STEP_LEN minutes, two ramp by +-40 %/h
    for two hours; four seeds (`learnt_drifts`). Returns the steps called a drift while they
    last, and each ramp's first alarm."""
    n, start = 540, 240
    t = np.arange(n)
    inside = (t >= start) & (t < start + STEP_LEN)
    ramp = np.clip(t - start, 0, 120) / 60.0
    shapes = [np.where(inside, f, 1.0) for f in (0.55, 0.6, 0.65, 0.7, 0.75, 0.8)]
    shapes += [1.0 + 0.4 * ramp, 1.0 - 0.4 * ramp]
    called, firsts = 0, []
    for seed in range(1, 5):
        rng = np.random.default_rng(seed)
        g = rng.gamma(10.0, 0.1, (len(shapes), n // 2 + 1))
        wander = np.stack([np.interp(t / 2.0, np.arange(g.shape[1]), gi) for gi in g], 1)
        lam = 150.0 * np.stack(shapes, 1) * wander
        counts = rng.negative_binomial(lam, 0.5)  # (variance 2x the mean)
        hits = [[b for b, _ in h] for h in learnt_drifts(counts, start)]
        called += sum(any(0 <= b < STEP_LEN for b in h) for h in hits[:6])
        firsts.append([min((b for b in h if b >= 0), default=None) for h in hits[6:]])
    return called, firsts


def test_a_weekend_step_is_not_a_drift_of_the_slow_test() -> None:
    """24 patterns step to 0.55-0.8 of their level for a weekend's worth of buckets (noisy:
    the fast test alone calls one of them): the slow reference, held while the step is
    steep, kept the full step and its wander for as long as it lasted and the slow test
    called 9 of them a drift. Judged only while the smoothed level still grows (beyond twice
    its noise), 3; the ramps of +-40 %/h beside them are still found, each within 150 min."""
    called, firsts = step_runs()
    assert called <= 4, called
    for f in firsts:
        assert all(a is not None and 0 < a <= 150 for a in f), firsts


def test_a_low_rate_ramp_is_held_through_the_gate_s_flaps() -> None:
    """+41.8 %/h for two hours at 5 records a minute (gamma wander CV 0.2): the fast residual
    crosses the steep gate (slow_min_shift of the 2 h reference) back and forth by noise, and
    while it was closed the 6 h reference learnt the ramp at its own rate: this one was never
    found. Held also while the residual from the slow reference is steep and still growing,
    it is found during its ramp (of 48 such ramps, the one that hold changes)."""
    rng = np.random.default_rng(2)
    t = np.arange(SLOW_START + 200)
    shape = 1.0 + 0.418 * np.clip(t - SLOW_START, 0, 120) / 60.0
    k = 1.0 / 0.2**2
    cols = [rng.poisson(5.0 * shape * rng.gamma(k, 1 / k, len(t))) for _ in range(8)]
    (hits,) = learnt_drifts(np.stack(cols[7:], 1), SLOW_START)
    assert [d for b, d in hits if 0 < b <= 125][:1] == [1], hits


def test_on_day_one_a_lone_pattern_that_steps_opens_one_drift_episode() -> None:
    """Day one, a pattern no sibling can judge (the day-one CUSUM alone judges it) steps +50 % at
    06:00 and stays there (rate 20 a bucket, CV 0.01, seed 2): one drift episode (alarms no
    further apart than a cool-down), not one every few minutes while the CUSUM's level, which
    the alarm does not move, slowly learns the new one. (Main at 0869d7e: ten episodes in the
    two hours after the step, 16-25 buckets apart.)"""
    config = DetectConfig()
    cool = config.buckets(config.cooldown)
    n = DAY_ONE_START + HOURS2
    rng = np.random.default_rng(2)
    step = np.where(np.arange(n) >= DAY_ONE_START, 1.5, 1.0)
    counts = wandering(rng, np.array([20.0]), n, 0.01, daily(n) * step)[:, 0]
    table = ProfileTable(config)
    table.add("0" * 16, Source.from_attributes((("service.name", "lone"),)), "t", "t", "INFO", 0, 0)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    at: list[int] = []
    for b in range(n):
        row[0] = counts[b]
        at += [b for a in table.close(b, row, zeros).alarms if a.kind is AnomalyKind.DRIFT]
    assert at and at[0] >= DAY_ONE_START, at[:5]
    gaps = np.diff(at)
    assert (gaps <= cool).all(), (at[:12], cool)


def test_a_day_one_alarm_accepts_the_level_of_the_buckets_since_the_pattern_began() -> None:
    """The level a day-one CUSUM alarm accepts (`_accept_level`) is the mean over the last
    buckets in the recent ring; a pattern younger than that span is averaged over its own
    buckets only, not over the empty ones its slot held before it began (a short `warmup` lets
    one alarm that young)."""
    table = ProfileTable(DetectConfig())
    src = Source.from_attributes((("service.name", "young"),))
    table.add("0" * 16, src, "old", "old", "INFO", 0, 0)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(20):
        row[0] = 5.0
        table.close(b, row, zeros)
    young = table.add("1" * 16, src, "young", "young", "INFO", 0, 20)
    for b in range(20, 25):
        row[young] = 100.0
        table.close(b, row, zeros)
    told = np.zeros(table.capacity, dtype=bool)
    told[young] = True
    y = np.full(table.capacity, float(_stabilised(100.0)))
    table._accept_level(told, 25, y)
    assert table.level.mean[young] == pytest.approx(float(_stabilised(100.0)))


def test_on_day_one_a_ramp_the_source_s_total_shares_is_not_a_lone_drift() -> None:
    """Day one, a source whose patterns all ride a steep ramp (+70 %/h, as a deep daily curve's
    morning rises from its night), one at 2 records a bucket and five quiet ones (0.1-0.5: none
    reaches `min_mean`, so no sibling test judges the busy one and the day-one CUSUM does, from
    an untrended level the ramp leaves behind). The busy pattern's share of its source's total
    holds, so no drift alarms. (Main at fa65892: two of the three sources alarmed upwards, three
    patterns 1.9-3.0 h into the ramp; the families under `--daily 0.9`: two of the six false
    drifts on dev seeds 1-5, in the morning ramp.)"""
    rates = np.array([2.0, 0.5, 0.4, 0.3, 0.2, 0.1])
    flat, n = 2 * 360 + 72, 2 * 360 + 72 + 3 * 360  # a formed reference first, then 3 h of ramp
    ramp = 1.7 ** (np.clip(np.arange(n) - flat, 0, None) / 360.0)
    cases = [wandering(np.random.default_rng(seed), rates, n, 0.2, ramp) for seed in (1, 2, 3)]
    counts = np.hstack(cases)
    table = ProfileTable(DetectConfig())
    k = len(rates)
    for c in range(len(cases)):
        src = Source.from_attributes((("service.name", f"ramp-{c}"),))
        for i in range(k):
            table.add(f"{c * k + i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    hits = []
    for b in range(n):
        row[: counts.shape[1]] = counts[b]
        hits += [
            (a.slot, b - flat) for a in table.close(b, row, zeros).alarms
            if a.kind is AnomalyKind.DRIFT
        ]  # fmt: skip
    assert hits == [], hits[:5]
