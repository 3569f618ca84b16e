"""Profiles: one per rhythm hash, kept as columns so a closing bucket judges all of them at once.

A profile holds the learned rhythm of one pattern: a rate baseline (EWMA mean and variance of
its count per bucket, plus a long-memory dispersion index and a decayed peak of normal buckets, deseasonalised),
a slow reference level and a smoothed residual for the drift test, a cardinality baseline (distinct unique ids per
bucket), first/last seen, counts, and its learning/active state. The columns are numpy arrays
indexed by slot; `ProfileTable.close` runs every test for every profile in a few vectorised
steps and computes exact tail probabilities only for the few candidates a screen lets through.
That keeps a closing bucket cheap even with 100,000 profiles and the memory per profile small.

Minimum-evidence rules keep tiny rates quiet (alarm fatigue is what kills detectors):
a spike needs at least ``spike.min_count`` records, ``spike.min_ratio`` × the mean, more than
any normal bucket of the recent past, and a tail probability below ``p_alarm`` (the
`false_alarms_per_day` budget per bucket) under Poisson or negative binomial; a drop needs an
expected count of ``drop.min_expected`` (over one bucket or a window; ``drop.silent_min_expected`` over a run of silent ones). Anomalous buckets
teach the baseline only a little (``anomaly_update_weight``), so an anomaly does not become
normal before it is reported.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from via_otlp.detect.cardinality import IdWindow
from via_otlp.detect.codec import as_array, check_version, leaf
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.cusum import Cusum
from via_otlp.detect.ewma import EWMeanVar, decay_of
from via_otlp.detect.tails import count_tails
from via_otlp.detect.upgrade import upgrade_columns
from via_otlp.detect.windows import (
    HALF,
    LAG_SAFETY,
    MEAN_LEN,
    SCALES,
    WindowState,
    dispersion_at,
    held_age,
    held_dispersion,
    held_slope,
    held_wander,
    lag_judged,
    lag_wander,
    level_wander_tails,
    log10_of,
    long_wander,
    run_log_p0,
    runs_at,
    smoothing_vif,
    tail_dispersion_at,
    wander_at,
    wander_busy,
)
from via_otlp.model import AnomalyKind, Source

_SCREEN_SIGMA = 3.0  # candidates for the exact tail test; p < 1e-3 needs more than 3σ anyway
# A count's lower tail is far lighter than the normal's (it stops at 0): 18 where 120 were
# expected at variance 11x that is 2.8σ low and p ≈ 4e-7, so the lagged drops screen at 2σ.
_LOW_SCREEN = 2.0
# Weighted Bonferroni: half the budget to one bucket, the other half shared by the windows'
# tests against the baseline, the lagged tests against the level just before, and the longest
# window against the level from before the change (`drop_ref`), for drops (spikes: below).
_WIN_SHARE = 2.0 * (2.0 * (SCALES - 1) + 1.0)
# A spike's budget gives a quarter of it, not half, to one bucket and the other quarter to the
# first window (4-6 buckets) on top of that window's `_WIN_SHARE` (the weights still sum to 1,
# so the total stays p_alarm). A spike that lasts a minute shows in that window's count before
# any one bucket of it is rare (and the one-bucket test is screened by `peak` and `min_ratio`
# besides): on day-one dev traffic the first window's p in a spike's first minute sat at
# 2.6e-7 to 5e-7 (seeds 5 and 2), under p_alarm but over the /14 share. Not where the learnt
# lags show a wander that grows with the lag (`held_wander`): under blocks of tens of minutes
# the first window, against a baseline that follows them part way, sees a block's edge as often
# as a spike (`--wander 900` dev: one more false spike each on seeds 1-5 and 11-20); the weights
# come from what the profile learnt before, so the total stays p_alarm either way. The /14 share
# had hidden a tail too light at night: the quiet week's null traffic reached p 1.8e-7 there
# (three false spikes) while its learnt dispersion was scaled down with the rate as if all of it
# were a wander (`tail_dispersion_at`'s `counts`: the counts' own part is kept).
_SPIKE_BUCKET_SHARE = 4.0
_SPIKE_FIRST_SHARE = 1.0 / (1.0 / _WIN_SHARE + 1.0 / _SPIKE_BUCKET_SHARE)
# The reference level is held (not updated) from the first bucket below this fraction of the
# forecast for as long as the deficit below it adds up (`_reference`): the level before a fall
# begins, not one the fall has already taught the baseline.
_REF_SLACK = 0.5
# The slow drift test is judged only while the smoothed level grows by more than this many
# standard deviations of its noise (`_drift`): a one-sided 2.3 % tail where nothing grows.
_RISING = 2.0
_CUS_MAX = 1e4  # (the deficit's float16 stops here: a stretch that long follows anyway)


def _two_others_disagree(
    sid: np.ndarray, m: int, ok: np.ndarray, rel: np.ndarray, v: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Per slot whose consensus (`_sibling_z`: groups `sid` of `m`) is said by exactly two
    other `ok` patterns, their disagreement beyond their noise, as a variance of the weighted
    sum (its weights `w`): the two levels `rel` (noise `v`) apart by more than their noise
    means either may be the one that moved (DerSimonian-Laird tau², the slot left out).

    Families `--wander 900` seed 1: a pattern's consensus came from two siblings, one in its
    own drift (−75 %, most of the weight), the two 8.1 apart on their noise's chi-square of 1;
    the test alarmed on the undrifted pattern, and its reset cascaded into a second false
    alarm. Two only: taken with three or more others, the day-one dev false rate rose 0.22 →
    0.29 (a drift's siblings' spread hid it)."""
    okf = ok.astype(np.float64)
    w0 = np.where(ok, 1.0 / v, 0.0)

    def others(x: np.ndarray) -> np.ndarray:
        return np.bincount(sid, x, m)[sid] - x

    a0, a1, a2 = others(w0), others(w0 * rel * okf), others(w0 * rel * rel * okf)
    b2, n = others(w0 * w0), others(okf)
    a0s = np.where(a0 > 0, a0, 1.0)
    excess = a2 - a1 * a1 / a0s - (n - 1.0)
    tau2 = np.where(
        (a0 > 0) & (n == 2), np.maximum(excess, 0.0) / np.maximum(a0s - b2 / a0s, 1e-12), 0.0
    )
    return tau2 * others(w * w)


def _windows_vif(vd: np.ndarray, phi: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Per profile, the day-one drift tests' variance inflation: the largest over the `ready`
    window scales of their dispersion `vd` over the counts' `phi`, at least 1."""
    vif = across(np.maximum, np.where(ready, vd / np.maximum(phi, 1e-9)[:, None], 1.0))
    return np.maximum(vif, 1.0)


def _poisson_z(s: np.ndarray, e: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Counts `s`'s standard score against the `e` expected at Poisson (a window's tail
    dispersion is at least 1: a screen for its tail tests), 0 where not `ready` or nothing
    was expected."""
    ok = ready & (e > 1e-9)
    return np.where(ok, (s - e) / np.sqrt(np.where(ok, e, 1.0)), 0.0)


class ProfileState(enum.StrEnum):
    """LEARNING until a profile has seen `warmup` worth of buckets; then ACTIVE (judged)."""

    LEARNING = "learning"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """What the control API shows of one profile (counts are per bucket of `bucket_seconds`)."""

    rhythm_hash: str
    source: Source
    source_key: str
    template_id: str
    template: str
    severity: str
    first_seen_ns: int
    last_seen_ns: int
    total_count: int
    buckets_seen: int
    baseline_mean: float
    baseline_std: float
    distinct_mean: float
    bucket_seconds: float
    state: ProfileState


@dataclass(frozen=True, slots=True)
class RecentBucket:
    """One recently closed bucket of one profile: what came, and what the baseline expected.

    `count` saturates at 2³²-1 and `distinct` (the HyperLogLog estimate, rounded) at 65,535;
    `expected` is kept to about 3 significant digits (a float16 of its square root, relative
    error <= 1e-3, up to 4.29e9): the ring is stored compactly (8 bytes a bucket).
    """

    start_ns: int
    count: int
    expected: float
    distinct: int


@dataclass(frozen=True, slots=True)
class Alarm:
    """One test that fired for one profile in one bucket."""

    slot: int
    kind: AnomalyKind
    score: float
    p_value: float
    expected: float
    observed: float
    baseline_mean: float
    baseline_std: float
    direction: int = 1  # +1 up, -1 down (drift)
    note: str = ""  # what the explanation says after the pattern, if not the kind's usual
    log10p: float = 0.0  # -log10 p_value (uncapped up to 300), or the equivalent of a CUSUM


@dataclass(slots=True)
class Verdict:
    """The outcome of closing one bucket: alarms, and per kind which profiles are back to normal."""

    bucket: int
    counts: np.ndarray
    distinct: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    alarms: list[Alarm]
    settled: dict[AnomalyKind, np.ndarray]


def score_of(p: float, p_alarm: float) -> float:
    """0–100 from a tail probability: 50 at the alarm level, 87.5 at its square, never 100.

    ``100 - 50·(x_alarm / x)²`` with ``x = -log10 p``: continuous and strictly increasing, so
    scores rank episodes however small p gets (it stops at p = 1e-300), and 80 (where events
    become ERROR) sits at about p_alarm^1.6 as before.

    >>> score_of(1e-6, 1e-6), score_of(1e-12, 1e-6), round(score_of(1e-40, 1e-6), 2)
    (50.0, 87.5, 98.88)
    """
    return score_of_log10(log10_of(p), -math.log10(p_alarm))


def score_of_log10(x: float, x_alarm: float) -> float:
    """`score_of` from ``x = -log10 p`` and the alarm level's ``x_alarm``."""
    if x <= 0.0:
        return 0.0
    return float(max(0.0, 100.0 - 50.0 * (x_alarm / x) ** 2))


def score_of_z(z: float) -> float:
    """A CUSUM alarm's score from its standardised residual: 50 at 0, 80 at about 3σ."""
    return float(100.0 - 50.0 / (1.0 + abs(z) / 5.0) ** 2)


_FLOAT_COLS = ("peak", "card_cusum", "card_excess")
# An unusual stretch longer than this many buckets (twice the longest window) is a level
# shift: the baseline then learns at full weight again, and the drift test tells the story.
_RUN_MAX = 4 * HALF[-1]
_LOW_MAX = 2 * HALF[-1]  # a low stretch holds the baseline back this long at most (`close`)
_LEN_CAP = 30_000  # int16 stretch lengths stop counting here: past their bound only "long"
_YOUNG = 2 * HALF[1]  # an unusual stretch this young is left to the spike and drop tests
_HOLD_SPAN = 2 * HALF[-1]  # the longest lagged comparison's buckets (`_lag_weight`)
_ACCEPT_SPAN = HALF[1]  # buckets whose mean level a day-one CUSUM alarm accepts (`_accept_level`)
_INT_COLS = (
    "first_seen_ns",
    "last_seen_ns",
    "last_bucket",
    "first_bucket",
    "total",
)
_BOOL_COLS = ("live", "has_uid")
# Narrow columns (what they need, to keep a typical profile under 2 KB).
_NARROW_COLS = {
    "rate_trend": np.float32, "unusual_len": np.int16, "present": np.int32, "season_n": np.int32,
    "drift_ref": np.float32, "drift_fast": np.float32, "drift_slow": np.float32,
    "drift_twice": np.float32, "low_len": np.int16, "sib_watch": np.int16,
    "drop_ref": np.float32, "ref_len": np.int16, "ref_cus": np.float16, "ref_disp": np.float16,
    "ref_disp_e": np.float32,
    "zrun_logp": np.float32, "zrun_expect": np.float32, "lag_hold": np.uint8,
}  # fmt: skip
_EW_COLS = ("rate", "level", "dispersion", "card", "pop", "card_disp")
_RECENT_COLS = ("recent_count", "recent_root", "recent_distinct")
HOURS = 24  # the seasonal shape: one factor per hour of the day (UTC), interpolated
RECENT = 60  # closed buckets kept per profile for the control API (`ProfileTable.recent`)
_COUNT_MAX = np.iinfo(np.uint32).max
_DISTINCT_MAX = np.iinfo(np.uint16).max
_ROOT_MAX = float(np.finfo(np.float16).max)
_GROWTH = 4  # a full table grows by a quarter: at most 25 % of its columns idle (doubling left
# up to half, 31 % at 100,000 profiles), for copying each slot about 4 times as the table fills


def _stabilised(count: Any) -> Any:
    """The day-one drift test's variance-stabilised count, ``2·sqrt(count + 3/8)`` (Anscombe):
    about unit variance for Poisson counts whatever their rate."""
    return 2.0 * np.sqrt(count + 0.375)


def _growth_var(lam: Any) -> Any:
    """The variance, per unit variance of white noise, of an EWMA (weight `lam`) less the same
    EWMA of it again: its impulse response is ``λ·aᵏ·(1 - λ(k+1))`` (a = 1 - λ), whose summed
    squares are ≈ λ/4 for a small λ (half the EWMA's own λ/(2-λ)).

    >>> round(float(_growth_var(0.001) / 0.00025), 3)
    0.999
    """
    q = (1.0 - lam) ** 2
    s = 1.0 / (1.0 - q) - 2.0 * lam / (1.0 - q) ** 2 + lam * lam * (1.0 + q) / (1.0 - q) ** 3
    return lam * lam * s


def _extended(old: np.ndarray, capacity: int, axis: int = 0, fill: float = 0.0) -> np.ndarray:
    """`old` with its slot `axis` extended to `capacity`, new slots holding `fill`. The space
    comes zeroed from `np.zeros` (pages mapped on first write), so a restore, which replaces
    every column, does not first write them all (0.6 s of a 50,000-profile restore).

    >>> _extended(np.array([[1, 2]], dtype=np.int16), 3, axis=1, fill=7).tolist()
    [[1, 2, 7]]
    """
    shape = list(old.shape)
    n, shape[axis] = shape[axis], capacity
    new = np.zeros(shape, dtype=old.dtype)
    head = [slice(None)] * old.ndim
    head[axis] = slice(0, n)
    new[tuple(head)] = old
    if fill:
        head[axis] = slice(n, None)
        new[tuple(head)] = fill
    return new


def across(ufunc: np.ufunc, a: np.ndarray) -> np.ndarray:
    """`a` (a row per profile, a column per scale) reduced across its columns by `ufunc`
    (np.minimum, np.maximum, np.logical_or), a column at a time: the same values as
    ``reduce(axis=1)``, which costs 10-20 times more on rows of three.

    >>> across(np.minimum, np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])).tolist()
    [1.0, -1.0]
    """
    out = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        ufunc(out, a[:, j], out=out)
    return out


def bucket_dispersion(
    phi: np.ndarray, short: np.ndarray, ready: np.ndarray, mu: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Per slot, the dispersion of this bucket's count around `mu`: the counts' own noise
    (`short`, learnt where the level has not wandered: `WindowState.learn_lag`'s shortest lag)
    plus the wander of the rate around the baseline, which grows with the square of the rate.

    `phi` (mean Pearson r² over the day) is ``a + b·m`` on average, with ``a`` the counts' own
    dispersion and ``b·mu²`` the wander's variance at expected count ``mu``; so at ``mu`` the
    dispersion is ``a + (phi - a)·mu / level`` with ``level`` the baseline's mean (the seasonal
    factors average 1). One dispersion for every hour judged a night-time spike at the day's
    variance (20-22× the mean on a noisy count series, 4-6 of it the counts' own) and a peak
    hour's too lightly. `phi` where `short` is not `ready`; never below 1.

    >>> bucket_dispersion(*(np.array([x]) for x in (6.0, 2.0, True, 5.0, 10.0))).tolist()
    [4.0]
    """
    a = np.where(ready, short.clip(1.0, phi), phi)
    return np.maximum(a + (phi - a) * mu / np.maximum(level, 1e-9), 1.0)


def grown(capacity: int) -> int:
    """The capacity a full table grows to (at least 64 slots more).

    >>> grown(0), grown(64), grown(100_000)
    (64, 128, 125000)
    """
    return capacity + max(64, capacity // _GROWTH)


_TREND_PACE = 3.0  # the trend adapts this many times faster than the level: a 3 h ramp is half over
# by the time a trend at the level's own pace has caught up with it


def holt(
    ew: EWMeanVar,
    trend: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    trend_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Learn `x` into the level `ew` and its local linear trend (Brown's double smoothing).

    With the step ``s`` the plain EWMA would take, the forecast ``level + trend`` moves by
    ``s(2 - s)`` of the error and the trend by ``(3λ)²`` of it (times the weight): a linear
    ramp is followed with almost no lag, where the EWMA lags by ``trend / λ``. The trend learns
    only once the level has a half-life of data (the first errors are not a slope), is damped
    a little and bounded by ``λ·level / 2`` a bucket (a doubling takes at least about two
    half-lives); nothing moves where `weight` is 0, and the trend learns with `trend_weight`
    (default `weight`; 0 while an unusual stretch shields the baseline, so a burst is not a
    slope). Returns the new trend; `ew`'s mean becomes the new level, its variance that of the
    forecast errors.

    >>> ew, t, plain = EWMeanVar(20, 1), np.zeros(1), EWMeanVar(20, 1)
    >>> for b in range(600):
    ...     t = holt(ew, t, np.array([100.0 + 0.5 * b]), np.ones(1))
    ...     plain.update(np.array([100.0 + 0.5 * b]))
    >>> round(float(ew.mean[0] + t[0]), 1), round(float(plain.mean[0]), 1)   # next is 400
    (399.8, 385.3)
    """
    s = ew.step_size(weight)
    move = weight > 0
    lam = ew.lam
    f = ew.mean + trend
    e = x - f
    ew.var = np.where(move, (1.0 - s) * (ew.var + s * e * e), ew.var)
    ew.mean = np.where(move, f + s * (2.0 - s) * e, ew.mean)
    ew.n = ew.n + weight
    grown = ew.n >= ew.half_life
    bound = 0.5 * lam * np.abs(ew.mean)
    tw = weight if trend_weight is None else trend_weight
    t = (1.0 - 0.1 * lam) * trend + np.where(grown, tw * (_TREND_PACE * lam) ** 2, 0.0) * e
    return np.where(move, t.clip(-bound, bound), trend)


def occupancy(c: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the distinct ids among `c` records drawn from ``1/u`` equally likely ids.

    The classical occupancy problem: ``E = N(1 - (1 - 1/N)^c)``; ``u = 0`` (an unbounded
    population) gives ``E = c`` and no variance.

    >>> e, v = occupancy(np.array([6.0]), np.array([0.2]))   # 6 mails to 5 users
    >>> round(float(e[0]), 3), round(float(v[0]), 3)
    (3.689, 0.526)
    """
    u = u.clip(0.0, 1.0 - 1e-9)
    small = u < 1e-4
    us = np.where(small, 0.5, u)
    n = 1.0 / us
    lq = c * np.log1p(-us)
    q1 = np.exp(lq)
    e = np.where(small, c - c * (c - 1.0) * 0.5 * u, -np.expm1(lq) * n)
    q2 = np.exp(c * np.log1p(-2.0 * np.minimum(us, 0.49)))
    v_big = n * (n - 1.0) * q2 + n * q1 - n * n * q1 * q1
    v_big = np.where(us > 0.49, n * q1 * (1.0 - q1), v_big)  # N about 2 or less: bounded anyway
    v = np.where(small, c * (c - 1.0) * 0.5 * u, v_big)
    return np.maximum(e, np.minimum(c, 1.0)), np.maximum(v, 0.0)


def population_of(c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The ``u = 1/N`` whose occupancy mean gives `d` distinct ids among `c` records (c >= 2).

    >>> round(float(population_of(np.array([6.0]), np.array([3.689]))[0]), 3)
    0.2
    """
    d = d.clip(1.0, c)
    out = np.where(d >= c - 1e-9, 0.0, 1.0)
    todo = ((d < c - 1e-9) & (d > 1.0 + 1e-9)).nonzero()[0]
    if len(todo) == 0:
        return out
    c, d = c[todo], d[todo]
    lo = np.full(len(c), -27.0)  # log2 u in [-27, 0]: bisection to 0.007 (0.5% in u)
    hi = np.zeros(len(c))
    neg_d = -d  # (-a > d·u is a < -d·u, exactly: one numpy call fewer a step)
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        u = np.minimum(np.exp2(mid), 1.0 - 1e-9)
        big = np.expm1(c * np.log1p(-u)) < neg_d * u  # E(u) > d: u must be larger
        lo = np.where(big, mid, lo)
        hi = np.where(big, hi, mid)
    out[todo] = np.exp2(0.5 * (lo + hi))
    return out


@dataclass(slots=True)
class _TailsDue:
    """Tail tests of a close not yet computed (`ProfileTable._tail_tests`): the counts `k`
    against `e` at variance `v` (`spread` as `level_wander_sf`'s), for `p_out` at `rows`,
    each p times its `share`."""

    p_out: np.ndarray
    rows: np.ndarray
    k: np.ndarray
    e: np.ndarray
    v: np.ndarray
    upper: bool
    share: np.ndarray
    spread: np.ndarray


_DUE_COLS = ("k", "e", "v", "spread")


def _settle(due: list[_TailsDue]) -> None:
    """Tail tests `due`, in one array call a kind: the upper tails (each with its spread,
    `level_wander_tails`) and the lower (`count_tails`); into their `p_out`s, each the least
    of its p's (in any order: the same as one at a time)."""
    for upper in (True, False):
        part = [d for d in due if d.upper is upper]
        if not part:
            continue
        k, e, v, spread = (np.concatenate([getattr(d, f) for d in part]) for f in _DUE_COLS)
        p = level_wander_tails(k, e, v, spread) if upper else count_tails(k, e, v, False)
        at = np.cumsum([0] + [len(d.rows) for d in part])
        for d, lo, hi in zip(part, at[:-1].tolist(), at[1:].tolist(), strict=True):
            np.fmin.at(d.p_out, d.rows, d.share * p[lo:hi])  # (fmin: as min() of each)


class ProfileTable:
    """All profiles, as columns indexed by slot; `index` maps rhythm hash → slot."""

    # 4: a tree of raw arrays (1-3: base64 columns, no longer read)
    VERSION = 4

    def __init__(self, config: DetectConfig, capacity: int = 64) -> None:
        self.config = config
        c = config
        self.warmup_buckets = c.buckets(c.warmup)
        hl = c.half_life / c.bucket
        self.capacity = 0
        self.rate = EWMeanVar(hl, 0)
        self.level = EWMeanVar(hl, 0)  # of y (`_stabilised` counts): the day-one drift residuals
        # (float32: a CUSUM of a few tens of σ needs no more; 8 bytes a profile less, which pay
        # for `drift_slow`)
        self.cusum = Cusum(c.drift.slack, c.drift.threshold, 0, np.float32)
        # The drift test once a day's shape is learnt: a slow reference level of the
        # deseasonalised count, and the smoothed residual `drift_fast` judged against it.
        self._ref_hl = c.drift.reference / c.bucket
        self._ref_lam = decay_of(self._ref_hl)
        self._fast_lam = decay_of(c.drift.window / c.bucket)
        self._slow_lam = decay_of(c.drift.slow_reference / c.bucket)
        # Day one's (`_sibling_z`): the residual's smoothing and the reference's memory.
        self._sib_lam = decay_of(c.drift.sibling_window / c.bucket)
        self._sib_ref_lam = decay_of(c.drift.sibling_reference / c.bucket)
        self._sib_span = min(max(1, round(c.drift.sibling_window / c.bucket)), 2**15 - 1)
        self.dispersion = EWMeanVar(c.dispersion_half_life / c.bucket, 0)  # of Pearson r²
        self.card = EWMeanVar(hl, 0)
        # The id population behind a profile's unique ids, as u = 1/N (occupancy model), and the
        # long-memory dispersion of distinct counts around what that population predicts.
        self.pop = EWMeanVar(hl, 0)
        self.card_disp = EWMeanVar(c.dispersion_half_life / c.bucket, 0)
        # Seasonality: per profile, a multiplicative factor per hour of the day: the day's
        # shape, learned at the end of each whole day from its hourly counts (`day_sum`), and
        # used once a day has been learned.
        self._bucket_s = c.bucket
        self.season = np.ones((0, HOURS), dtype=np.float32)
        self.day_sum = np.zeros((0, HOURS), dtype=np.float32)
        self.day_abs: int | None = None  # the day (since the epoch) being accumulated
        self._peak_decay = 1.0 - decay_of(c.dispersion_half_life / c.bucket)
        self._disp_hl = c.dispersion_half_life / c.bucket
        self._rate_hl = c.half_life / c.bucket
        self.peak = np.zeros(0)
        # A run of silent buckets: its log probability and expected count (float32: 8 bytes a
        # profile, which pay for `ref_cus` and `ref_disp`).
        self.zrun_logp = np.zeros(0, dtype=np.float32)
        self.zrun_expect = np.zeros(0, dtype=np.float32)
        # Buckets left while a lagged comparison still holds a bucket that alarmed (`_lag_weight`;
        # 1 byte a profile).
        self.lag_hold = np.zeros(0, dtype=np.uint8)
        # Counts over windows of several lengths (`windows`), and how long the current stretch
        # of unusual windows (beyond settle_sigma at some scale) has lasted.
        self.win = WindowState(0)
        # The local linear trend of the rate (`holt`).
        self.rate_trend = np.zeros(0, dtype=np.float32)
        self.drift_ref = np.zeros(0, dtype=np.float32)
        self.drift_fast = np.zeros(0, dtype=np.float32)
        # The slow test's reference (`_drift`): 4 bytes a profile.
        self.drift_slow = np.zeros(0, dtype=np.float32)
        # The smoothed level smoothed once more (`_drift`: does it still grow?): 4 bytes.
        self.drift_twice = np.zeros(0, dtype=np.float32)
        self.unusual_len = np.zeros(0, dtype=np.int16)
        # How long the current stretch of low windows (below -settle_sigma, not yet unusual) has
        # held the baseline back (`close`: bounded influence of a drop before it is judged).
        self.low_len = np.zeros(0, dtype=np.int16)
        # The deseasonalised level from before a fall (`_reference`): the baseline's forecast,
        # held while the counts fall short of it, and how long it has been held; the deficit
        # that holds it, in buckets' worth of the forecast; and the longest window's
        # dispersion from before the hold, to judge the fall with, with the expected count it
        # had learnt at (`WindowState.disp_e`; float32: a busy pattern's window expects more
        # than float16 holds). (14 bytes a profile.)
        self.drop_ref = np.zeros(0, dtype=np.float32)
        self.ref_len = np.zeros(0, dtype=np.int16)
        self.ref_cus = np.zeros(0, dtype=np.float16)
        self.ref_disp = np.zeros(0, dtype=np.float16)
        self.ref_disp_e = np.zeros(0, dtype=np.float32)
        self.first_seen_ns = np.zeros(0, dtype=np.int64)
        self.last_seen_ns = np.zeros(0, dtype=np.int64)
        self.last_bucket = np.zeros(0, dtype=np.int64)
        self.first_bucket = np.zeros(0, dtype=np.int64)
        self.total = np.zeros(0, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)
        self.has_uid = np.zeros(0, dtype=bool)
        # For how many more closes the day-one sibling test's last look at it holds (`close`).
        self.sib_watch = np.zeros(0, dtype=np.int16)
        self.present = np.zeros(0, dtype=np.int32)  # buckets that held records
        self.season_n = np.zeros(0, dtype=np.int32)  # whole days learned
        self.card_cusum = np.zeros(0)  # upward CUSUM of standardised distinct-count residuals
        self.card_excess = np.zeros(0)  # distinct ids above expectation over its excursion
        # The last RECENT closed buckets of every profile, a ring shared by all: bucket b sits in
        # row b % RECENT (rows are contiguous, so closing a bucket writes one row of each).
        # Rows hold buckets recent_from .. recent_end-1 (the last RECENT of them).
        self.recent_count = np.zeros((RECENT, 0), dtype=np.uint32)
        self.recent_root = np.zeros((RECENT, 0), dtype=np.float16)  # sqrt(expected)
        self.recent_distinct = np.zeros((RECENT, 0), dtype=np.uint16)
        self.recent_from = 0
        self.recent_end = 0
        self.rhythm_hash: list[str] = []
        self.source: list[Source | None] = []
        self.template_id: list[str] = []
        self.template: list[str] = []
        self.severity: list[str] = []
        self.index: dict[str, int] = {}
        # Per slot, a small number for its source (derived from `source`, never stored): the
        # day-one drift test compares a pattern with its source's other patterns.
        self.src_id = np.zeros(0, dtype=np.int32)
        self._src_ids: dict[str, int] = {}
        self._free: list[int] = []
        # The exact tail tests of the close in progress, due in one array call (`_tail_tests`;
        # None outside a close: each at once).
        self._tails_due: list[_TailsDue] | None = None
        self.ids = IdWindow(c)  # distinct ids over windows (`cardinality`): slot columns too
        self._grow(capacity)

    # -- slots -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self, capacity: int) -> None:
        if capacity <= self.capacity:
            return
        pad = capacity - self.capacity
        for name in _EW_COLS:
            getattr(self, name).grow(capacity)
        self.season = _extended(self.season, capacity, 0, 1.0)
        self.day_sum = _extended(self.day_sum, capacity)
        self.cusum.grow(capacity)
        self.ids.grow(capacity)
        self.win.grow(capacity)
        for name in _RECENT_COLS:
            setattr(self, name, _extended(getattr(self, name), capacity, axis=1))
        for name in (*_FLOAT_COLS, *_INT_COLS, *_BOOL_COLS, *_NARROW_COLS):
            setattr(self, name, _extended(getattr(self, name), capacity))
        self.src_id = _extended(self.src_id, capacity)
        for lst in (self.rhythm_hash, self.template_id, self.template, self.severity):
            lst.extend([""] * pad)
        self.source.extend([None] * pad)
        # Lowest free slot first: pop() from the end of a descending list.
        self._free = list(range(capacity - 1, self.capacity - 1, -1)) + self._free
        self.capacity = capacity

    def add(
        self,
        rhythm_hash: str,
        source: Source,
        template_id: str,
        template: str,
        severity: str,
        time_ns: int,
        bucket: int,
    ) -> int:
        """A new profile; returns its slot."""
        if not self._free:
            self._grow(grown(self.capacity))
        slot = self._free.pop()
        self.index[rhythm_hash] = slot
        self.rhythm_hash[slot] = rhythm_hash
        self.source[slot] = source
        self.src_id[slot] = self._src_id_of(source.key)
        self.template_id[slot] = template_id
        self.template[slot] = template
        self.severity[slot] = severity
        self.first_seen_ns[slot] = time_ns
        self.last_seen_ns[slot] = time_ns
        self.first_bucket[slot] = bucket
        self.last_bucket[slot] = bucket
        self.live[slot] = True
        return slot

    def _src_id_of(self, key: str) -> int:
        """The number of source `key` (new keys get the next one; when sources that come and
        go have used four per slot, the live ones are numbered afresh, so it stays bounded)."""
        sid = self._src_ids.get(key)
        if sid is None:
            if len(self._src_ids) >= 4 * max(self.capacity, 64):
                self._src_ids = {}
                for s in np.flatnonzero(self.live).tolist():
                    src = self.source[s]
                    if src is not None:
                        self.src_id[s] = self._src_ids.setdefault(src.key, len(self._src_ids))
            sid = self._src_ids.setdefault(key, len(self._src_ids))
        return sid

    def remove(self, slot: int) -> None:
        """Forget a profile (eviction); its slot is reused."""
        del self.index[self.rhythm_hash[slot]]
        for name in _EW_COLS:
            getattr(self, name).clear(slot)
        self.season[slot] = 1.0
        self.day_sum[slot] = 0.0
        for name in _RECENT_COLS:
            getattr(self, name)[:, slot] = 0
        self.ids.clear(slot)
        self.win.clear(slot)
        self.cusum.clear(slot)
        for name in (*_FLOAT_COLS, *_INT_COLS, *_BOOL_COLS, *_NARROW_COLS):
            getattr(self, name)[slot] = 0
        self.rhythm_hash[slot] = self.template_id[slot] = self.template[slot] = self.severity[
            slot
        ] = ""
        self.source[slot] = None
        self._free.append(slot)

    def idle(self, bucket: int, ttl_buckets: int) -> np.ndarray:
        """Slots of live profiles without records for `ttl_buckets` buckets."""
        return (self.live & (bucket - self.last_bucket >= ttl_buckets)).nonzero()[0]

    def least_recent(self, k: int, protect: np.ndarray) -> np.ndarray:
        """The `k` live profiles seen longest ago (not in `protect`), oldest first, ties by slot."""
        can = self.live.copy()
        can[protect] = False  # fewer than `k` when too few are left to choose from
        seen = np.where(can, self.last_seen_ns, np.iinfo(np.int64).max)
        order = np.lexsort((np.arange(self.capacity), seen))[:k]
        return order[can[order]]

    # -- judging a bucket --------------------------------------------------------------------

    def close(
        self,
        bucket: int,
        counts: np.ndarray,
        distinct: np.ndarray,
        partial: bool = False,
        with_id: np.ndarray | None = None,
    ) -> Verdict:
        """Judge bucket `bucket` for every profile, then learn from it.

        `counts` and `distinct` are per slot (length `capacity`); `distinct` is 0 where a profile
        had no unique ids in the bucket; `with_id` (per slot, optional) counts the records that
        carried an id, for the occupancy model of distinct ids. A `partial` bucket (the end of a replay, cut short) is
        judged only for what it has too much of (spike, cardinality): too little in it is no
        evidence of a drop or a downward drift, and nothing is learnt from it.
        """
        cfg = self.config
        p_alarm = cfg.p_alarm
        log_p_alarm = math.log(p_alarm)
        live = self.live & (self.first_bucket <= bucket)
        c = np.where(live, counts, 0.0)
        n = self.rate.n
        active = live & (n >= max(1, self.warmup_buckets))
        self._season_roll(bucket)
        # The baseline learns deseasonalised counts (c_des = c / g); expected mu_base · g.
        g = self._season_factor(bucket)
        c_des = c / g
        # The baseline's forecast: its level plus its local trend (a smooth ramp, such as the
        # morning rise on a first day, is followed without lag rather than judged as a shift).
        mu_base = np.maximum(self.rate.mean + self.rate_trend, 0.0)
        mu = mu_base * g
        phi = np.maximum(1.0, np.where(self.dispersion.n > 0, self.dispersion.mean, 1.0))
        lag_ready = self.win.lag_ready()
        phi_b = bucket_dispersion(phi, self.win.lag[:, 0], lag_ready[:, 0], mu, self.rate.mean)
        var = np.maximum(np.maximum(self.rate.var * g * g, mu * phi_b), np.maximum(mu, 1e-12))
        sd = np.sqrt(var)
        alarms: list[Alarm] = []
        settle = cfg.settle_sigma

        # Spike and drop, at every scale: one bucket, then windows of several lengths (see
        # `windows`); the budget shared by one bucket and the windows (`_WIN_SHARE`, a spike's:
        # `_SPIKE_BUCKET_SHARE`), so together they alarm as rarely as one test at `p_alarm`.
        win = self.win
        win.begin(bucket)
        ws, we = win.sums(c, mu)
        phi_w = dispersion_at(win.disp, phi, self.dispersion.n, self._disp_hl)
        ready_w = phi_w > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            wz = np.where(ready_w & (we > 1e-9), (ws - we) / np.sqrt(phi_w * we), 0.0)
        wz = np.where(active[:, None], wz, 0.0)
        sp = cfg.spike
        # One bucket: far above the mean and above any normal bucket of the recent past.
        cand = active & (c >= sp.min_count) & (c >= sp.min_ratio * mu) & (c_des > self.peak)
        cand &= c > mu + _SCREEN_SIGMA * sd
        spike_p = np.ones(self.capacity)
        self._tails_due = []
        self._tail_tests(spike_p, cand, c, mu, var, True, share=_SPIKE_BUCKET_SHARE)
        # Windows: a count far above what the window expected, at that window's dispersion
        # with the wander at the window's rate (`tail_dispersion_at`: at a low rate the Poisson
        # part is all there is, and a burst of 10x is a spike), never heavier than `phi_w` (heavier,
        # in full windows at busy hours, it lost a held-out count-series window). Screened at
        # that same dispersion: at `phi_w`, where the one-bucket floor makes it far heavier
        # (1.94x), a window the tail test would alarm on stayed under the screen, untested.
        # (That dispersion is at least 1: a window under 3σ at Poisson is not computed at all.)
        rows, cols = self._spike_screen(ws, we, ready_w & active[:, None]).nonzero()
        # (At least the wander the forecast misses, computed once where some window is judged
        # against it: `_forecast_wander`; the wander's growth with a held level's age once a
        # close, where some level held from before is judged: `held_slope`.)
        slope = self._held_slope(live, lag_ready) if len(rows) else None
        fore_v = self._forecast_wander(slope, lag_ready) if slope is not None else None
        # (The forecast is itself a level the wander set: the wander it misses, beyond the
        # windows' learnt dispersion, is the spread of that level, `level_wander_sf`, not a
        # floor on the window's dispersion.)
        self._window_tails(
            spike_p, rows, cols, ws[rows, cols], we[rows, cols], phi_w, True,
            first_share=True, spread=fore_v,
        )  # fmt: skip
        # Lagged: the current half-block against the level just before it (see `lag_judged`).
        blocks = win.lagged(bucket, c, mu)
        la, lag_ok = blocks[0], active[:, None]
        lag_v = lag_wander(win.lag)
        m_up, v_up, m_dn, v_dn = lag_judged(blocks, win.lag, ready_w & lag_ok & lag_ready, lag_v)
        with np.errstate(divide="ignore", invalid="ignore"):
            z_up = np.where(v_up > 0, (la - m_up) / np.sqrt(np.where(v_up > 0, v_up, 1.0)), 0.0)
            z_dn = np.where(v_dn > 0, (la - m_dn) / np.sqrt(np.where(v_dn > 0, v_dn, 1.0)), 0.0)
        lcand = (z_up > _SCREEN_SIGMA) & (la >= sp.min_count) & (la >= sp.min_ratio * m_up)
        # (The reference half-block's level is one the wander set: of the lag's wander, two
        # levels apart, half is its own, the spread of the level judged against
        # (`level_wander_sf`), and half the current one's, in the variance.)
        ref_v, v_cur = None, v_up
        if lcand.any():
            ref_v = 0.5 * lag_v
            v_cur = np.where(lcand, v_up - LAG_SAFETY * ref_v * m_up * m_up, v_up)
            ref_v = ref_v[lcand]
        self._tail_tests(spike_p, lcand, la, m_up, v_cur, True, spread=ref_v)
        # The longest window against the level from before the change (`drop_ref`, held while
        # a stretch is unusual), as drops are: a burst at a daily low (0.03 records a bucket)
        # teaches the baseline twice itself even at `anomaly_update_weight`, so the windows
        # expected 3.8 where 1.8 were usual, and 23 records in them fell just short.
        mu_ref = np.where(live & (self.drop_ref > 0), self.drop_ref * g, 0.0)
        e_ref = win.ref_sum(mu_ref)
        s_l = ws[:, -1]
        ok = ready_w[:, -1] & active & (e_ref < we[:, -1])
        rows = self._spike_screen(s_l, e_ref, ok).nonzero()[0]
        cols = np.full(len(rows), len(HALF) - 1)
        # (At least the wander of the rate between the held level and now, `held_dispersion`:
        # the held level is one the wander set, so half of it is that level's own, the spread
        # of the level judged against, `level_wander_sf`, and half the window's, in the floor.)
        held_v = 0.5 * long_wander(win.lag, lag_ready)
        held_d = held_dispersion(win.lag, lag_ready, e_ref, held_v)
        self._window_tails(
            spike_p, rows, cols, s_l[rows], e_ref[rows], phi_w, True, floor=held_d, spread=held_v
        )
        # Weighted Bonferroni (`_WIN_SHARE`): the total stays p_alarm.
        self._settle_tails([])
        spike_p = np.minimum(1.0, spike_p)
        spike_hit = spike_p < p_alarm
        for s in spike_hit.nonzero()[0].tolist():
            p = float(spike_p[s])
            alarms.append(
                Alarm(s, AnomalyKind.SPIKE, score_of(p, p_alarm), p, float(mu[s]), float(c[s]),
                      float(mu[s]), float(sd[s]), 1, log10p=log10_of(p))
            )  # fmt: skip

        # Drop: one bucket or a window far below an expected count that means something...
        dr = cfg.drop
        # Only a pattern that has been there for a while can fall away: one that lived a few
        # minutes (a new error during an incident) is not "dropping" when the incident ends.
        drop_active = active & (self.present >= 2 * max(1, self.warmup_buckets)) & (not partial)
        cand = (
            drop_active
            & (mu >= dr.min_expected)
            & (c <= dr.max_ratio * mu)
            & (c < mu - _SCREEN_SIGMA * sd)
        )
        drop_p = np.ones(self.capacity)
        self._tail_tests(drop_p, cand, c, mu, var, False, share=2.0)
        wz_dn = np.where(we >= dr.min_expected, wz, 0.0)  # windows with a drop's evidence
        w_low = wz_dn < -_SCREEN_SIGMA
        # Windows against the baseline, at their own dispersion for a tail, as spikes are
        # (`_window_tails`), screened at Poisson first: at `phi_w`, floored by the one-bucket
        # dispersion, a window was judged far heavier than its counts vary (1.94x), and a slow
        # or low-rate drop was found late or not at all...
        ok = drop_active[:, None]
        rows, cols = self._drop_screen(ws, we, _poisson_z(ws, we, ready_w), ok).nonzero()
        fore_d = None
        if len(rows):  # (the forecast floor: at least its wander, `_forecast_wander`)
            if fore_v is None:
                slope = self._held_slope(live, lag_ready)
                fore_v = self._forecast_wander(slope, lag_ready)
            fore_d = 1.0 + fore_v[:, None] * we
        self._window_tails(
            drop_p, rows, cols, ws[rows, cols], we[rows, cols], phi_w, False, floor=fore_d
        )
        # ...the current half-block against the level just before it (`lag_judged`, at the
        # variance learnt on that comparison)...
        cand = self._drop_screen(la, m_dn, z_dn, ok, _LOW_SCREEN)
        self._tail_tests(drop_p, cand, la, m_dn, v_dn, False)
        # ...and the longest window against the level from before the change (`drop_ref`): a
        # slow drop at a low rate has taught the baseline half of itself before any window is
        # low enough to hold it back (expected 0.62 -> 0.36 while it fell), and is judged
        # against the level it fell from as well.
        # Its dispersion is the one learnt before the hold began (`ref_disp`: the fall's own
        # windows teach the current one, 1.12 -> 1.5 over a 24-minute drop), and its wander is
        # scaled to the reference's count (`tail_dispersion_at`'s "busy") from the expected
        # count that dispersion learnt at, held with it (`ref_disp_e`), not the current
        # `disp_e`, which the fall's windows pull down as the baseline follows it (that judged
        # the level it fell from as busier than the dispersion it is judged with had seen).
        z_ref = _poisson_z(s_l, e_ref, ready_w[:, -1])
        rows = self._drop_screen(s_l, e_ref, z_ref, drop_active & (e_ref > we[:, -1])).nonzero()[0]
        if len(rows):
            cols = np.full(len(rows), len(HALF) - 1)
            before, before_e = win.disp.copy(), win.disp_e.copy()
            held = self.ref_disp.astype(np.float32)
            use = (held > 0) & (held < before[:, -1])  # (the lighter: the fall only adds)
            before[:, -1] = np.where(use, held, before[:, -1])
            held_e = self.ref_disp_e  # (0 in a snapshot from before it: the current one)
            before_e[:, -1] = np.where(use & (held_e > 0), held_e, before_e[:, -1])
            phi_ref = dispersion_at(before, phi, self.dispersion.n, self._disp_hl)
            level = np.where(self.drop_ref > 0, self.drop_ref, self.rate.mean)
            # (At least the counts' dispersion and the wander the held level misses because it
            # was held: `held_wander`; past `_RUN_MAX` the reference follows again.)
            held_for = np.where(self.ref_len > _RUN_MAX, 0, self.ref_len).astype(np.float64)
            age = held_age(held_for, float(win.lengths()[-1]))
            # (The lag growth pooled over the source's patterns, which share its wander.)
            slope = self._held_slope(live, lag_ready) if slope is None else slope
            v_held = wander_at(slope, win.lag, lag_ready, age)
            held_dn = held_dispersion(win.lag, lag_ready, e_ref, v_held)
            self._window_tails(
                drop_p, rows, cols, s_l[rows], e_ref[rows], phi_ref, False, before, level,
                before_e, held_dn,
            )  # fmt: skip
        self._settle_tails(None)
        drop_p = np.minimum(1.0, drop_p)
        # ...or a run of silent buckets, however long, that together were expected to hold
        # records (exact: the probability of nothing at all; its own budget).
        silent = drop_active & (c == 0)
        over = var > mu * (1.0 + 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(over, mu * mu / np.where(over, var - mu, 1.0), 1.0)
            lp0 = np.where(over, -r * np.log1p(mu / np.where(r > 0, r, 1.0)), -mu)
        # (a partial bucket neither adds to a run nor ends it)
        if not partial:
            self.zrun_logp = np.where(silent, self.zrun_logp + lp0, 0.0).astype(np.float32)
            self.zrun_expect = np.where(silent, self.zrun_expect + mu, 0.0).astype(np.float32)
        runs = silent & (self.zrun_expect >= max(dr.min_expected, dr.silent_min_expected))
        # (Judged as one count as well, at the dispersion learnt at the run's aggregation: the
        # buckets of a wandering rate are empty together, and a run is the less unlikely of the
        # two. Only the runs long enough to be judged: no other slot reads it.)
        run_lp = self.zrun_logp.astype(np.float64)
        if runs.any():
            r = runs.nonzero()[0]
            lp_win = run_log_p0(self.zrun_expect[r], mu[r], win.disp[r], win.disp_e[r], ready_w[r])
            run_lp[r] = np.maximum(run_lp[r], lp_win)
        run_hit = runs & (run_lp < log_p_alarm)
        drop_p = np.where(run_hit, np.minimum(drop_p, np.exp(run_lp)), drop_p)
        drop_hit = drop_active & (drop_p < p_alarm)
        for s in drop_hit.nonzero()[0].tolist():
            p = float(drop_p[s])
            alarms.append(
                Alarm(s, AnomalyKind.DROP, score_of(p, p_alarm), p, float(mu[s]), float(c[s]),
                      float(mu[s]), float(sd[s]), -1, log10p=log10_of(p))
            )  # fmt: skip
        # A stretch where some window is beyond the screen (3σ) with the minimum evidence of
        # its side is unusual: while it lasts (up to _RUN_MAX buckets) the baseline and the
        # peak learn from it only a little and the trends not at all, so a burst that builds
        # slowly is judged against the level before it. (Evidence on both sides, not just z:
        # a low rate's windows are often 2σ high and never 2σ low, which would bias it down.)
        high = (wz > _SCREEN_SIGMA) & (ws >= sp.min_count)
        unusual = active & across(np.logical_or, high | w_low)
        longer = np.minimum(self.unusual_len + 1, _LEN_CAP)
        self.unusual_len = np.where(unusual | spike_hit | drop_hit, longer, 0).astype(np.int16)

        # Drift on day one (no daily shape learnt yet): a two-sided CUSUM on variance-
        # stabilised, standardised residuals from an untrended level.
        dft = cfg.drift
        y = _stabilised(c_des)  # deseasonalised, like the level it is compared with
        # Buckets of a wandering rate are high or low together: a CUSUM adds their residuals
        # as if independent, so they are scaled by the variance inflation the windows learnt
        # (dispersion of a window's sum over that of one bucket) before they add up.
        # (Both drift tests use it.)
        # (From the windows' dispersion as learnt before shielded stretches taught it in full,
        # `WindowState.disp_v`: that one would grow the inflation with them, and a day-7 drift
        # found in its window was found just after it.)
        vd = win.vif_disp()
        vif = _windows_vif(vd, phi, ready_w)
        learnt = self.season_n > 0
        # (The sibling test's smoothing weighs ~260 buckets, beyond the longest window: its
        # inflation is the windows' extrapolated to it, at least the max over them.)
        vif_gate = np.maximum(vif, smoothing_vif(vd, phi, ready_w, self._sib_lam))
        # The judged pattern's own noise: the same with the wander at the current rate when it
        # is busier than the longest window learnt at (`_sibling_vif`); the gate (which
        # patterns the siblings can judge) and an episode's end stay on `vif_gate`. (A table
        # whose live patterns all learnt a day reads neither: skipped.)
        vif_sib = vif_gate if (learnt | ~live).all() else self._sibling_vif(vd, phi, mu, ready_w)
        eligible = active & (mu >= dft.min_mean) & (not partial) & ~learnt
        hit = spike_hit | drop_hit
        # After it: the residuals from a slow reference, smoothed over minutes and judged in
        # units of their own noise (see `_drift`): the episode resolves when the smoothed
        # count holds still where the baseline caught up, under noise too.
        z_s, sd_s, hold = self._drift(
            c_des, mu_base, var / (g * g), active & learnt & (not partial),
            np.where(learnt, vif, vif_sib), hit | partial, learnt,
        )  # fmt: skip
        # Day one with siblings: the smoothed residual relative to the reference, against the
        # consensus of the source's other patterns (see `_sibling_z`); the CUSUM only where
        # a source's other patterns say too little.
        ref = self.drift_ref.astype(np.float64)
        formed = live & (self.rate.n >= self._ref_hl) & (ref > 0) & (not partial)
        formed &= active & ~learnt
        # (Siblings must be judgeable by their slow reference, not by the moment's rate: a
        # pattern that fell silent has a reference that decays with its residual, so it would
        # look both far off and precise.)
        # (Nor is a pattern whose windows are beyond the screen now: a spike's, a drop's or a
        # burst's level says nothing of the source's daily curve. With it in, 3-4 unchanged
        # siblings of a pattern that halved all alarmed upwards: the clip around the mean
        # that held the halved one drew their consensus down.)
        # (A lone day-one CUSUM alarm the source's total explains is spent: see below.)
        shared_up = shared_down = np.zeros(self.capacity, dtype=bool)
        sd_gate = sd_s
        if formed.any():
            quiet_now = formed & ~unusual & ~hit
            contrib = quiet_now & (ref >= dft.min_mean)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(formed, self.drift_fast / np.where(formed, ref, 1.0), 0.0)

            def relative(sd: np.ndarray) -> np.ndarray:
                """`sd` relative to the reference where formed (a relative shift under
                min_relative_shift never alarms, at this threshold too)."""
                with np.errstate(divide="ignore", invalid="ignore"):
                    sdr = np.where(formed, sd / np.where(formed, ref, 1.0), 1.0)
                return np.maximum(sdr, dft.min_relative_shift / dft.sibling_sigma)

            sdr = relative(sd_s)
            # Which patterns the siblings can judge (`sibling_max_sd`), and when an episode
            # ends (`still` below), are said on the noise unscaled by the current rate
            # (`vif_gate`): with both on the scaled noise, families `--wander 900` dev 1-5 had
            # three more false drifts on >= 5/min patterns, 0.60 -> 0.83 false/source-day even
            # at 5.5σ (which of the two did it was not traced).
            sd_gate = sd_s * np.sqrt(vif_gate / np.maximum(vif_sib, 1e-9))
            _, judgeable, _ = self._sibling_z(rel, relative(sd_gate), formed, contrib)
            z_sib, sib, cons = self._sibling_z(
                rel, sdr, formed, contrib, model_error=dft.sibling_model_error, gate=judgeable
            )
            # A pattern the sibling test cannot judge (too few siblings of `min_mean` a bucket:
            # at night on a deep daily curve, none) is judged by the lone CUSUM below, against
            # an untrended level, which a steep ramp of the daily curve leaves behind: at a
            # night of 5-10 % of the peak the morning rises by 40-50 % an hour, as steep as a
            # drift. Its source's total follows the same curve and is busy even at night: the
            # pattern's share of it (its relative level against the others' pooled, each
            # weighted by its reference level, so a quiet pattern counts for the records it
            # carries and a silent one for nothing) says whether the rise is the source's. Where
            # that total is known (`sibling_max_sd`) a lone alarm is spent unless the pattern
            # also stands beyond the screen (3σ) from it, on the alarm's side: a second opinion
            # on evidence the CUSUM has already summed, not a test with a budget of its own. (At
            # `sibling_sigma` a lone pattern's own ramp, 4.7-5.3σ from its source's total when
            # the CUSUM alarmed, was lost on a dev seed. Families `--daily 0.9` day1, dev seeds
            # 1-5 and 11-20: false drifts 6 -> 4 and 10 -> 6, the same finds; the default
            # family: identical.)
            z_tot, told_tot, _ = self._sibling_z(rel, sdr, formed, quiet_now, ref)
            shared_up = told_tot & (z_tot <= _SCREEN_SIGMA)
            shared_down = told_tot & (z_tot >= -_SCREEN_SIGMA)
        if not partial and (eligible.any() or self.cusum.pos.any() or self.cusum.neg.any()):
            # (A pattern the lone CUSUM judges has its longest window's dispersion ready, an
            # hour in: before, its inflation is learnt from windows of 30 buckets at most, where
            # a 15-min wander's is 1 + 90·rate/shape; families `--wander 900`, 3 of its 11 false
            # drifts came 5-7 min after warm-up at an inflation of 1.7-2.6 for a true 13-220.)
            z_raw, up, down = self._day_one_cusum(
                y, mu_base, vif, eligible & ready_w[:, -1], spike_hit, drop_hit, unusual,
                shared_up, shared_down,
            )  # fmt: skip
        else:  # (no day-one profile and nothing held, as after the first day: none of it moves;
            # a partial bucket moves none of it either: what it held stays held)
            cap = self.capacity
            z_raw = np.zeros(cap)
            up, down = np.zeros(cap, dtype=bool), np.zeros(cap, dtype=bool)
            if not partial:
                self.cusum.pos = np.zeros(cap, dtype=self.cusum.dtype)
                self.cusum.neg = np.zeros(cap, dtype=self.cusum.dtype)
        if formed.any():
            sib &= formed & (eligible | contrib)  # (one drifting down stays judged)
            # A pattern's first look against its siblings that finds it already beyond the
            # screen takes its share of the source as normal, as an alarm's reference does
            # below: the test has no evidence of when that share came about (a night's drift the
            # lone CUSUM missed, or a shape of its own), and the change it judges is one it sees
            # happen. A first look is any after the test could not judge the pattern for longer
            # than its smoothing's half-life (`sibling_window`), by then mostly made of buckets
            # it never judged: a pattern lifted over `min_mean` (often by the very ramp it is
            # judged for), or one whose siblings' consensus was known for a while at night and
            # then not again until the morning. (Families day1 dev seed 4: a drift from 0.7 a
            # bucket first judged at 3.4σ as its ramp lifted it over `min_mean`, then found 29
            # min after its window; seed 17: one first judged again 4 h after its window, at
            # 4.0σ, the consensus known at 02:10 and then not until 12:07.) 2 bytes a profile:
            # the closes the last look still holds.
            met = sib & (self.sib_watch <= 0) & (np.abs(z_sib) > _SCREEN_SIGMA)
            # (counted down on a first day only: after it the count is never read, and a table
            # whose patterns all learnt a day skips this, test_close_day_one)
            watch = np.where(learnt, self.sib_watch, np.maximum(self.sib_watch - 1, 0))
            self.sib_watch = np.where(sib, self._sib_span, watch).astype(np.int16)
            z_sib = np.where(met, 0.0, z_sib)
            # (A pattern whose windows are beyond the screen right now is a spike's, a drop's or
            # a burst's story, told by their tests; a drift is a slow change under that screen.)
            quiet = ~unusual & ~hit
            up = np.where(sib, quiet & (z_sib > dft.sibling_sigma), up)
            down = np.where(sib, quiet & (z_sib < -dft.sibling_sigma), down)
            # What alarmed is the new normal: the reference takes the pattern's level as the
            # siblings' consensus predicts it, so the episode resolves once reported and opens
            # again only if the pattern keeps moving away (not while a shifted level holds).
            # The smoothed level lags a ramp by its growth (the level less its own smoothing,
            # `drift_twice`: a ramp of slope β, β·(1-λ)/λ): the level taken is where the ramp
            # has got to, that growth added on the alarm's side (at most `_SCREEN_SIGMA` of the
            # z's noise), so the smoothing catching up after the ramp is not a second drift.
            moved = (sib & quiet & (np.abs(z_sib) > dft.sibling_sigma)) | met
            if moved.any():
                level = ref * (1.0 + rel)
                way = np.sign(z_sib)
                with np.errstate(divide="ignore", invalid="ignore"):
                    noise = np.abs((rel - cons) / np.where(z_sib != 0, z_sib, 1.0)) * ref
                ahead = np.clip((level - self.drift_twice) * way, 0.0, _SCREEN_SIGMA * noise)
                new_ref = (level + way * ahead) / np.maximum(1.0 + cons, 1e-3)
                self.drift_ref = np.where(moved, new_ref, ref).astype(np.float32)
                self.drift_fast = np.where(moved, level - new_ref, self.drift_fast).astype(
                    np.float32
                )
            z_raw = np.where(sib, z_sib, z_raw)
        else:  # (no pattern judged against its siblings, as after the first day)
            sib = np.zeros(self.capacity, dtype=bool)
        # What the day-one CUSUM reported is the new normal too: its level takes the pattern's
        # latest level (the mean of y over the last `_ACCEPT_SPAN` buckets), as the sibling
        # test's reference does above and `_drift`'s once a day is learnt. The CUSUM restarts
        # at 0 after an alarm; from the old level it refilled within 16-25 buckets, and a
        # pattern that stepped and stayed opened a fresh episode every few minutes until the
        # 30-minute level had learnt the step (ten in two hours: test_drift's lone pattern).
        told = (up | down) & eligible & ~sib
        if told.any():
            self._accept_level(told, bucket, y)
        up |= z_s > dft.sigma
        down |= z_s < -dft.sigma
        z_raw = np.where(learnt, z_s, z_raw)
        for s in (up | down).nonzero()[0].tolist():
            direction = 1 if up[s] else -1
            zs = abs(float(z_raw[s])) - (
                dft.sigma if learnt[s] else (dft.sibling_sigma if sib[s] else 0.0)
            )
            alarms.append(
                Alarm(
                    s,
                    AnomalyKind.DRIFT,
                    score_of_z(zs),
                    0.0,
                    float(mu[s]),
                    float(c[s]),
                    float(mu[s]),
                    float(sd[s]),
                    direction,
                    log10p=-math.log10(p_alarm) * (1.0 + zs / 5.0),
                )
            )

        # Cardinality: more distinct ids than the baseline, scaled up by the volume, explains...
        cc = cfg.cardinality
        # (Only where some profile has had unique ids: without any, the tests below find no
        # candidate, the CUSUM stays 0, all is settled and nothing is learnt: skipped, a sixth
        # of a close's cost with few profiles, where a close's cost is per numpy call.)
        uids = bool(self.has_uid.any()) or bool(distinct.any())
        if uids:
            cmean = self.card.mean
            volume = np.maximum(1.0, c / np.maximum(mu, 1e-9))
            exp_d = np.minimum(cmean * volume, np.maximum(c, cmean))
            var_d = np.maximum(self.card.var * volume * volume, np.maximum(exp_d, 1e-12))
            sd_d = np.sqrt(var_d)
            card_ok = live & self.has_uid & (self.card.n >= max(1, self.warmup_buckets))
            cand = card_ok & (distinct >= cc.min_distinct) & (distinct >= cc.min_ratio * exp_d)
            cand &= distinct > exp_d + _SCREEN_SIGMA * sd_d
            card_hit = np.zeros(self.capacity, dtype=bool)
            card_p = np.ones(self.capacity)
            card_p[cand] = count_tails(np.round(distinct[cand]), exp_d[cand], var_d[cand], True)
            # ...or, at low volume, a run of buckets with more distinct ids than the learned id
            # population gives for their record counts (occupancy model): six mails to five users
            # name at most five of them, so six fresh ids bucket after bucket add up (CUSUM).
            # The occupancy model counts the records that carried an id (default: all of them).
            c_id = c if with_id is None else np.where(live, np.minimum(with_id, c), 0.0)
            zc, cusum_hit, elevated_d, card_r2 = self._card_run(c_id, distinct, live)
            for s in (cand | cusum_hit).nonzero()[0].tolist():
                p = float(card_p[s])
                if p < p_alarm:
                    score, x = score_of(p, p_alarm), log10_of(p)
                elif cusum_hit[s]:
                    zs = max(0.0, float(zc[s]))
                    score, x = score_of_z(zs), -math.log10(p_alarm) * (1.0 + zs / 5.0)
                else:
                    continue
                card_hit[s] = True
                alarms.append(
                    Alarm(
                        s,
                        AnomalyKind.CARDINALITY,
                        score,
                        p if p < p_alarm else 0.0,
                        float(exp_d[s]),
                        float(distinct[s]),
                        float(cmean[s]),
                        float(np.sqrt(self.card.var[s])),
                        1,
                        log10p=x,
                    )
                )
            settled_card = (distinct <= exp_d + settle * sd_d) & (self.card_cusum <= cc.threshold)
        else:
            self.card_cusum = np.zeros(self.capacity)
            self.card_excess = np.zeros(self.capacity)
            settled_card = np.ones(self.capacity, dtype=bool)

        # A day-one drift the siblings judge is over only when the level also holds still: its
        # growth (`drift_twice`, as above) within `settle` of its noise. After an alarm the
        # ramp goes on, and each stretch of it that the accepted level did not hold alarmed
        # again as a new episode, the last often after the ramp (test_drift's day-one ramps:
        # 2-3 episodes a ramp, 8 of 16 with one starting 30+ minutes after it; families day1
        # dev 11-20: 4 of 6 drifts found after their window were such second episodes).
        still = np.zeros(self.capacity, dtype=bool)
        if sib.any():
            lam = self._sib_lam
            # (on the noise unscaled by the current rate, as the gate: see `_sibling_vif`)
            sd_g = sd_gate * math.sqrt(_growth_var(lam) * (2.0 - lam) / lam)
            grow = self.drift_fast + self.drift_ref - self.drift_twice
            still = np.abs(grow) <= dft.settle * sd_g
        settled = {
            # Back within settle_sigma over the shortest window (a few buckets, not one: a
            # noisy count is calm often enough over a few buckets, rarely bucket after bucket).
            AnomalyKind.SPIKE: (wz[:, 0] <= settle)
            & ((c <= mu + settle * sd) | (ws[:, 0] < sp.min_count)),
            AnomalyKind.DROP: (wz[:, 0] >= -settle) & ~run_hit,
            AnomalyKind.DRIFT: (
                np.abs(z_raw) <= np.where(learnt | sib, dft.settle, max(dft.slack, 0.5))
            )
            & (still | ~sib),
            AnomalyKind.CARDINALITY: settled_card,
            AnomalyKind.NOVELTY: np.ones(self.capacity, dtype=bool),
        }

        # Learn: anomalous buckets only a little, so an anomaly is not normal before it is seen.
        anomalous = active & (spike_hit | drop_hit)
        shielded = active & (anomalous | unusual) & (self.unusual_len <= _RUN_MAX)
        learning = live & (not partial)
        w = np.where(learning, np.where(shielded, cfg.anomaly_update_weight, 1.0), 0.0)
        pearson = (c - mu) ** 2 / np.maximum(mu, 0.01)
        learn_disp = live & (n >= 10)
        wd = np.where(learn_disp, w, 0.0)
        self.dispersion.update(pearson, wd)
        if not partial:
            # A stretch shielded as unusual but not alarmed teaches the windows' dispersion at
            # full weight, each window as at most the edge of normal (`settle_sigma`, as an
            # alarmed bucket enters the windows): a coarse wander's high and low blocks are the
            # spread the windows must learn, and at the anomaly weight they were left out, so
            # the dispersion learnt too little to hold the next one (at the full window, not
            # capped, a building burst taught the windows its own spread before it alarmed).
            edge = learn_disp & learning & shielded & ~anomalous
            w_win = np.where(edge, 1.0, wd)
            win.learn(ws, we, w_win, self.dispersion.n, self._disp_hl, edge, settle * settle, wd)
            win.learn_lag(blocks, wd, self._disp_hl, self._lag_weight(wd))
            # (An alarmed bucket holds the comparisons whose half-blocks take it in: `_lag_weight`.)
            left = np.maximum(self.lag_hold.astype(np.int16) - 1, 0)
            self.lag_hold = np.where(anomalous, _HOLD_SPAN, left).astype(np.uint8)
            # A bucket that alarmed enters the windows at the edge of normal (mu ± settle·sd):
            # what was reported does not alarm again from every longer window it sits in,
            # while a burst that goes on still fills them.
            c_w = np.where(spike_hit, np.minimum(c, mu + settle * sd), c)
            c_w = np.where(drop_hit, np.maximum(c_w, mu - settle * sd), c_w)
            win.add(np.where(live, c_w, 0.0), np.where(live, mu, 0.0))
            win.add_ref(mu_ref)
        # Bounded influence of a drop before it is judged: a drop at a low rate takes many
        # buckets to reach the screen (3σ) that makes a stretch unusual, and the baseline, which
        # follows a level twice as fast as a plain EWMA (`holt`) and a slope besides, learnt half
        # of it by then (0.74 to 0.37 in 19 minutes), so its windows were judged against a level
        # already gone down. So while some window or lagged comparison is already low beyond
        # `settle_sigma` (with the minimum evidence of a drop: `_low_stretch`), a bucket below
        # the forecast teaches it only a little, for as long as the longest window. Its buckets
        # above the forecast, and the trend, still learn (freezing the trend as well found no
        # more drops, on a synthetic probe).
        if not partial:
            self._reference(c_des, mu_base, active, shielded)
        held = self._low_stretch(wz_dn, z_dn, m_dn, active, partial) & ~shielded
        wr = np.where(held & (c_des < mu_base), cfg.anomaly_update_weight * w, w)
        tw = np.where(shielded, 0.0, w)
        trend = holt(self.rate, self.rate_trend.astype(np.float64), c_des, wr, tw)
        self.rate_trend = trend.astype(np.float32)
        self.level.update(y, w)
        # (an EWMA of the deseasonalised count; its first steps average, like EWMeanVar's)
        ref_lam = np.where(learnt, self._ref_lam, self._sib_ref_lam)
        step = w * np.maximum(ref_lam, 1.0 / np.maximum(self.rate.n, 1e-9))
        self.drift_ref = (self.drift_ref + step * (c_des - self.drift_ref)).astype(np.float32)
        # (the slow one holds while the change is steep: a ramp is not learnt as it rises)
        slow = self.drift_slow.astype(np.float64)
        slow = np.where(slow > 0, slow, self.drift_ref)
        step = w * np.maximum(self._slow_lam, 1.0 / np.maximum(self.rate.n, 1e-9))
        step = np.where(hold, 0.0, step)
        self.drift_slow = (slow + step * (c_des - slow)).astype(np.float32)
        # The day's hourly counts, with what was expected standing in for anomalous buckets.
        if not partial and self.config.seasonal.enabled:
            h = int((bucket * self._bucket_s) % 86400.0 // 3600.0)
            self.day_sum[:, h] += np.where(anomalous, mu, c).astype(np.float32)
        # The peak of normal buckets: not one that alarmed, nor one inside an unusual stretch.
        # Deseasonalised, as the baseline is: in raw counts the busy hours' highs were the bar
        # for a spike at a quiet hour, which one 8x its hour's level may never reach.
        normal_c = np.where(anomalous | unusual, 0.0, c_des)
        self.peak = np.where(
            learning, np.maximum(self.peak * self._peak_decay, normal_c), self.peak
        )
        self.present += learning & (c > 0)
        if uids:
            has_d = distinct > 0
            self.has_uid |= live & has_d
            wc = np.where(
                self.has_uid & learning, np.where(card_hit, cfg.anomaly_update_weight, 1.0), 0.0
            )
            self.card.update(distinct, wc)
            self._learn_population(c_id, distinct, learning, card_hit | elevated_d, card_r2)
        self._remember(bucket, c, mu, distinct)
        return Verdict(bucket, c, distinct, mu, sd, alarms, settled)

    def _spike_screen(self, s: np.ndarray, e: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Where `ok` windows' counts `s` are worth a spike's tail test against the `e` they
        expected: `min_count` records, `min_ratio` times `e`, and 3σ above it even at Poisson
        (a window's tail dispersion is at least 1)."""
        sp = self.config.spike
        out = ok & (s >= sp.min_count) & (s >= sp.min_ratio * e)
        return out & (_poisson_z(s, e, ok) > _SCREEN_SIGMA)

    def _window_tails(
        self,
        p_out: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        s: np.ndarray,
        e: np.ndarray,
        phi_w: np.ndarray,
        upper: bool,
        disp: np.ndarray | None = None,
        level: np.ndarray | None = None,
        disp_e: np.ndarray | None = None,
        floor: np.ndarray | None = None,
        first_share: bool = False,
        spread: np.ndarray | None = None,
    ) -> None:
        """The tail tests of windows (`_spike_screen`ed or `_drop_screen`ed at Poisson): profile
        `rows` at scale `cols`, counts `s` against the `e` expected, each at the dispersion of
        its scale for a tail (`tail_dispersion_at`, never heavier than `phi_w`), screened at it
        first (3σ); the upper tail for a spike, the lower for a drop (`_tail_tests`). `disp`,
        `disp_e` and `level` stand in for the windows' dispersions, the expected counts they
        learnt at and the baseline's level (read where `disp_e` is 0) where given; `floor`
        (per profile), where given, is the least dispersion judged with; `first_share`: the
        first window is a spike's against the baseline, with its larger share of the budget;
        `spread` (per profile), where given, the relative variance of the level `e` stands off
        the one the rate wanders about (`level_wander_sf`)."""
        if not len(rows):
            return
        # (`tail_dispersion_at` is elementwise: a row's value at its scale is the same
        # whatever the other scales were given.)
        e_scales = np.repeat(e[:, None], len(HALF), axis=1)
        disp = self.win.disp if disp is None else disp
        disp_e = self.win.disp_e if disp_e is None else disp_e
        first_day = self.season_n[rows] == 0
        if upper and first_day.any():  # (the wander at the level the window runs at: `runs_at`)
            learnt = disp_e[rows] * (np.maximum(self.win.lengths(), 1.0) / MEAN_LEN)[None, :]
            at = runs_at(e[:, None], s[:, None], learnt)
            e_scales = np.where(first_day[:, None], at, e_scales)
        level = self.rate.mean if level is None else level
        busy = wander_busy(disp_e[rows], e_scales, self.win.lengths(), level[rows])
        # (A spike's: the counts' own dispersion is not scaled down at a quieter hour.)
        phi = tail_dispersion_at(
            disp[rows],
            disp_e[rows],
            self.dispersion.n[rows],
            self._disp_hl,
            e_scales,
            self.win.lengths(),
            level[rows],
            upper,
            self.win.counts_dispersion()[rows] if upper else None,
            busy,
        )[np.arange(len(rows)), cols]
        # (The cap's own wander part grows with the rate as the tail's does: `phi_w` was learnt
        # at the rate `disp` learnt at, and at a busier hour it clipped back the very growth
        # `tail_dispersion_at` gives the wander: `--daily 0.9`, busy hours at 2.6-3.4x the
        # learnt rate, judged at the cap 2.70 where the wander scaled gave 3.37. At or below
        # the learnt rate the cap is as learnt. The drop against `drop_ref` too: its wander
        # is the rate's at the reference's count; at `--wander 900` the learnt cap judged two
        # drops at a relative wander of 0.038 and 0.064 where the rate's 15-minute blocks vary
        # at 0.106 and 0.098, finding them at 6.7 and 34.7 min, before a test that knows the
        # baseline and the law could, 42 and 39 min.)
        busy = busy[np.arange(len(rows)), cols]
        cap = phi_w[rows, cols]
        cap = np.where(cap > 1.0, 1.0 + (cap - 1.0) * np.maximum(busy, 1.0), cap)
        phi = np.minimum(phi, cap)
        if floor is not None:
            phi = np.maximum(phi, floor[rows] if floor.ndim == 1 else floor[rows, cols])
        keep = (s - e) ** 2 > _SCREEN_SIGMA**2 * phi * e
        # (A spike's first window against the baseline has the larger share, `_SPIKE_FIRST_SHARE`,
        # where the rate's wander does not grow with the lag.)
        first = (cols == 0) & first_share & keep
        if first.any():
            win, r = self.win, rows[first]
            grows = held_wander(
                win.lag[r], win.lag_ready()[r], np.ones(len(r)), win.disp_e[r], win.lag_n[r],
                self._disp_hl,
            )  # fmt: skip
            first[first] = ~(grows > 0)
        share = np.where(first, _SPIKE_FIRST_SHARE, _WIN_SHARE)[keep]
        off = None if spread is None else spread[rows[keep]]
        self._tail_tests(p_out, keep, s, e, phi * e, upper, rows[keep], share, off)

    def _lag_weight(self, wd: np.ndarray) -> np.ndarray:
        """Per profile and scale, the weight a lagged comparison learns at (`learn_lag`): the
        bucket's `wd`, but at most the anomaly weight while the comparison's half-blocks hold a
        bucket that alarmed (a spike or a drop: `lag_hold`, set to `_HOLD_SPAN` at an alarmed
        bucket, counts down a bucket a close).

        An alarmed bucket learns the lags only a little, but the buckets after it compare their
        level with a half-block that held it, and the step between the two is as large as the
        anomaly: a source's 10-minute silence, a spike at twice the rate, taught each lag in
        proportion to its length, the signature of a wander that grows with the lag
        (`held_wander`), for the lags' whole memory (day one, default wander, dev seeds 1-5:
        the forecast floor read v > 0 on 2.4 % of the live profiles it was computed for,
        median 0.04, 89 % of them in the 8 hours after their source's silence or their own
        spike or drop; 0.7 % with this, none of them after an alarm of their own)."""
        hold = self.lag_hold.astype(np.int16)
        since = np.where(hold > 0, _HOLD_SPAN + 1 - hold, _HOLD_SPAN)  # (buckets since it)
        holds = since[:, None] < 2 * np.array(HALF)[None, :]
        aw = np.minimum(wd, self.config.anomaly_update_weight)
        return np.where(holds, aw[:, None], wd[:, None])

    def _held_slope(self, live: np.ndarray, lag_ready: np.ndarray) -> np.ndarray:
        """Per profile, the growth of the rate's wander with a held level's age (`held_slope`),
        pooled over the `live` patterns of each source."""
        win = self.win
        return held_slope(
            win.lag, lag_ready, win.disp_e, win.lag_n, self._disp_hl, self._source_groups(live)
        )

    def _forecast_wander(self, slope: np.ndarray, lag_ready: np.ndarray) -> np.ndarray:
        """Per profile, the wander of the rate the baseline's forecast misses (`held_wander` at
        the baseline's mean age, beyond the windows' learnt dispersion): a drop's window
        against the forecast (expected ``e``) is judged at a dispersion of at least ``1 + v·e``
        (the forecast floor); a spike's with the forecast's level off the one the rate wanders
        about by a factor of relative variance ``v`` (`level_wander_sf`): the forecast is a
        level the wander set, and a new block's count against it the ratio of two wander
        factors, whose tail is far heavier than the floor's negative binomial (`--wander 900`,
        dev seeds 1-5: false spikes 0.30 -> 0.15 a source-day with the lagged and held tests').

        The windows' dispersion is learnt over every phase of a wander: under a rate that
        holds a level for tens of minutes, most windows fall where the baseline has caught up
        with the block they are in, and a few just after a step, where the forecast is the
        level of the block before (followed down or up into it, with its trend). The average
        is a mixture, far lighter in its tail than the windows after a step, which see the
        whole step (`--wander 900`: false spikes at 3.6-5x a forecast that had followed a low
        block, windows of scale 0 and 1; a false drop at 0.27x one that had followed a high
        one). A forecast is a level held from about its memory before (the EWMA's mean age),
        so a window against it carries at least the wander such a level misses, as the
        longest window does against the level held before a fall (`held_wander`, its lag
        growth pooled over the source). A wander shorter than the windows does not grow with
        the lag and adds nothing, and the floor is then Poisson's, under any window's own. (Not
        the counts' dispersion the lags learnt, as `held_dispersion`: a window is judged at its
        own dispersion, never floored by a heavier per-bucket one, `test_drops`; with it a
        held-out day-one spike at the default wander was lost. The one-bucket test keeps its
        learnt variance: floored too, `--wander 900` lost one more false spike, but real
        spikes at the default wander were found up to 0.5 min later, dev seeds 15 and 19.)
        """
        age = np.full(self.capacity, self._rate_hl / math.log(2.0))
        return wander_at(slope, self.win.lag, lag_ready, age)

    def _drop_screen(
        self, s: np.ndarray, e: np.ndarray, z: np.ndarray, ok: np.ndarray,
        sigma: float = _SCREEN_SIGMA,
    ) -> np.ndarray:  # fmt: skip
        """Where `ok` windows' counts `s` are worth a drop's tail test against the `e` they
        expected: `min_expected` of them, at most `max_ratio` times `e`, and `z` (the count's
        standard score at the variance it is judged with) below ``-sigma``."""
        dr = self.config.drop
        return ok & (e >= dr.min_expected) & (z < -sigma) & (s <= dr.max_ratio * e)

    def _tail_tests(
        self,
        p_out: np.ndarray,
        cand: np.ndarray,
        s: np.ndarray,
        e: np.ndarray,
        v: np.ndarray,
        upper: bool,
        rows: np.ndarray | None = None,
        share: np.ndarray | float | None = None,
        spread: np.ndarray | None = None,
    ) -> None:
        """The exact tail tests of candidates `cand` (per profile, or per profile and scale;
        `rows` the profile of each when the arrays are not per profile): counts `s` against the
        `e` expected at variance `v`, the upper tail (`upper`) or the lower; `p_out` keeps each
        profile's least p times its share of the budget (`share`, per candidate or one for
        all, else `_WIN_SHARE`); `spread` (per candidate, an upper tail's), where above 0, the
        relative variance of the level `e` is off by (`level_wander_sf`).

        In a close, due, not done: `_settle_tails` computes all of its tails of a kind in one
        array call (`count_tails`, `level_wander_tails`), so a surge, where every pattern is a
        candidate of every test, costs numpy's passes over the candidates, not a scalar tail
        (16 of them with a spread) each (`benchmarks/surge.py`, 2,000 patterns x4: 415-580 ms a
        close with those, 54-76 ms so)."""
        rows = cand.nonzero()[0] if rows is None else rows
        if not len(rows):
            return
        n, w = len(rows), _WIN_SHARE if share is None else share
        due = [
            _TailsDue(
                p_out, rows, np.trunc(s[cand]), e[cand], v[cand], upper, w * np.ones(n),
                np.zeros(n) if spread is None else spread,
            )
        ]  # fmt: skip
        if self._tails_due is None:
            _settle(due)
        else:
            self._tails_due += due

    def _settle_tails(self, then: list[_TailsDue] | None) -> None:
        """The tail tests due (`_tail_tests`), computed (`_settle`); `then` is due next (None:
        the close's tails are done)."""
        due, self._tails_due = self._tails_due, then
        _settle(due or [])

    def _reference(
        self, c_des: np.ndarray, mu_base: np.ndarray, ok: np.ndarray, shielded: np.ndarray
    ) -> None:
        """Follow the baseline's forecast `mu_base` into `drop_ref`, except while the level may
        be falling, or a shielded bucket.

        "May be falling": a one-sided CUSUM of the deseasonalised counts `c_des` below half the
        forecast (`ref_cus`, in buckets' worth of the forecast) is above 0; its last zero is
        where a fall began, so the reference is the forecast from just before its first low
        bucket. Windows 1σ low (the trigger before) need 8 expected records to say so: at a
        low rate 9-16 buckets into a drop, by when the baseline had learnt a tenth of it; and
        they held a forecast that ran high by chance for as long as the counts stayed under it
        (a false drop on day one). The CUSUM lets go when the counts are back above half of it.
        Held `_RUN_MAX` buckets at most: a longer stretch is a new level, which it then follows.
        `ref_disp` keeps the longest window's dispersion from before the hold, and `ref_disp_e`
        the expected count it learnt at (see `close`).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            short = np.where(mu_base > 0, _REF_SLACK - c_des / mu_base, -1.0)
        cus = np.clip(self.ref_cus.astype(np.float64) + short, 0.0, _CUS_MAX)
        self.ref_cus = np.where(ok, cus, 0.0).astype(np.float16)
        hold = ok & (shielded | (self.ref_cus > 0))
        self.ref_len = np.where(hold, np.minimum(self.ref_len + 1, _LEN_CAP), 0).astype(np.int16)
        follow = self.live & ((~hold) | (self.ref_len > _RUN_MAX) | (self.drop_ref <= 0))
        self.drop_ref = np.where(follow, mu_base, self.drop_ref).astype(np.float32)
        keep = hold & (self.ref_disp > 0)
        self.ref_disp = np.where(keep, self.ref_disp, self.win.disp[:, -1]).astype(np.float16)
        self.ref_disp_e = np.where(keep, self.ref_disp_e, self.win.disp_e[:, -1]).astype(np.float32)

    def _low_stretch(
        self, wz_dn: np.ndarray, z_dn: np.ndarray, m_dn: np.ndarray, ok: np.ndarray, partial: bool
    ) -> np.ndarray:
        """Per slot, whether the baseline is held back from a low stretch (see `close`).

        A stretch opens when some window against the baseline (`wz_dn`: 0 where a window lacks
        a drop's evidence) or lagged comparison (`z_dn`, expected `m_dn`) with the minimum
        evidence of a drop is below ``-settle_sigma``, and lasts while one is below half that
        (so evidence that wavers around the line does not restart it), through buckets that
        are shielded anyway. Its
        first `_LOW_MAX` buckets (the longest window) are held: by then a drop has had its
        windows to be judged in; a longer stretch is a level shift or a ramp, learnt at full
        weight until it clears (held for `_RUN_MAX`, as an unusual stretch is, ramps of tens of
        percent an hour lagged further: the held-out families found two drifts fewer, one here).
        """
        cfg = self.config
        if partial:  # (a bucket cut short neither opens nor ends a stretch; it learns nothing)
            return np.zeros(len(ok), dtype=bool)
        if (
            wz_dn.size
            and z_dn.size
            and wz_dn.min() >= -cfg.settle_sigma
            and z_dn.min() >= -cfg.settle_sigma
            and not self.low_len.any()
        ):  # (nothing low and no stretch open, as in most closes: two reductions, not twenty)
            return np.zeros(len(ok), dtype=bool)
        lz_dn = np.where(m_dn >= cfg.drop.min_expected, z_dn, 0.0)
        z = across(np.minimum, np.minimum(wz_dn, lz_dn))
        on = ok & ((z < -cfg.settle_sigma) | ((self.low_len > 0) & (z < -0.5 * cfg.settle_sigma)))
        self.low_len = np.where(on, np.minimum(self.low_len + 1, _LEN_CAP), 0).astype(np.int16)
        return on & (self.low_len <= _LOW_MAX)

    def _day_one_cusum(
        self,
        y: np.ndarray,
        mu_base: np.ndarray,
        vif: np.ndarray,
        eligible: np.ndarray,
        spike_hit: np.ndarray,
        drop_hit: np.ndarray,
        unusual: np.ndarray,
        shared_up: np.ndarray,
        shared_down: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The day-one drift CUSUM (`close`) on `y` (variance-stabilised, deseasonalised counts)
        against the untrended level: the residuals (0 where not `eligible`), and which side
        alarmed.

        A spike's first buckets, clipped to 3σ, filled the CUSUM before the spike alarmed,
        and the pattern opened a drift during the spike. So a bucket that alarmed as a spike
        or drop is that story's: it adds nothing and what the CUSUM held on that side is
        dropped (told); and while a stretch of `unusual` windows is young (< _YOUNG buckets)
        the CUSUM adds up but does not alarm, giving the spike test time to tell it. A step
        that no spike test reports (a sustained +25 %) alarms as a drift once the stretch is
        older. An alarm on a side its source's total explains (`shared_up`, `shared_down`: the
        daily curve, see `close`) is spent without a word.
        """
        dft = self.config.drift
        floor = np.maximum(1.0, dft.min_relative_shift * np.sqrt(mu_base) / max(dft.slack, 0.05))
        sy = np.maximum(self.level.std * np.sqrt(vif), floor)
        z_raw = np.where(eligible, (y - self.level.mean) / sy, 0.0)
        hit = spike_hit | drop_hit
        self.cusum.pos = np.where(spike_hit, 0.0, self.cusum.pos)
        self.cusum.neg = np.where(drop_hit, 0.0, self.cusum.neg)
        z = np.where(hit, 0.0, np.clip(z_raw, -dft.clip, dft.clip))
        held_pos = np.maximum(0.0, self.cusum.pos + z - dft.slack)
        held_neg = np.maximum(0.0, self.cusum.neg - z - dft.slack)
        up, down = self.cusum.update(z)
        young = unusual & (self.unusual_len < _YOUNG)
        # (held, not spent)
        dtype = self.cusum.dtype
        self.cusum.pos = np.where(up & young, held_pos, self.cusum.pos).astype(dtype)
        self.cusum.neg = np.where(down & young, held_neg, self.cusum.neg).astype(dtype)
        # (spent: a held sum would grow through the whole ramp and alarm the moment the
        # total's consensus lapsed)
        up &= eligible & ~young & ~shared_up
        down &= eligible & ~young & ~shared_down
        return z_raw, up, down

    def _drift(
        self,
        x: np.ndarray,
        mu_base: np.ndarray,
        var: np.ndarray,
        judged: np.ndarray,
        vif: np.ndarray,
        hit: np.ndarray,
        learnt: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Learn the deseasonalised count `x` into the fast smoothed residual; its distance
        from 0 in units of its own noise (0 where not judged), that noise (every slot), and
        where the slow test's reference is held (`close` does not learn it there).

        The residual is taken from the slow `drift_ref` (judged once a day's shape is learnt:
        the shape is then in the season factors, so a slope left in `x` is what this test is
        for). Its noise: the per-bucket variance `var`, inflated by the variance inflation
        `vif` the windows learnt (at least 1: buckets of a wandering rate are high together) and
        shrunk by the averaging, but never less than what makes a ``min_relative_shift``
        reach the threshold. One bucket moves it by at most `clip` σ, and a bucket that
        alarmed as a spike or drop not at all: that story is its own episode's (`hit`, which
        also holds a partial bucket: nothing is learnt from one).

        A drift is over when the smoothed count holds still where the rate baseline has
        caught up with it (within `settle` σ of `mu_base`): the reference then takes that
        level as normal, so the residual is back within `settle` and the episode resolves,
        however noisy the buckets.
        """
        dft = self.config.drift
        ref = self.drift_ref.astype(np.float64)
        sb = np.sqrt(np.maximum(var, 1e-12))
        # (Before a day's shape is learnt the clip is centred on what the rate baseline
        # expects: the reference is then a running mean, and a busy pattern's daily curve alone
        # sits many σ from it, so clipped around the reference the curve itself was cut, the
        # more the busier the pattern, and one source's patterns drifted apart in the sibling
        # test: a quiet ±50 % cycle at 5.3-5.5σ of its 5.5 (test_day_one_clip), now under 3.)
        centre = np.where(learnt, 0.0, mu_base - ref)
        r = (x - ref).clip(centre - dft.clip * sb, centre + dft.clip * sb)
        # (Day one smooths over `sibling_window`: a drift is judged against its siblings then.)
        lam = np.where(learnt, self._fast_lam, self._sib_lam)
        fast = np.where(hit, self.drift_fast, self.drift_fast + lam * (r - self.drift_fast))
        self.drift_fast = np.where(self.live, fast, 0.0).astype(np.float32)
        # (Day one's reference is a running mean of the very buckets the residual smooths, the
        # last `sibling_reference` at most: its own noise is offset by twice its covariance with
        # them (a mean of n buckets: +1/n - 2/n), so the sibling test's noise has no reference
        # term. With one (+2λ_ref, 14 % of the variance) the quiet patterns' sibling z had sd
        # 0.94 pooled on the families' dev seeds 1-5, 0.90 on 11-13; without, 1.01 and 0.97.)
        ref_lam = np.where(learnt, self._ref_lam, 0.0)
        sd = self._residual_sd(sb, vif, lam, ref_lam, ref)
        eligible = judged & (mu_base >= dft.min_mean) & (self.rate.n >= self._ref_hl)
        z = np.where(eligible, fast / sd, 0.0)
        # The slow test: the same smoothed residual from the slow reference (the references
        # move slowly beside the window: their difference is added), judged only while the
        # residual from `drift_ref` is steep (at least slow_min_shift, the same way).
        slow = self.drift_slow.astype(np.float64)
        slow = np.where(slow > 0, slow, ref)  # (a table from before it: starts at drift_ref)
        fast_s = fast + ref - slow
        sd_s = self._residual_sd(sb, vif, lam, self._slow_lam, slow)
        # (after two days: one day's shape leaves hour-long errors a slow reference keeps)
        gate = eligible & (self.season_n >= 2) & (fast * fast_s >= dft.slow_min_share * fast_s**2)
        steep = gate & (np.abs(fast) >= dft.slow_min_shift * np.abs(ref))
        # ...and judged only while the smoothed level still grows away from it: a ramp keeps
        # growing, a step (a weekend, a level shift) has stopped once the window has taken it
        # in, while the held reference keeps the step's full size, wander on top, for as long
        # as it is steep. The growth: the smoothed level less the same smoothing of it again
        # (a ramp of slope β: β·(1-λ)/λ; a step: back to 0 within a few windows), beyond
        # _RISING standard deviations of its noise. (The count series' dev seeds: the slow test
        # opened 11 false drift episodes, on weekends and level shifts the fast test put at
        # ~4σ, growing by 0.3-2.4σ at the alarm; the families' slow-test finds grew by 2.0-3.8σ.
        # With it 9, and the same finds.)
        level = fast + ref
        twice = self.drift_twice.astype(np.float64)
        twice = np.where(twice > 0, twice, level)  # (a table from before it: no growth yet)
        twice = np.where(hit, twice, twice + lam * (level - twice))
        self.drift_twice = np.where(self.live, twice, 0.0).astype(np.float32)
        sd_g = sb * np.sqrt(vif * _growth_var(lam))
        growing = (level - twice) * np.sign(fast) > _RISING * sd_g
        z_s = np.where(steep & growing, fast_s / sd_s, 0.0)
        z = np.where(np.abs(z_s) > np.abs(z), z_s, z)
        # The slow reference holds while the change is steep, and also while the residual from
        # it is itself steep (the same share and size, of the slow reference) and the level
        # still grows: a low-rate ramp's fast residual dips under the gate by noise for a few
        # buckets, and a momentary closure pauses the hold rather than letting the 6 h
        # reference learn part of the ramp (every score after it then short by that much). A
        # step stops growing within a few windows, so its hold ends as it did.
        # (48 ramps of +41.8 %/h at 5 records a minute, 1-minute buckets: after the gate first
        # opened it was closed in 30 % of the ramp's buckets; found within 130 min 24 -> 25, as
        # many as a hold that never reopens once the gate has opened. The fast residual's dips
        # take the growth under its 2σ too, so most closures still learn: a leak of 0.19 % of
        # the held gap a bucket, not a restart.)
        steep_s = gate & (np.abs(fast_s) >= dft.slow_min_shift * np.abs(slow))
        hold = steep | (steep_s & growing)
        # The residual from the baseline, as smoothed: the reference's lag put back.
        held = np.abs(fast - (mu_base - ref)) <= dft.settle * sd
        accept = eligible & held & (np.abs(z) > dft.sigma)
        if accept.any():
            self.drift_fast = np.where(accept, fast - (mu_base - ref), fast).astype(np.float32)
            self.drift_ref = np.where(accept, mu_base, ref).astype(np.float32)
            self.drift_slow = np.where(accept, mu_base, slow).astype(np.float32)
        return z, sd, hold

    def _accept_level(self, told: np.ndarray, bucket: int, y: np.ndarray) -> None:
        """Move the day-one CUSUM's level of the `told` slots to the mean of y (`_stabilised`,
        as `close` computes it for this `bucket`) over this bucket and the ones before it still
        in the recent ring since the profile began, `_ACCEPT_SPAN` at most. (Day one: no shape
        learnt, so the counts kept are the deseasonalised ones.) An alarm in an unusual stretch
        comes `_YOUNG` buckets at least into it, so after a step these buckets are all of the
        new level; their mean's noise, σ/√15, is under the CUSUM's slack."""
        first = max(self.recent_from, bucket - _ACCEPT_SPAN + 1)
        kept = np.arange(first, min(bucket, self.recent_end))
        idx = told.nonzero()[0]
        # (only the buckets since each profile began: before it, its slot held nothing)
        mine = kept[:, None] >= self.first_bucket[idx][None, :]
        past = self.recent_count[kept % RECENT][:, idx].astype(np.float64)
        total = y[idx] + np.where(mine, _stabilised(past), 0.0).sum(axis=0)
        self.level.mean[idx] = total / (mine.sum(axis=0) + 1)

    def _residual_sd(
        self, sb: np.ndarray, vif: np.ndarray, lam: Any, ref_lam: Any, ref: np.ndarray
    ) -> np.ndarray:
        """The noise of a residual smoothed at `lam` from a reference smoothed at `ref_lam`,
        per-bucket sd `sb` inflated by `vif`; never less than what makes a shift of
        ``min_relative_shift`` of `ref` reach the drift sigma."""
        dft = self.config.drift
        sd = sb * np.sqrt(vif * (lam / (2.0 - lam) + 2.0 * ref_lam))
        return np.maximum(sd, dft.min_relative_shift * np.abs(ref) / dft.sigma)

    def _sibling_vif(
        self, vd: np.ndarray, phi: np.ndarray, mu: np.ndarray, ready: np.ndarray
    ) -> np.ndarray:
        """The sibling test's variance inflation for the judged pattern's own noise: the
        windows' (`vif_disp`, as the day-one CUSUM's, extrapolated to the test's smoothing by
        `smoothing_vif`) with their wander part, the excess over 1, scaled by how much busier
        the pattern is now than the rate its longest window learnt at (`busy`: mu over that
        window's `disp_e` a bucket), never scaled down; the counts' own dispersion unscaled.

        A wander is a relative one, so its variance grows with the rate squared while the
        counts' grows with the rate: learnt over a day-one's curve at the mean rate, it is
        short at a busy hour. (Driftnull's null probe, families day1 dev 1-5 and 11-20, the z
        of undrifted patterns' quiet buckets: sd 0.975 / 1.098 / 1.143 at `--wander` 60 / 300
        / 900 -> 0.903 / 0.968 / 1.006, P(|z| > 4) 4-23x lighter.) Up only: scaled down as
        well at a falling rate, a coarse wander's tails grew 1.3-3x: a 15-min wander moves mu
        itself, so a rate below the learnt one is as often the wander as the day's curve."""
        e = mu[:, None] * MEAN_LEN[None, :]  # (what a mean-length window expects now)
        busy = np.maximum(wander_busy(self.win.disp_e, e, MEAN_LEN, mu)[:, -1], 1.0)
        vd_now = 1.0 + np.maximum(vd.astype(np.float64) - 1.0, 0.0) * busy[:, None]
        vif = _windows_vif(vd_now, phi, ready)
        return np.maximum(vif, smoothing_vif(vd_now, phi, ready, self._sib_lam))

    def _source_groups(self, members: np.ndarray) -> tuple[np.ndarray, int]:
        """Per slot, its source's group index where `members`, else one spare group that the
        rest share; and the number of groups (for `np.bincount`): a source's patterns pooled."""
        n_src = len(self._src_ids)
        return np.where(members, self.src_id, n_src), n_src + 1

    def _sibling_z(
        self,
        rel: np.ndarray,
        sdr: np.ndarray,
        judged: np.ndarray,
        ok: np.ndarray,
        weight: np.ndarray | None = None,
        model_error: float = 0.0,
        gate: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per slot, how far its relative level `rel` (smoothed residual / reference) sits from
        the consensus of its source's other patterns (`ok` ones), in standard deviations of
        both; whether the others say enough (their consensus known within
        ``drift.sibling_max_sd``); and that consensus (for `judged` slots, 0 elsewhere).

        Before a day's shape is learnt, a rise that every pattern of a source shares is the
        daily curve; one pattern's rise while its siblings keep their shape is a drift. The
        consensus is a precision-weighted mean (no pattern weighs more than a third of its
        source), each value clipped to within 2σ of it first (bounded influence: the drifting
        pattern does not drag its siblings' consensus along), and leaves the pattern out; it
        needs two other patterns at least. With `weight` (per slot: the reference level) the
        mean is weighted by it instead: the others' pooled total, in which a quiet pattern, whose
        noise estimate is itself noisy (one gone silent has a forecast, so a variance, near 0),
        weighs only the records it carries. `model_error` (relative to the consensus) is added
        to the z's noise in quadrature (``drift.sibling_model_error``); with `gate` (per slot),
        that says which slots the others can judge instead of their consensus's sd.
        """
        if not judged.any():  # (every pattern's day learnt, or none formed yet: a tenth of a close)
            return np.zeros(len(rel)), np.zeros(len(rel), dtype=bool), np.zeros(len(rel))
        sid, m = self._source_groups(judged | ok)
        v = np.maximum(sdr, 1e-6) ** 2
        w = np.where(ok, 1.0 / v if weight is None else weight, 0.0)
        tot = np.bincount(sid, w, m)
        w = np.minimum(w, tot[sid] / 3.0)
        tot = np.bincount(sid, w, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(tot > 0, np.bincount(sid, w * rel, m) / tot, 0.0)
            rc = rel.clip(mean[sid] - 2.0 * sdr, mean[sid] + 2.0 * sdr)
            sw = np.bincount(sid, w * rc, m)
            q = np.bincount(sid, w * w * v, m)
            wo = tot[sid] - w
            good = wo > 1e-9 * tot[sid]
            wo = np.where(good, wo, 1.0)
            mo = (sw[sid] - w * rc) / wo
            vo = np.maximum((q[sid] - w * w * v) / (wo * wo), 0.0)
        if weight is None:
            vo = vo + _two_others_disagree(sid, m, ok, rel, v, w) / (wo * wo)
        # (Two others at least: with one, either of the two may be the one that moved.)
        others = np.bincount(sid, ok.astype(np.float64), m)[sid] - ok
        known = (vo <= self.config.drift.sibling_max_sd**2) if gate is None else gate
        enough = judged & good & (others >= 2) & known
        z = np.where(enough, (rel - mo) / np.sqrt(v + vo + (model_error * mo) ** 2), 0.0)
        return z, enough, np.where(enough, mo, 0.0)

    # -- recent buckets ----------------------------------------------------------------------

    def skip(self, first: int, end: int) -> None:
        """Buckets `first` .. `end`-1 were not observed (a gap in event time): nothing is judged
        or learnt from them, in O(capacity). A day the gap cut short is not learnt as a day (its
        hours in the gap would read as silence); the windows and the ring of recent buckets
        restart after a gap by themselves, as they compare bucket numbers."""
        day = int((end * self._bucket_s) // 86400)
        if self.day_abs is not None and day != self.day_abs:
            self.day_sum[:] = 0.0
            self.day_abs = day

    def _remember(self, bucket: int, c: np.ndarray, mu: np.ndarray, distinct: np.ndarray) -> None:
        """Keep bucket `bucket` (count, expected count, distinct ids) in the ring of recent ones."""
        if bucket != self.recent_end or self.recent_end == self.recent_from:
            self.recent_from = bucket  # a gap (buckets skipped while no profile existed): restart
        row = bucket % RECENT
        self.recent_count[row] = np.minimum(c, _COUNT_MAX)
        self.recent_root[row] = np.minimum(np.sqrt(mu), _ROOT_MAX)
        self.recent_distinct[row] = np.minimum(np.rint(distinct), _DISTINCT_MAX)
        self.recent_end = bucket + 1

    def recent(self, slot: int) -> list[RecentBucket]:
        """The slot's most recent closed buckets (at most RECENT, oldest first)."""
        lo = max(self.recent_from, self.recent_end - RECENT, int(self.first_bucket[slot]))
        bns = self.config.bucket_ns
        out = []
        for b in range(lo, self.recent_end):
            row = b % RECENT
            out.append(
                RecentBucket(
                    b * bns,
                    int(self.recent_count[row, slot]),
                    float(self.recent_root[row, slot]) ** 2,
                    int(self.recent_distinct[row, slot]),
                )
            )
        return out

    # -- seasonality -------------------------------------------------------------------------

    def _season_factor(self, bucket: int) -> np.ndarray:
        """Per slot, the learned hour-of-day factor at the middle of `bucket` (1 before a day).

        Factors belong to the middle of their hour and are interpolated linearly between hours,
        so the expected count follows a smooth daily shape.
        """
        if not self.config.seasonal.enabled or self.capacity == 0:
            return np.ones(self.capacity)
        f = self._interpolate(self.season, bucket)
        return np.where(self.season_n > 0, f, 1.0)

    def _interpolate(self, rows: np.ndarray, bucket: int) -> np.ndarray:
        tod = ((bucket + 0.5) * self._bucket_s) % 86400.0 / 3600.0 - 0.5
        h0 = math.floor(tod)
        frac = tod - h0
        h0 %= HOURS
        h1 = (h0 + 1) % HOURS
        return (rows[:, h0] * (1.0 - frac) + rows[:, h1] * frac).astype(np.float64)

    def _season_roll(self, bucket: int) -> None:
        """At the first bucket of a new day, learn the day that ended into the hourly factors.

        Each hour's share of the day (``24·C_h / ΣC``, both shrunk towards an even day by
        ``pseudo_count`` records so a quiet pattern's factors stay near 1) moves its factor by
        ``learning_rate`` in log, faster for the first days (a running mean). Only profiles that
        were there the whole day learn. Factors are kept at mean 1 and the baseline is rescaled
        with them, so no expectation jumps.
        """
        day = int((bucket * self._bucket_s) // 86400)
        if self.day_abs is None or day == self.day_abs:
            self.day_abs = day
            return
        start = math.ceil(self.day_abs * 86400 / self._bucket_s)
        self.day_abs = day
        sc = self.config.seasonal
        whole = self.live & (self.first_bucket <= start)
        total = self.day_sum.sum(axis=1, dtype=np.float64)
        idx = np.flatnonzero(whole & (total > 0))
        if sc.enabled and len(idx):
            k = sc.pseudo_count
            sums = self.day_sum[idx].astype(np.float64)
            share = (sums + k / HOURS) / ((total[idx, None] + k) / HOURS)
            rate = np.maximum(sc.learning_rate, 1.0 / (self.season_n[idx] + 1.0))[:, None]
            rows = np.exp((1.0 - rate) * np.log(self.season[idx]) + rate * np.log(share))
            rows = np.clip(rows, 0.05, 20.0)
            rows = (rows / rows.mean(axis=1)[:, None]).astype(np.float32)
            # mu = baseline · factor stays what it was at this moment (1: factors were off).
            g_old = np.where(
                self.season_n[idx] > 0, self._interpolate(self.season[idx], bucket), 1.0
            )
            m = g_old / self._interpolate(rows, bucket)
            self.season[idx] = rows
            self.rate.mean[idx] *= m
            self.rate_trend[idx] *= m
            self.rate.var[idx] *= m * m
            self.peak[idx] *= m
            self.drop_ref[idx] *= m  # (deseasonalised as the baseline it follows or holds)
            # The drift reference takes over from the rate baseline once a day is learnt: it
            # starts where the baseline is (its own level lagged the first day's shape).
            self.level.mean[idx] *= np.sqrt(m)
            self.level.var[idx] *= m
            first = self.season_n[idx] == 0
            self.drift_ref[idx] = np.where(first, self.rate.mean[idx], self.drift_ref[idx] * m)
            self.drift_fast[idx] = np.where(first, 0.0, self.drift_fast[idx] * m)
            self.drift_slow[idx] = np.where(first, self.rate.mean[idx], self.drift_slow[idx] * m)
            self.drift_twice[idx] = np.where(first, self.rate.mean[idx], self.drift_twice[idx] * m)
            self.season_n[idx] += 1
        self.day_sum[:] = 0.0

    # -- cardinality at low volume -------------------------------------------------------------

    def _card_run(
        self, c: np.ndarray, distinct: np.ndarray, live: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The upward CUSUM of distinct ids against the occupancy model of the learned population.

        Returns per slot the standardised residual z, whether the CUSUM alarms, whether this
        bucket is elevated (z above ``settle_sigma``), and the residual² at unit dispersion
        (what the dispersion of distinct counts learns from; -1 where the bucket says nothing).
        """
        cfg = self.config
        cc = cfg.cardinality
        cap = self.capacity
        zc = np.zeros(cap)
        r2 = np.full(cap, -1.0)
        step = np.zeros(cap)
        known = live & self.has_uid & (self.pop.n >= max(1, self.warmup_buckets))
        info = known & (distinct > 0) & (c >= 1)
        idx = info.nonzero()[0]
        if len(idx):
            cs = c[idx]
            ds = distinct[idx].clip(1.0, cs)
            e, v = occupancy(cs, self.pop.mean[idx])
            # Sketch noise (HyperLogLog: relative error 1.04/sqrt(m)) and half an id of rounding.
            noise = 1.08 * ds * ds / float(1 << cc.precision) + 0.25
            disp = self.card_disp
            phi = np.maximum(1.0, np.where(disp.n[idx] > 0, disp.mean[idx], 1.0))
            zc[idx] = (ds - e) / np.sqrt((v + noise) * phi)
            r2[idx] = (ds - e) ** 2 / (v + noise)
            step[idx] = ds - e
        cum = np.where(info, self.card_cusum + np.minimum(zc, cc.clip), self.card_cusum) - cc.slack
        cum = np.where(known, cum.clip(0.0, cc.threshold + 2.0 * cc.clip), 0.0)
        self.card_excess = np.where(cum > 0, self.card_excess + step, 0.0)
        self.card_cusum = cum
        hit = (cum > cc.threshold) & (self.card_excess >= cc.min_distinct)
        return zc, hit, info & (zc > cfg.settle_sigma), r2

    def _learn_population(
        self,
        c: np.ndarray,
        distinct: np.ndarray,
        learning: np.ndarray,
        unusual: np.ndarray,
        r2: np.ndarray,
    ) -> None:
        """Learn u = 1/N from each bucket's (records, distinct ids), and the dispersion."""
        cfg = self.config
        cap = self.capacity
        idx = (learning & self.has_uid & (distinct > 0) & (c >= 2)).nonzero()[0]
        x = np.zeros(cap)
        w = np.zeros(cap)
        if len(idx):
            x[idx] = population_of(c[idx], distinct[idx])
            w[idx] = np.where(unusual[idx], cfg.anomaly_update_weight, 1.0)
        self.pop.update(x, w)
        wd = np.where(learning & (r2 >= 0) & ~unusual & (self.pop.n >= 10), 1.0, 0.0)
        self.card_disp.update(np.maximum(r2, 0.0), wd)

    # -- read side ---------------------------------------------------------------------------

    def summary(self, slot: int) -> ProfileSummary:
        cfg = self.config
        n = float(self.rate.n[slot])
        src = self.source[slot]
        assert src is not None
        return ProfileSummary(
            rhythm_hash=self.rhythm_hash[slot],
            source=src,
            source_key=src.key,
            template_id=self.template_id[slot],
            template=self.template[slot],
            severity=self.severity[slot],
            first_seen_ns=int(self.first_seen_ns[slot]),
            last_seen_ns=int(self.last_seen_ns[slot]),
            total_count=int(self.total[slot]),
            buckets_seen=round(n),
            baseline_mean=float(self.rate.mean[slot]),
            baseline_std=float(math.sqrt(self.rate.var[slot])),
            distinct_mean=float(self.card.mean[slot]),
            bucket_seconds=cfg.bucket,
            state=ProfileState.ACTIVE
            if n >= max(1, self.warmup_buckets)
            else ProfileState.LEARNING,
        )

    # -- state -------------------------------------------------------------------------------

    def _slot_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """Every per-slot array by name, with its slot axis: one profile's state is the slice
        of each at its slot (what `take` exports and `put` imports)."""
        names = (*_FLOAT_COLS, *_INT_COLS, *_BOOL_COLS, *_NARROW_COLS)
        out = {n: (getattr(self, n), 0) for n in names}
        for n in _EW_COLS:
            e: EWMeanVar = getattr(self, n)
            out[f"{n}.n"], out[f"{n}.mean"], out[f"{n}.var"] = (e.n, 0), (e.mean, 0), (e.var, 0)
        out["cusum.pos"], out["cusum.neg"] = (self.cusum.pos, 0), (self.cusum.neg, 0)
        out["season"], out["day_sum"] = (self.season, 0), (self.day_sum, 0)
        out.update(self.win.slot_arrays("win."))
        for n in _RECENT_COLS:
            out[n] = (getattr(self, n), 1)
        out.update(self.ids.slot_arrays("ids."))
        return out

    def _set_slot_array(self, name: str, a: np.ndarray) -> None:
        owner, _, attr = name.rpartition(".")
        setattr(getattr(self, owner) if owner else self, attr, a)

    def _meta(self, slots: list[int]) -> dict[str, Any]:
        """Identity of the profiles at `slots`: rhythm hash, source, template, severity."""
        src_index: dict[str, int] = {}
        src_list: list[Any] = []
        which = []
        for s in slots:
            src = self.source[s]
            assert src is not None
            if src.key not in src_index:
                src_index[src.key] = len(src_list)
                src_list.append([src.key, [list(a) for a in src.attributes]])
            which.append(src_index[src.key])
        return {
            "sources": src_list,
            "source": np.array(which, dtype=np.int64),
            "rhythm_hash": [self.rhythm_hash[s] for s in slots],
            "template_id": [self.template_id[s] for s in slots],
            "template": [self.template[s] for s in slots],
            "severity": [self.severity[s] for s in slots],
        }

    def snapshot(self) -> dict[str, Any]:
        """The whole table as a tree (JSON values and 1-d arrays; see `codec`)."""
        slots = np.flatnonzero(self.live).tolist()
        arrays = self._slot_arrays()
        return {
            "version": self.VERSION,
            "capacity": self.capacity,
            "day": self.day_abs,
            "recent": [RECENT, self.recent_from, self.recent_end],
            "windows": [list(HALF), self.win.last],
            "windows_filled": self.win.filled_tree(),
            "free": np.array(self._free, dtype=np.int64),
            "columns": {name: leaf(a) for name, (a, _) in arrays.items()},
            "slots": np.array(slots, dtype=np.int64),
            "profiles": self._meta(slots),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the table with a `snapshot` (ValueError for another version)."""
        check_version(state, self.VERSION, "ProfileTable")
        fresh = ProfileTable(self.config, 0)
        fresh._free = []
        fresh._grow(int(state["capacity"]))
        cols = upgrade_columns(state["columns"])
        for name, (a, _) in fresh._slot_arrays().items():
            if name in cols:  # a column added since the snapshot keeps its fresh values
                fresh._set_slot_array(name, as_array(cols[name], a.dtype, a.shape))
        fresh.day_abs = state["day"]
        length, r_from, r_end = state["recent"]
        if length != RECENT:
            raise ValueError(f"ProfileTable snapshot: {length} recent buckets, expected {RECENT}")
        fresh.recent_from, fresh.recent_end = int(r_from), int(r_end)
        # Windows of other lengths (or none: an older snapshot) start empty.
        halves, win_last = state.get("windows", [list(HALF), None])
        if list(halves) == list(HALF) and win_last is not None:
            fresh.win.last = int(win_last)
            fresh.win.restore_filled(state.get("windows_filled"))
        else:
            fresh.win.cnt[:] = 0.0
            fresh.win.exp[:] = 0.0
            fresh.win.cnt2[:] = 0.0
            fresh.win.exp2[:] = 0.0
            fresh.win.lag_n[:] = 0.0  # (a lag over other half-blocks is learnt again)
            fresh.win.rexp[:] = 0.0
        slots = as_array(state["slots"], np.int64).tolist()
        fresh._add_meta(slots, state["profiles"])
        fresh._free = as_array(state["free"], np.int64).tolist()
        self.__dict__.update(fresh.__dict__)

    def _add_meta(self, slots: list[int], meta: dict[str, Any]) -> None:
        sources = [Source(key, tuple((a, b) for a, b in attrs)) for key, attrs in meta["sources"]]
        which = as_array(meta["source"], np.int64).tolist()
        for i, s in enumerate(slots):
            rh = meta["rhythm_hash"][i]
            self.index[rh] = s
            self.rhythm_hash[s], self.source[s] = rh, sources[which[i]]
            self.src_id[s] = self._src_id_of(sources[which[i]].key)
            self.template_id[s] = meta["template_id"][i]
            self.template[s] = meta["template"][i]
            self.severity[s] = meta["severity"][i]

    def take(self, slots: list[int]) -> dict[str, Any]:
        """The profiles at `slots` as a tree, for `put` into another table (same config)."""
        idx = np.array(slots, dtype=np.int64)
        cols = {}
        for name, (a, axis) in self._slot_arrays().items():
            cols[name] = leaf(np.take(a, idx, axis=axis))
        return {
            "version": self.VERSION,
            "count": len(slots),
            "day": self.day_abs,
            "recent": [RECENT, self.recent_from, self.recent_end],
            "windows": [list(HALF), self.win.last],
            "windows_filled": self.win.filled_tree(),
            "columns": cols,
            "profiles": self._meta(slots),
        }

    def put(self, tree: dict[str, Any]) -> list[int]:
        """Add the profiles of a `take` tree (their rhythm hashes must be new); their slots.

        Recent buckets outside this table's own recent range are left empty, and a partly
        accumulated day is kept only if both tables are on the same day.
        """
        check_version(tree, self.VERSION, "ProfileTable")
        k = int(tree["count"])
        meta = tree["profiles"]
        cols = upgrade_columns(tree["columns"])
        slots = []
        for i in range(k):
            if not self._free:
                self._grow(grown(self.capacity))
            slot = self._free.pop()
            slots.append(slot)
            self.live[slot] = True  # (overwritten below with the same value)
            self.rhythm_hash[slot] = meta["rhythm_hash"][i]
        idx = np.array(slots, dtype=np.int64)
        length, r_from, r_end = tree["recent"]
        lo = max(int(r_from), int(r_end) - RECENT, self.recent_from, self.recent_end - RECENT)
        hi = min(int(r_end), self.recent_end)
        keep_rows = np.zeros(RECENT, dtype=bool)
        if length == RECENT and hi > lo:
            keep_rows[np.arange(lo, hi) % RECENT] = True
        for name, (a, axis) in self._slot_arrays().items():
            if name not in cols:  # an export older than the column: left empty
                continue
            shape = list(a.shape)
            shape[axis] = k
            v = as_array(cols[name], a.dtype, tuple(shape))
            if axis == 1:  # the ring of recent buckets: rows are buckets modulo RECENT
                v[~keep_rows] = 0
                a[:, idx] = v
            else:
                if name == "day_sum" and tree["day"] != self.day_abs:
                    v[:] = 0
                a[idx] = v
        self._add_meta(slots, meta)
        # A fresh table takes the sender's half-block clock, so the windows carry on as they were.
        halves, win_last = tree.get("windows", [list(HALF), None])
        if self.win.last is None and list(halves) == list(HALF) and win_last is not None:
            self.win.last = int(win_last)
            self.win.restore_filled(tree.get("windows_filled"))
        return slots
