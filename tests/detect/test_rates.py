"""Rate tests on traffic shaped like production: minute-scale wander, low-rate bursts, a first day.

Runs the profile layer directly (as test_quiet_week), every count drawn at once from seeded
generators; an episode is counted when a (profile, kind) alarms after a calm cool-down.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from tests.detect.test_quiet_week import onsets_of, together
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable, score_of
from via_otlp.detect.windows import HALF, LAG_SAFETY, WindowState, lag_judged, run_log_p0
from via_otlp.model import AnomalyKind, Source

DAY = 8640  # 10 s buckets
SRC = Source.from_attributes((("service.name", "rates"),))


def wandering(
    rng: np.random.Generator,
    rates: np.ndarray,
    n: int,
    cv: float | np.ndarray,
    shape: np.ndarray | None = None,
) -> np.ndarray:
    """Counts whose rate wanders minute by minute: each minute (6 buckets) runs at the rate
    (times `shape`, per bucket) times a gamma factor of mean 1 and coefficient of variation
    `cv` (one, or one per rate), then Poisson noise."""
    minutes = -(-n // 6)
    k = 1.0 / (cv * cv)
    factor = rng.gamma(k, 1.0 / k, size=(minutes, len(rates))).repeat(6, axis=0)[:n]
    if shape is not None:
        factor *= shape[:, None]
    return rng.poisson(rates[None, :] * factor).astype(np.float64)


Alarms = list[tuple[int, int, str]]
WANDER_SEEDS = (1, 2)
RAMP_SEEDS = (6, 7)
SILENT_RATES = np.array([1.5, 3.0, 6.0, 12.0])


@functools.cache
def wandering_runs() -> dict[str, list[Alarms]]:
    """The alarms of the three wandering-rate tests' runs (the minute-scale wander's, the
    first-day ramp's, the silent minute's), each run drawn as its test describes, all through
    one table (`together`, default config): 2 days of closes instead of 2 + 1/2 + 2. Every run
    is under a source of its own and keeps its own columns and length, so each gets the alarms,
    bucket for bucket, that a table of its own (or of its test's runs) gives it."""
    wander = [
        wandering(np.random.default_rng(seed), np.array([3.0, 30.0, 300.0, 3000.0]), 2 * DAY, 0.2)
        for seed in WANDER_SEEDS
    ]
    n = DAY // 2
    ramp = 1.0 + np.clip((np.arange(n) - 1080) / 1080.0, 0.0, 1.0)  # flat 3 h, then doubles in 3
    ramps = [
        wandering(np.random.default_rng(seed), np.array([10.0, 100.0, 1000.0]), n, 0.1, ramp)
        for seed in RAMP_SEEDS
    ]
    quiet = wandering(np.random.default_rng(1), np.tile(SILENT_RATES, 4), 2 * DAY, 0.38)
    silent = wandering(np.random.default_rng(4), SILENT_RATES, DAY + 60, 0.38)[: DAY + 18]
    silent[DAY:] = 0.0
    alarms = together([*wander, *ramps, quiet, silent], DetectConfig(), "wandering")
    return {"wander": alarms[:2], "ramp": alarms[2:4], "silent": alarms[4:]}


def test_minute_scale_wander_is_not_a_run_of_independent_surprises() -> None:
    """Busy patterns whose whole minutes run 20% above or below their neighbours: buckets of a
    minute are high together, which a test judging them as independent draws calls a spike.
    (Rates 3, 30, 300 and 3000, CV 0.2, two days, seeds 1 and 2: `wandering_runs`.)"""
    config = DetectConfig()
    for seed, alarms in zip(WANDER_SEEDS, wandering_runs()["wander"], strict=True):
        onsets = onsets_of(alarms, config)
        assert sum(onsets.values()) <= 1, (seed, onsets)


def burst_tables(
    rate: float, burst: int, minutes: int, seeds: tuple[int, ...], config: DetectConfig
) -> tuple[ProfileTable, list[list[int]], list[float]]:
    """Per seed (slot `k` for `seeds[k]`, each under a source of its own): a day of a low-rate
    pattern, then `burst` extra records spread over `minutes`; returns the table after the
    burst, per slot the buckets (from the burst's start) where a spike alarmed, and per slot
    the baseline before the burst."""
    n = minutes * 6
    counts = []
    for seed in seeds:  # each seed's draws in the order one table of its own would make them
        rng = np.random.default_rng(seed)
        day = [rng.poisson(rate) for _ in range(DAY)]
        extra = np.bincount(rng.integers(0, n, size=burst), minlength=n)
        counts.append(day + [rng.poisson(rate) + extra[i] for i in range(n)])
    table = ProfileTable(config)
    for k in range(len(seeds)):
        src = Source.from_attributes((("service.name", f"burst-{k}"),))
        assert table.add(f"{k:016x}", src, "t", "t", "WARN", 0, 0) == k
    row = np.zeros(table.capacity)
    zeros = np.zeros(table.capacity)
    hits: list[list[int]] = [[] for _ in seeds]
    before: list[float] = []
    for b in range(DAY + n):
        if b == DAY:
            before = [float(m) for m in table.rate.mean[: len(seeds)]]
        row[: len(seeds)] = [c[b] for c in counts]
        for a in table.close(b, row, zeros).alarms:
            if a.kind is AnomalyKind.SPIKE and b >= DAY:
                hits[a.slot].append(b - DAY)
    return table, hits, before


def test_a_low_rate_burst_is_found_though_no_bucket_is_extreme() -> None:
    """0.1 records a bucket, then 63 more in ten minutes: no bucket reaches the spike's
    minimum count, yet the ten minutes as one count are far beyond the usual 6. It is found
    within five minutes, and the baseline takes in less than half of what it would if it
    learned from the burst at full weight (the peak: none of it)."""
    seeds = (3, 4, 5)
    table, hits, before = burst_tables(0.1, 63, 10, seeds, DetectConfig())
    full, _, _ = burst_tables(0.1, 63, 10, seeds, DetectConfig(anomaly_update_weight=1.0))
    for k, seed in enumerate(seeds):
        assert hits[k] and hits[k][0] <= 30, (seed, hits[k])
        moved = table.rate.mean[k] - before[k]
        assert moved < 0.5 * (full.rate.mean[k] - before[k]), (seed, moved, full.rate.mean[k])
        assert table.peak[k] < 4, table.peak[k]


def low_rate_bursts(
    rate: float, burst: int, seeds: range, hist: int
) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """Per seed (one profile each, under a source of its own): `hist` buckets of Poisson counts
    at `rate`, then `burst` extra records spread over ten minutes. Returns per slot the first
    spike's bucket from the burst's start, and the (slot, bucket) of spikes before it."""
    n = 60
    counts = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        extra = np.bincount(rng.integers(0, n, size=burst), minlength=n)
        counts.append(np.concatenate([rng.poisson(rate, hist), rng.poisson(rate, n) + extra]))
    table = ProfileTable(DetectConfig())
    for k in seeds:
        src = Source.from_attributes((("service.name", f"low-{k}"),))
        table.add(f"{k:016x}", src, "t", "t", "WARN", 0, 0)
    rows = np.zeros((hist + n, table.capacity))
    rows[:, : len(counts)] = np.array(counts).T
    zeros = np.zeros(table.capacity)
    found: dict[int, int] = {}
    early = []
    for b in range(hist + n):
        for a in table.close(b, rows[b], zeros).alarms:
            if a.kind is AnomalyKind.SPIKE:
                if b < hist:
                    early.append((a.slot, b))
                found.setdefault(a.slot, b - hist)
    return found, early


def test_a_burst_at_a_twentieth_of_a_record_a_bucket_is_judged_on_its_poisson_tail() -> None:
    """0.05 records a bucket (Poisson, a few hours learnt), then 36 more in ten minutes: a
    5-minute window holds ~18 where ~1.5 were expected. The baseline remembers only a few
    records at this rate, so its noise reads as a one-bucket dispersion of 1.1-1.3 while the
    windows' own read ~1; judged at that floor times 1.5 (a negative binomial of shape ~2,
    near-geometric tails) no slot was found, nor at a day's history (the windows' test must
    judge the Poisson part as Poisson). None of the quiet stretch alarms."""
    found, early = low_rate_bursts(0.05, 36, range(1, 9), 1000)
    assert not early, early
    assert len(found) >= 6, found


def test_a_first_day_morning_ramp_is_neither_drift_nor_spike() -> None:
    """A first day: the rate doubles smoothly over three hours (with minute-scale wander), which
    a level that lags the ramp takes for a sustained shift; a level with a trend follows it.
    (Half a day, flat for 3 h then doubling over the next 3; rates 10, 100 and 1000, CV 0.1,
    seeds 6 and 7: `wandering_runs`.)"""
    config = DetectConfig()
    for seed, alarms in zip(RAMP_SEEDS, wandering_runs()["ramp"], strict=True):
        onsets = onsets_of(alarms, config)
        assert sum(onsets.values()) == 0, (seed, onsets)


def test_scores_rank_instead_of_saturating() -> None:
    """Far beyond the alarm level, smaller p is still a higher score, and never 100."""
    ps = [1e-6, 1e-12, 1e-30, 1e-100, 1e-250, 0.0]
    scores = [score_of(p, 1e-6) for p in ps]
    assert scores[0] == 50.0
    assert all(a < b for a, b in itertools.pairwise(scores)), scores
    assert max(scores) < 100.0


def test_a_silent_minute_of_a_wandering_rate_does_not_open_a_drop() -> None:
    """A rate that wanders minute by minute (gamma factor, CV 0.38: shape 7, inside the scenario
    families' 5-20) now and then empties a whole minute: six silent buckets that the run test
    judges as independent draws. A run must be expected to hold `silent_min_expected` records
    (with 8, two drops opened on these 16 profile-days); a real silence of three minutes is
    still found within two minutes. (At CV 0.45 a few minute-long silences at 6-12 records a
    bucket still open drops: the run test treats its buckets as independent.)
    (Quiet: rates 1.5-12 four times over, two days, seed 1; silent: the four rates, seed 4, a
    day then three silent minutes: `wandering_runs`.)"""
    config = DetectConfig()
    quiet_alarms, silent_alarms = wandering_runs()["silent"]
    onsets = onsets_of(quiet_alarms, config)
    drops = sum(k for (_, kind), k in onsets.items() if kind == AnomalyKind.DROP.value)
    assert drops == 0, onsets
    found: dict[int, int] = {}
    for b, slot, kind in silent_alarms:
        if kind == AnomalyKind.DROP.value and b >= DAY:
            found.setdefault(slot, b - DAY)
    assert found.get(3, 99) <= 12 and found.get(2, 99) <= 12, found


def test_the_lagged_test_learns_the_counts_noise_apart_from_the_wander() -> None:
    """Poisson counts (dispersion 1) whose level wanders smoothly (gamma knots, CV 0.2, four
    middle half-blocks apart): over the shortest lag the squared differences are the counts'
    noise (learnt near 1); the longer scales learn the wander beyond it, more over a longer lag."""
    rng = np.random.default_rng(8)
    h = HALF[1]
    w = WindowState(1)
    ones, mu = np.ones(1), np.array([50.0])
    knots = rng.gamma(25.0, 1.0 / 25.0, size=100)  # a smooth wander: knots 4 half-blocks apart
    factor = np.interp(np.arange(400 * h) / (4 * h), np.arange(100), knots)
    for b in range(len(factor)):
        w.begin(b)
        c = rng.poisson(mu * factor[b]).astype(np.float64)
        w.learn_lag(w.lagged(b, c, mu), ones, 1000.0)
        w.add(c, mu)
    assert 0.7 < w.lag[0, 0] < 1.4, w.lag[0]  # the counts' dispersion, not the wander's
    assert 0.005 < w.lag[0, 1] < w.lag[0, 2] < 0.1, w.lag[0]  # the wander grows with the lag


def test_the_lagged_reference_is_the_more_cautious_of_the_level_before_and_the_baseline() -> None:
    """A level before at 0.6 of the baseline (a stale baseline: a weekend): a fall is judged
    against 0.6 of what the baseline expects, a rise against the baseline itself; a level before
    at 0.2 (the drop a recovery follows) leaves a rise judged against the baseline too."""
    j = len(HALF)
    ea = np.full((2, j), 100.0)
    eb = np.full((2, j), 300.0)
    b = np.array([[180.0] * j, [60.0] * j])
    ok = np.ones((2, j), dtype=bool)
    lag = np.tile([2.0, 0.05, 0.05], (2, 1))
    m_up, _, m_dn, v_dn = lag_judged((ea, ea, b, eb, ok), lag, ok)
    assert m_dn[:, 1].tolist() == [60.0, 20.0] and m_up[:, 1].tolist() == [100.0, 100.0]
    # counts' noise of both blocks plus the wander: 2·60·(1 + 1/3) + 0.05·60²
    assert v_dn[0, 1] == pytest.approx(LAG_SAFETY * (2.0 * 60.0 * (4.0 / 3.0) + 0.05 * 3600.0))
    # The shortest lag carries the next one's wander: a rate that steps now and then moves
    # between two blocks a few buckets apart only where a step falls between them.
    assert v_dn[0, 0] == pytest.approx(v_dn[0, 1])


def test_a_short_lag_is_judged_with_the_wander_of_the_longer_ones() -> None:
    """A rate that wanders in steps (a level held for minutes): the shorter lags learnt little
    wander (most of their comparisons fall inside one level), the longest the whole step; a
    comparison at a short lag is judged at the longest one's wander, not its own average."""
    j = len(HALF)
    ea = eb = np.full((1, j), 100.0)
    ok = np.ones((1, j), dtype=bool)
    lag = np.array([[1.5, 0.02, 0.3]])
    _, v_up, _, v_dn = lag_judged((ea, ea, eb.copy(), eb, ok), lag, ok)
    noise = LAG_SAFETY * 1.5 * 100.0 * 2.0
    for v in (v_up, v_dn):
        assert v[0].tolist() == pytest.approx([noise + LAG_SAFETY * 0.3 * 1e4] * j)


def test_a_silent_run_is_judged_as_one_count_at_its_scale() -> None:
    """A run of silent buckets where 40 records were expected, on a rate whose windows learnt
    a relative wander of 0.2 (dispersion 5 at 20 expected): as one count of nothing under that
    wander, ``log P(0) = -log(1 + 0.2·40) / 0.2`` (-11: p 1.7e-5, no alarm at 1e-6), where 40
    independent-looking buckets said ``e^-40``; at Poisson where its scale is not ready. A run
    longer than the shortest window is judged at the next scale's dispersion."""
    disp = np.array([[5.0, 5.0, 1.0]] * 2)
    disp_e = np.full((2, len(HALF)), 20.0)
    ready = np.array([[True] * 3, [False] * 3])
    lp = run_log_p0(np.array([40.0, 40.0]), np.array([10.0, 10.0]), disp, disp_e, ready)
    assert lp.tolist() == pytest.approx([-np.log(9.0) / 0.2, -40.0])
    # 4 buckets of 10: the shortest window (up to 6 buckets); 40 buckets of 1: the longest (up
    # to 90), where this rate's wander averaged out (dispersion 1: Poisson)
    long = run_log_p0(np.array([40.0]), np.array([1.0]), disp[:1], disp_e[:1], ready[:1])
    assert long.tolist() == pytest.approx([-40.0])


def test_a_burst_at_a_daily_low_is_judged_against_the_level_before_it() -> None:
    """0.03 records a bucket (a night's low), then 20 more in ten minutes: even at
    `anomaly_update_weight` the first buckets teach a baseline this small about twice itself,
    so the windows expect ~4 where ~2 were usual and the burst falls just short against them.
    The longest window is also judged against the level held from before the stretch
    (`drop_ref`), as a drop is: 8 of 16 are found (3 judged against the baseline alone), and
    nothing in the quiet hours before."""
    found, early = low_rate_bursts(0.03, 20, range(1, 17), 1500)
    assert not early, early
    assert len(found) >= 6, found


def test_a_spike_window_is_screened_at_the_dispersion_it_is_judged_with() -> None:
    """Windows are judged for a spike at `tail_dispersion_at` (the wander's part only), and
    screened at it: at `dispersion_at`, floored by a heavy one-bucket dispersion (6 here, where
    the windows never wandered), a short window at 7 a bucket where 2 are usual sat under the
    screen (2.6σ) and went untested, though its tail at the lighter dispersion is ~1e-7."""
    table = ProfileTable(DetectConfig())
    table.add("0" * 16, SRC, "t", "t", "INFO", 0, 0)
    rng = np.random.default_rng(1)
    row, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    for b in range(1200):
        row[0] = rng.poisson(2.0)
        assert not table.close(b, row, zeros).alarms
    found = []
    for b in range(1200, 1206):
        table.dispersion.mean[0] = 6.0  # (held there: the burst would teach it)
        table.win.disp[0] = 1.0
        table.win.lag[0] = 6.0  # (the lagged test's counts as noisy as one bucket's)
        row[0] = 7.0
        found += [a.kind for a in table.close(b, row, zeros).alarms]
    assert AnomalyKind.SPIKE in found
