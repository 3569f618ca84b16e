"""Profiles: one per rhythm hash, kept as columns so a closing bucket judges all of them at once.

A profile holds the learned rhythm of one pattern: a rate baseline (EWMA mean and variance of
its count per bucket, plus a long-memory dispersion index and a decayed peak of normal buckets),
a variance-stabilised level for the drift CUSUM, a cardinality baseline (distinct unique ids per
bucket), first/last seen, counts, and its learning/active state. The columns are numpy arrays
indexed by slot; `ProfileTable.close` runs every test for every profile in a few vectorised
steps and computes exact tail probabilities only for the few candidates a screen lets through.
That keeps a closing bucket cheap even with 100,000 profiles and the memory per profile small.

Minimum-evidence rules keep tiny rates quiet (alarm fatigue is what kills detectors):
a spike needs at least ``spike.min_count`` records, ``spike.min_ratio`` × the mean, more than
any normal bucket of the recent past, and a tail probability below ``tail_probability`` under
Poisson or negative binomial; a drop needs an expected count of ``drop.min_expected`` (over one
bucket or a run of silent ones). Anomalous buckets teach the baseline only a little
(``anomaly_update_weight``), so an anomaly does not become normal before it is reported.
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
from via_otlp.detect.tails import count_tail
from via_otlp.model import AnomalyKind, Source

_SCREEN_SIGMA = 3.0  # candidates for the exact tail test; p < 1e-3 needs more than 3σ anyway


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

    `count` saturates at 2³²-1 and `distinct` (the HyperLogLog estimate, rounded) at 65,535:
    the ring is stored compactly (10 bytes a bucket).
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


def fisher_p(sum_log_p: float, k: int) -> float:
    """P(a product of k uniform p-values ≤ exp(sum_log_p)): Fisher's combination, in closed form.

    >>> round(fisher_p(math.log(1e-3), 1), 6), fisher_p(math.log(1e-8), 2) < 1e-6
    (0.001, True)
    """
    x = -sum_log_p
    term, total = 1.0, 1.0
    for j in range(1, k):
        term *= x / j
        total += term
    return float(min(1.0, math.exp(sum_log_p) * total))


def score_of(p: float, p_alarm: float) -> float:
    """0–100 from a tail probability: 50 at the alarm level, 100 at its square."""
    if p <= 0.0:
        return 100.0
    return float(min(100.0, max(0.0, 50.0 * math.log(p) / math.log(p_alarm))))


_FLOAT_COLS = (
    "peak", "zrun_logp", "zrun_expect", "srun_logp", "srun_sum", "srun_mu", "srun_max",
    "drun_logp", "drun_sum", "drun_mu", "card_cusum", "card_excess",
)  # fmt: skip
_SRUN_MAX = 30  # a spike run longer than this is a level shift: the drift test's business
_INT_COLS = (
    "first_seen_ns",
    "last_seen_ns",
    "last_bucket",
    "first_bucket",
    "total",
    "srun_len",
    "drun_len",
    "present",
    "season_n",
)
_BOOL_COLS = ("live", "has_uid", "srun_hit")
_EW_COLS = ("rate", "level", "dispersion", "card", "pop", "card_disp")
_RECENT_COLS = ("recent_count", "recent_expected", "recent_distinct")
HOURS = 24  # the seasonal shape: one factor per hour of the day (UTC), interpolated
RECENT = 60  # closed buckets kept per profile for the control API (`ProfileTable.recent`)
_COUNT_MAX = np.iinfo(np.uint32).max
_DISTINCT_MAX = np.iinfo(np.uint16).max


def occupancy(c: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the distinct ids among `c` records drawn from ``1/u`` equally likely ids.

    The classical occupancy problem: ``E = N(1 - (1 - 1/N)^c)``; ``u = 0`` (an unbounded
    population) gives ``E = c`` and no variance.

    >>> e, v = occupancy(np.array([6.0]), np.array([0.2]))   # 6 mails to 5 users
    >>> round(float(e[0]), 3), round(float(v[0]), 3)
    (3.689, 0.526)
    """
    u = np.clip(u, 0.0, 1.0 - 1e-9)
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
    d = np.clip(d, 1.0, c)
    out = np.where(d >= c - 1e-9, 0.0, 1.0)
    todo = np.flatnonzero((d < c - 1e-9) & (d > 1.0 + 1e-9))
    if len(todo) == 0:
        return out
    c, d = c[todo], d[todo]
    lo = np.full(len(c), -27.0)  # log2 u in [-27, 0]: bisection to 0.007 (0.5% in u)
    hi = np.zeros(len(c))
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        u = np.minimum(np.exp2(mid), 1.0 - 1e-9)
        big = -np.expm1(c * np.log1p(-u)) > d * u  # E(u) > d: u must be larger
        lo = np.where(big, mid, lo)
        hi = np.where(big, hi, mid)
    out[todo] = np.exp2(0.5 * (lo + hi))
    return out


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
        self.level = EWMeanVar(hl, 0)  # of y = 2·sqrt(count + 3/8): the drift residuals
        self.dispersion = EWMeanVar(c.dispersion_half_life / c.bucket, 0)  # of Pearson r²
        self.card = EWMeanVar(hl, 0)
        # The id population behind a profile's unique ids, as u = 1/N (occupancy model), and the
        # long-memory dispersion of distinct counts around what that population predicts.
        self.pop = EWMeanVar(hl, 0)
        self.card_disp = EWMeanVar(c.dispersion_half_life / c.bucket, 0)
        self.cusum = Cusum(c.drift.slack, c.drift.threshold, 0)
        # Seasonality: per profile, a multiplicative factor per hour of the day: the day's
        # shape, learned at the end of each whole day from its hourly counts (`day_sum`), and
        # used once a day has been learned.
        self._bucket_s = c.bucket
        self.season = np.ones((0, HOURS), dtype=np.float32)
        self.day_sum = np.zeros((0, HOURS), dtype=np.float32)
        self.day_abs: int | None = None  # the day (since the epoch) being accumulated
        self._peak_decay = 1.0 - decay_of(c.dispersion_half_life / c.bucket)
        self.peak = np.zeros(0)
        self.zrun_logp = np.zeros(0)
        self.zrun_expect = np.zeros(0)
        # The open run of elevated buckets (each above mean + settle_sigma·sd): Σ log tail,
        # Σ count, Σ mean, its largest count, its length, and whether it alarmed.
        self.srun_logp = np.zeros(0)
        self.srun_sum = np.zeros(0)
        self.srun_mu = np.zeros(0)
        self.srun_max = np.zeros(0)
        self.srun_len = np.zeros(0, dtype=np.int64)
        self.srun_hit = np.zeros(0, dtype=bool)
        self.first_seen_ns = np.zeros(0, dtype=np.int64)
        self.last_seen_ns = np.zeros(0, dtype=np.int64)
        self.last_bucket = np.zeros(0, dtype=np.int64)
        self.first_bucket = np.zeros(0, dtype=np.int64)
        self.total = np.zeros(0, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)
        self.has_uid = np.zeros(0, dtype=bool)
        self.srun_hit = np.zeros(0, dtype=bool)
        # The open run of low buckets (each below mean - settle_sigma·sd), as for spikes.
        self.drun_logp = np.zeros(0)
        self.drun_sum = np.zeros(0)
        self.drun_mu = np.zeros(0)
        self.drun_len = np.zeros(0, dtype=np.int64)
        self.present = np.zeros(0, dtype=np.int64)  # buckets that held records
        self.season_n = np.zeros(0, dtype=np.int64)  # whole days learned
        self.card_cusum = np.zeros(0)  # upward CUSUM of standardised distinct-count residuals
        self.card_excess = np.zeros(0)  # distinct ids above expectation over its excursion
        # The last RECENT closed buckets of every profile, a ring shared by all: bucket b sits in
        # row b % RECENT (rows are contiguous, so closing a bucket writes one row of each).
        # Rows hold buckets recent_from .. recent_end-1 (the last RECENT of them).
        self.recent_count = np.zeros((RECENT, 0), dtype=np.uint32)
        self.recent_expected = np.zeros((RECENT, 0), dtype=np.float32)
        self.recent_distinct = np.zeros((RECENT, 0), dtype=np.uint16)
        self.recent_from = 0
        self.recent_end = 0
        self.rhythm_hash: list[str] = []
        self.source: list[Source | None] = []
        self.template_id: list[str] = []
        self.template: list[str] = []
        self.severity: list[str] = []
        self.index: dict[str, int] = {}
        self._free: list[int] = []
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
        self.season = np.concatenate([self.season, np.ones((pad, HOURS), dtype=np.float32)])
        self.day_sum = np.concatenate([self.day_sum, np.zeros((pad, HOURS), dtype=np.float32)])
        self.cusum.grow(capacity)
        self.ids.grow(capacity)
        for name in _RECENT_COLS:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((RECENT, pad), old.dtype)], axis=1))
        for name in _FLOAT_COLS:
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(pad)]))
        for name in _INT_COLS:
            setattr(
                self, name, np.concatenate([getattr(self, name), np.zeros(pad, dtype=np.int64)])
            )
        for name in _BOOL_COLS:
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(pad, dtype=bool)]))
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
            self._grow(max(64, 2 * self.capacity))
        slot = self._free.pop()
        self.index[rhythm_hash] = slot
        self.rhythm_hash[slot] = rhythm_hash
        self.source[slot] = source
        self.template_id[slot] = template_id
        self.template[slot] = template
        self.severity[slot] = severity
        self.first_seen_ns[slot] = time_ns
        self.last_seen_ns[slot] = time_ns
        self.first_bucket[slot] = bucket
        self.last_bucket[slot] = bucket
        self.live[slot] = True
        return slot

    def remove(self, slot: int) -> None:
        """Forget a profile (eviction); its slot is reused."""
        del self.index[self.rhythm_hash[slot]]
        for name in _EW_COLS:
            getattr(self, name).clear(slot)
        self.season[slot] = 1.0
        self.day_sum[slot] = 0.0
        for name in _RECENT_COLS:
            getattr(self, name)[:, slot] = 0
        self.cusum.clear(slot)
        self.ids.clear(slot)
        for name in _FLOAT_COLS + _INT_COLS + _BOOL_COLS:
            getattr(self, name)[slot] = 0
        self.rhythm_hash[slot] = self.template_id[slot] = self.template[slot] = self.severity[
            slot
        ] = ""
        self.source[slot] = None
        self._free.append(slot)

    def idle(self, bucket: int, ttl_buckets: int) -> np.ndarray:
        """Slots of live profiles without records for `ttl_buckets` buckets."""
        return np.flatnonzero(self.live & (bucket - self.last_bucket >= ttl_buckets))

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
        p_alarm = cfg.tail_probability
        log_p_alarm = math.log(p_alarm)
        live = self.live & (self.first_bucket <= bucket)
        c = np.where(live, counts, 0.0)
        n = self.rate.n
        active = live & (n >= max(1, self.warmup_buckets))
        self._season_roll(bucket)
        # The baseline learns deseasonalised counts (c / g); the expected count is mu_base · g.
        g = self._season_factor(bucket)
        mu_base = self.rate.mean
        mu = mu_base * g
        phi = np.maximum(1.0, np.where(self.dispersion.n > 0, self.dispersion.mean, 1.0))
        var = np.maximum(np.maximum(self.rate.var * g * g, mu * phi), np.maximum(mu, 1e-12))
        sd = np.sqrt(var)
        alarms: list[Alarm] = []
        settle = cfg.settle_sigma

        # Spike: screen, then the exact upper tail for the few candidates...
        sp = cfg.spike
        elevated = active & (c > mu + settle * sd) & (c >= 1.0)
        cand = active & (c >= sp.min_count) & (c >= sp.min_ratio * mu) & (c > self.peak)
        cand &= c > mu + _SCREEN_SIGMA * sd
        spike_hit = np.zeros(self.capacity, dtype=bool)
        spike_p = np.ones(self.capacity)
        for s in np.flatnonzero(cand).tolist():
            spike_p[s] = count_tail(int(c[s]), float(mu[s]), float(var[s])).upper
        # ...or a run of elevated buckets whose tails together are as unlikely (Fisher's
        # combination, exact for k p-values): a ×8 burst on a rate of 2 is not extreme in any
        # one bucket, but three such buckets in a row are. A run that never alarms is normal
        # for this pattern, and only then may its largest bucket raise the learned peak.
        el = np.flatnonzero(elevated).tolist()
        step_logp = np.zeros(self.capacity)
        for s in el:
            p1 = spike_p[s] if cand[s] else count_tail(int(c[s]), float(mu[s]), float(var[s])).upper
            step_logp[s] = math.log(max(p1, 1e-300))
        run_prev = self.srun_len > 0
        ended = run_prev & ~elevated
        peak_from_run = np.where(ended & ~self.srun_hit, self.srun_max, 0.0)
        self.srun_len = np.where(elevated, self.srun_len + 1, 0)
        self.srun_logp = np.where(elevated, self.srun_logp + step_logp, 0.0)
        self.srun_sum = np.where(elevated, self.srun_sum + c, 0.0)
        self.srun_mu = np.where(elevated, self.srun_mu + mu, 0.0)
        self.srun_max = np.where(elevated, np.maximum(self.srun_max, c), 0.0)
        self.srun_hit = np.where(elevated, self.srun_hit, False)
        run_cand = (
            elevated
            & (self.srun_len >= 2)
            & (self.srun_len <= _SRUN_MAX)
            & (self.srun_sum >= sp.min_count)
            & (self.srun_sum >= sp.min_ratio * self.srun_mu)
            & (self.srun_max > self.peak)
        )
        for s in np.flatnonzero(run_cand).tolist():
            spike_p[s] = min(spike_p[s], fisher_p(float(self.srun_logp[s]), int(self.srun_len[s])))
        for s in np.flatnonzero((cand | run_cand) & (spike_p < p_alarm)).tolist():
            p = float(spike_p[s])
            spike_hit[s] = True
            alarms.append(
                Alarm(
                    s,
                    AnomalyKind.SPIKE,
                    score_of(p, p_alarm),
                    p,
                    float(mu[s]),
                    float(c[s]),
                    float(mu[s]),
                    float(sd[s]),
                )
            )
        self.srun_hit |= spike_hit

        # Drop: one bucket far below an expected count that means something...
        dr = cfg.drop
        # Only a pattern that has been there for a while can fall away: one that lived a few
        # minutes (a new error during an incident) is not "dropping" when the incident ends.
        drop_active = active & (self.present >= 2 * max(1, self.warmup_buckets))
        cand = (
            drop_active
            & (mu >= dr.min_expected)
            & (c <= dr.max_ratio * mu)
            & (c < mu - _SCREEN_SIGMA * sd)
        )
        drop_p = np.ones(self.capacity)
        for s in np.flatnonzero(cand).tolist():
            drop_p[s] = count_tail(int(c[s]), float(mu[s]), float(var[s])).lower
        # ...or a run of low buckets whose lower tails together are that unlikely (Fisher)...
        low = drop_active & (c < mu - settle * sd) & (c <= dr.max_ratio * mu) & (not partial)
        step_low = np.zeros(self.capacity)
        for s in np.flatnonzero(low).tolist():
            p1 = drop_p[s] if cand[s] else count_tail(int(c[s]), float(mu[s]), float(var[s])).lower
            step_low[s] = math.log(max(p1, 1e-300))
        self.drun_len = np.where(low, self.drun_len + 1, 0)
        self.drun_logp = np.where(low, self.drun_logp + step_low, 0.0)
        self.drun_sum = np.where(low, self.drun_sum + c, 0.0)
        self.drun_mu = np.where(low, self.drun_mu + mu, 0.0)
        low_run = (
            low
            & (self.drun_len >= 2)
            & (self.drun_len <= _SRUN_MAX)
            & (self.drun_mu >= dr.min_expected)
            & (self.drun_sum <= dr.max_ratio * self.drun_mu)
        )
        for s in np.flatnonzero(low_run).tolist():
            drop_p[s] = min(drop_p[s], fisher_p(float(self.drun_logp[s]), int(self.drun_len[s])))
        # ...or a run of silent buckets that together were expected to hold records.
        silent = drop_active & (c == 0)
        over = var > mu * (1.0 + 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(over, mu * mu / np.where(over, var - mu, 1.0), 1.0)
            lp0 = np.where(over, -r * np.log1p(mu / np.where(r > 0, r, 1.0)), -mu)
        self.zrun_logp = np.where(silent, self.zrun_logp + lp0, 0.0)
        self.zrun_expect = np.where(silent, self.zrun_expect + mu, 0.0)
        run_hit = silent & (self.zrun_logp < log_p_alarm) & (self.zrun_expect >= dr.min_expected)
        drop_p = np.where(run_hit, np.minimum(drop_p, np.exp(self.zrun_logp)), drop_p)
        if partial:
            run_hit &= False
            drop_p[:] = 1.0
        drop_hit = drop_active & (drop_p < p_alarm)
        for s in np.flatnonzero(drop_hit).tolist():
            p = float(drop_p[s])
            alarms.append(
                Alarm(
                    s,
                    AnomalyKind.DROP,
                    score_of(p, p_alarm),
                    p,
                    float(mu[s]),
                    float(c[s]),
                    float(mu[s]),
                    float(sd[s]),
                    -1,
                )
            )

        # Drift: two-sided CUSUM on variance-stabilised, standardised residuals.
        dft = cfg.drift
        y = 2.0 * np.sqrt(c / g + 0.375)  # deseasonalised, like the level it is compared with
        floor = np.maximum(1.0, dft.min_relative_shift * np.sqrt(mu_base) / max(dft.slack, 0.05))
        sy = np.maximum(self.level.std, floor)
        eligible = active & (mu >= dft.min_mean) & (not partial)
        z_raw = np.where(eligible, (y - self.level.mean) / sy, 0.0)
        z = np.clip(z_raw, -dft.clip, dft.clip)
        up, down = self.cusum.update(z)
        for s in np.flatnonzero((up | down) & eligible).tolist():
            direction = 1 if up[s] else -1
            score = float(min(100.0, 50.0 + 10.0 * abs(z_raw[s])))
            alarms.append(
                Alarm(
                    s,
                    AnomalyKind.DRIFT,
                    score,
                    0.0,
                    float(mu[s]),
                    float(c[s]),
                    float(mu[s]),
                    float(sd[s]),
                    direction,
                )
            )

        # Cardinality: more distinct ids than the baseline, scaled up by the volume, explains...
        cc = cfg.cardinality
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
        for s in np.flatnonzero(cand).tolist():
            card_p[s] = count_tail(
                round(float(distinct[s])), float(exp_d[s]), float(var_d[s])
            ).upper
        # ...or, at low volume, a run of buckets with more distinct ids than the learned id
        # population gives for their record counts (occupancy model): six mails to five users
        # name at most five of them, so six fresh ids bucket after bucket add up (CUSUM).
        # The occupancy model counts the records that carried an id (default: all of them).
        c_id = c if with_id is None else np.where(live, np.minimum(with_id, c), 0.0)
        zc, cusum_hit, elevated_d, card_r2 = self._card_run(c_id, distinct, live)
        for s in np.flatnonzero(cand | cusum_hit).tolist():
            p = float(card_p[s])
            if p < p_alarm:
                score = score_of(p, p_alarm)
            elif cusum_hit[s]:
                score = float(min(100.0, 50.0 + 10.0 * max(0.0, float(zc[s]))))
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
                )
            )

        settled = {
            AnomalyKind.SPIKE: (c <= mu + settle * sd) | (c < sp.min_count),
            AnomalyKind.DROP: (c >= mu - settle * sd) & ~run_hit,
            AnomalyKind.DRIFT: np.abs(z_raw) <= max(dft.slack, 0.5),
            AnomalyKind.CARDINALITY: (distinct <= exp_d + settle * sd_d)
            & (self.card_cusum <= cc.threshold),
            AnomalyKind.NOVELTY: np.ones(self.capacity, dtype=bool),
        }

        # Learn: anomalous buckets only a little, so an anomaly is not normal before it is seen.
        anomalous = active & (spike_hit | drop_hit)
        learning = live & (not partial)
        w = np.where(learning, np.where(anomalous, cfg.anomaly_update_weight, 1.0), 0.0)
        pearson = (c - mu) ** 2 / np.maximum(mu, 0.01)
        learn_disp = live & (n >= 10)
        self.dispersion.update(pearson, np.where(learn_disp, w, 0.0))
        self.rate.update(c / g, w)
        self.level.update(y, w)
        # The day's hourly counts, with what was expected standing in for anomalous buckets.
        if not partial and self.config.seasonal.enabled:
            h = int((bucket * self._bucket_s) % 86400.0 // 3600.0)
            self.day_sum[:, h] += np.where(anomalous, mu, c).astype(np.float32)
        normal_c = np.where(anomalous | elevated, 0.0, c)
        self.peak = np.where(
            learning,
            np.maximum(self.peak * self._peak_decay, np.maximum(normal_c, peak_from_run)),
            self.peak,
        )
        self.present += learning & (c > 0)
        has_d = distinct > 0
        self.has_uid |= live & has_d
        wc = np.where(
            self.has_uid & learning, np.where(card_hit, cfg.anomaly_update_weight, 1.0), 0.0
        )
        self.card.update(distinct, wc)
        self._learn_population(c_id, distinct, learning, card_hit | elevated_d, card_r2)
        self._remember(bucket, c, mu, distinct)
        return Verdict(bucket, c, distinct, mu, sd, alarms, settled)

    # -- recent buckets ----------------------------------------------------------------------

    def _remember(self, bucket: int, c: np.ndarray, mu: np.ndarray, distinct: np.ndarray) -> None:
        """Keep bucket `bucket` (count, expected count, distinct ids) in the ring of recent ones."""
        if bucket != self.recent_end or self.recent_end == self.recent_from:
            self.recent_from = bucket  # a gap (buckets skipped while no profile existed): restart
        row = bucket % RECENT
        self.recent_count[row] = np.minimum(c, _COUNT_MAX)
        self.recent_expected[row] = mu
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
                    float(self.recent_expected[row, slot]),
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
            self.rate.var[idx] *= m * m
            self.level.mean[idx] *= np.sqrt(m)
            self.level.var[idx] *= m
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
        idx = np.flatnonzero(info)
        if len(idx):
            cs = c[idx]
            ds = np.clip(distinct[idx], 1.0, cs)
            e, v = occupancy(cs, self.pop.mean[idx])
            # Sketch noise (HyperLogLog: relative error 1.04/sqrt(m)) and half an id of rounding.
            noise = 1.08 * ds * ds / float(1 << cc.precision) + 0.25
            disp = self.card_disp
            phi = np.maximum(1.0, np.where(disp.n[idx] > 0, disp.mean[idx], 1.0))
            zc[idx] = (ds - e) / np.sqrt((v + noise) * phi)
            r2[idx] = (ds - e) ** 2 / (v + noise)
            step[idx] = ds - e
        cum = np.where(info, self.card_cusum + np.minimum(zc, cc.clip), self.card_cusum) - cc.slack
        cum = np.where(known, np.clip(cum, 0.0, cc.threshold + 2.0 * cc.clip), 0.0)
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
        idx = np.flatnonzero(learning & self.has_uid & (distinct > 0) & (c >= 2))
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
        out = {n: (getattr(self, n), 0) for n in _FLOAT_COLS + _INT_COLS + _BOOL_COLS}
        for n in _EW_COLS:
            e: EWMeanVar = getattr(self, n)
            out[f"{n}.n"], out[f"{n}.mean"], out[f"{n}.var"] = (e.n, 0), (e.mean, 0), (e.var, 0)
        out["cusum.pos"], out["cusum.neg"] = (self.cusum.pos, 0), (self.cusum.neg, 0)
        out["season"], out["day_sum"] = (self.season, 0), (self.day_sum, 0)
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
        cols = state["columns"]
        for name, (a, _) in fresh._slot_arrays().items():
            if name in cols:  # a column added since the snapshot keeps its fresh values
                fresh._set_slot_array(name, as_array(cols[name], a.dtype, a.shape))
        fresh.day_abs = state["day"]
        length, r_from, r_end = state["recent"]
        if length != RECENT:
            raise ValueError(f"ProfileTable snapshot: {length} recent buckets, expected {RECENT}")
        fresh.recent_from, fresh.recent_end = int(r_from), int(r_end)
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
        slots = []
        for i in range(k):
            if not self._free:
                self._grow(max(64, 2 * self.capacity))
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
            if name not in tree["columns"]:  # an export older than the column: left empty
                continue
            shape = list(a.shape)
            shape[axis] = k
            v = as_array(tree["columns"][name], a.dtype, tuple(shape))
            if axis == 1:  # the ring of recent buckets: rows are buckets modulo RECENT
                v[~keep_rows] = 0
                a[:, idx] = v
            else:
                if name == "day_sum" and tree["day"] != self.day_abs:
                    v[:] = 0
                a[idx] = v
        self._add_meta(slots, meta)
        return slots
