"""Configuration of the detect stage (the `detect` section of via.json5).

Defaults live here and nowhere else. Durations are seconds (or strings such as ``"30m"``); the
engine turns them into whole buckets, so every duration must be at least one bucket long, and
the memories of the baselines (`half_life`, `dispersion_half_life`) at least `MIN_MEMORY_BUCKETS`:
a half-life of a few buckets follows a burst that builds over a few buckets, so the burst is
never judged against the level before it. Durations are clock times: a larger `bucket` needs
them raised with it (the error says by how much).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.errors import ConfigError

MIN_MEMORY_BUCKETS = 20
"""The shortest baseline memory (half-life, in buckets) that a slow-building burst cannot drag."""
DAY = 86400.0
MAX_TAIL = 0.25
"""The largest per-bucket tail probability either budget key may give: a test at p > 0.25 alarms
on a quarter of normal buckets, no longer a detector (and past 0.5 every bucket is a tail)."""
MIN_TAIL = 1e-300
"""The smallest: far below any useful budget, and clear of the underflow to 0 that a tiny
`false_alarms_per_day` spread over a day's buckets hits (the close takes its log)."""
DEFAULT_FALSE_ALARMS_PER_DAY = 0.00864


@dataclass(frozen=True)
class SpikeConfig:
    """A bucket with far more records than the baseline allows."""

    min_count: int = field(default=5, metadata=spec(ge=1))
    min_ratio: float = field(default=1.5, metadata=spec(ge=1.0))


@dataclass(frozen=True)
class DropConfig:
    """A bucket (or a run of silent buckets) with far fewer records than the baseline."""

    min_expected: float = field(default=8.0, metadata=spec(gt=0))
    max_ratio: float = field(default=0.5, metadata=spec(gt=0, lt=1.0))
    # A run of silent buckets needs this many expected records: a wandering rate empties a
    # whole minute now and then (gamma wander of shape k: P(0) = (1 + E/k)^-k, 1e-3 at E = 15,
    # k = 5), which the run test, judging its buckets as independent, calls p < 1e-6.
    silent_min_expected: float = field(default=24.0, metadata=spec(gt=0))


@dataclass(frozen=True)
class DriftConfig:
    """A sustained smaller shift. Day one: a pattern's smoothed residual against its source's
    other patterns (a two-sided CUSUM on variance-stabilised residuals where it has none).
    Once a day's shape is learnt: a smoothed residual that leaves a slow reference level."""

    slack: float = field(default=0.5, metadata=spec(ge=0))
    threshold: float = field(default=20.0, metadata=spec(gt=0))
    min_mean: float = field(default=1.0, metadata=spec(ge=0))
    min_relative_shift: float = field(default=0.1, metadata=spec(ge=0))
    clip: float = field(default=3.0, metadata=spec(gt=0))
    # Half-life of the smoothed residual, and of the reference level it is taken from.
    window: float = field(default=600.0, metadata=spec(unit="duration", gt=0))
    reference: float = field(default=7200.0, metadata=spec(unit="duration", gt=0))
    # Alarm beyond this many standard deviations of the smoothed residual; calm within `settle`.
    sigma: float = field(default=6.0, metadata=spec(gt=0))
    settle: float = field(default=1.0, metadata=spec(ge=0))
    # A second test beside it: the same residual from a slower reference (less of a ramp
    # absorbed, less reference noise), alarming only while the residual from `reference` is at
    # least `slow_min_shift` (relative): a steep change, not a slow weekly transition (and
    # while the smoothed level still grows: a ramp, not a step; `_RISING` in profile.py).
    slow_reference: float = field(default=21600.0, metadata=spec(unit="duration", gt=0))
    slow_min_shift: float = field(default=0.2, metadata=spec(ge=0))
    slow_min_share: float = field(default=0.7, metadata=spec(ge=0, le=1.0))
    # Day one, a pattern whose source's other patterns know their consensus within this
    # (relative sd): alarm when its smoothed residual leaves theirs by `sibling_sigma` σ
    # (4.75: the one-sided 1e-6 of a normal z, the null's z sd ~1 with its noise calibrated,
    # `ProfileTable._sibling_vif`). `sibling_model_error`: a relative error of the siblings'
    # consensus as a model of the pattern's level, times the consensus, added in quadrature
    # to the z's noise (the further the source's curve has moved, the less exactly its
    # siblings say the pattern's level). Together: families day1, false/source-day summed
    # over dev 1-5, 11-20, --wander 300 / 900, --daily 0.9: 1.56 -> 1.34; drift finds 14 -> 19.
    sibling_sigma: float = field(default=4.75, metadata=spec(gt=0))
    sibling_model_error: float = field(default=0.05, metadata=spec(ge=0))
    sibling_window: float = field(default=900.0, metadata=spec(unit="duration", gt=0))
    sibling_reference: float = field(default=21600.0, metadata=spec(unit="duration", gt=0))
    sibling_max_sd: float = field(default=0.2, metadata=spec(gt=0))


@dataclass(frozen=True)
class CardinalityConfig:
    """Far more distinct unique ids in a bucket than the baseline (and the volume) explain."""

    precision: int = field(default=10, metadata=spec(ge=4, le=16))
    min_distinct: int = field(default=10, metadata=spec(ge=1))
    min_ratio: float = field(default=2.0, metadata=spec(ge=1.0))
    # The run test for low volumes: a one-sided CUSUM of the distinct count against what the
    # learned id population gives for the bucket's record count (the occupancy model).
    slack: float = field(default=0.5, metadata=spec(ge=0))
    threshold: float = field(default=20.0, metadata=spec(gt=0))
    clip: float = field(default=4.0, metadata=spec(gt=0))
    # Over windows (`via_otlp.detect.cardinality`): the ids each profile named lately, at most
    # `id_slots` of them seen within `id_window`, and a CUSUM (nats) of fresh ones against the
    # learned share, judged once `window_min_ids` ids were seen.
    id_slots: int = field(default=32, metadata=spec(ge=4, le=1024))
    id_window: float = field(default=21600.0, metadata=spec(unit="duration", gt=0))
    window_threshold: float = field(default=9.0, metadata=spec(gt=0))
    window_min_ids: float = field(default=20.0, metadata=spec(ge=0))


@dataclass(frozen=True)
class SeasonalConfig:
    """A learned hour-of-day shape per profile that turns the baseline into the expected count."""

    enabled: bool = True
    learning_rate: float = field(default=0.3, metadata=spec(gt=0, le=1.0))
    pseudo_count: float = field(default=10.0, metadata=spec(ge=0))


@dataclass(frozen=True)
class NoveltyConfig:
    """A pattern never seen before, once its source is past its warm-up, with enough evidence
    (see `via_otlp.detect.novelty`)."""

    source_warmup: float = field(default=3600.0, metadata=spec(unit="duration", ge=0))
    remember: int = field(default=100_000, metadata=spec(ge=0))
    # Log10 odds (surprise + repetition + severity prior) at which a held new pattern opens.
    threshold: float = field(default=4.0, metadata=spec(ge=0))
    # Pseudo-count of patterns seen once, for a source none of whose patterns was seen once.
    prior: float = field(default=0.5, metadata=spec(gt=0))
    # A new pattern waits this long after its first bucket closes (a merge back drops it; the
    # bucket itself closes only `allowed_lateness` after its end, which already holds it)...
    hold: float = field(default=0.0, metadata=spec(unit="duration", ge=0))
    # ...and is accepted as normal if its evidence has not reached `threshold` after this long.
    hold_max: float = field(default=1800.0, metadata=spec(unit="duration", ge=0))
    # Time constant of a source's recent rate of new patterns (first seen lately, weighted).
    discovery: float = field(default=21600.0, metadata=spec(unit="duration", gt=0))
    # The longest mean gap between records of an incident's new pattern: what an incident is
    # said to look like when judging the records after the first (one slower than this is a
    # trickle; on a settled source a new pattern opens at its first bucket without repeats).
    incident_gap: float = field(default=120.0, metadata=spec(unit="duration", gt=0))


@dataclass(frozen=True)
class DetectConfig:
    """Event-time buckets, baselines, tests and episodes of the detect stage."""

    bucket: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    allowed_lateness: float = field(default=10.0, metadata=spec(unit="duration", ge=0))
    half_life: float = field(default=1800.0, metadata=spec(unit="duration", gt=0))
    dispersion_half_life: float = field(default=21600.0, metadata=spec(unit="duration", gt=0))
    warmup: float = field(default=1800.0, metadata=spec(unit="duration", ge=0))
    # The false-alarm budget: how often a day each test of a profile may alarm by chance, spread
    # over the day's buckets (so it holds whatever the bucket: 0.00864 is 1e-6 a 10 s bucket);
    # the older `tail_probability`, the budget per bucket (scaled with the bucket by hand),
    # replaces it when set (setting both, with a budget a day other than the default, is an
    # error). Either must give a per-bucket probability in [MIN_TAIL, MAX_TAIL].
    false_alarms_per_day: float = field(default=DEFAULT_FALSE_ALARMS_PER_DAY, metadata=spec(gt=0))
    tail_probability: float | None = field(default=None, metadata=spec(gt=0))
    settle_sigma: float = field(default=2.0, metadata=spec(gt=0))
    anomaly_update_weight: float = field(default=0.1, metadata=spec(ge=0, le=1.0))
    cooldown: float = field(default=120.0, metadata=spec(unit="duration", ge=0))
    max_profiles: int = field(default=100_000, metadata=spec(ge=1))
    idle_ttl: float = field(default=86400.0, metadata=spec(unit="duration", gt=0))
    # Event time that jumps further than this with no record in between is a gap in
    # observation, skipped in one step rather than closed bucket by bucket as silence (0: never).
    max_gap: float = field(default=3600.0, metadata=spec(unit="duration", ge=0))
    max_sample_trace_ids: int = field(default=5, metadata=spec(ge=0, le=100))
    spike: SpikeConfig = field(default_factory=SpikeConfig)
    drop: DropConfig = field(default_factory=DropConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    cardinality: CardinalityConfig = field(default_factory=CardinalityConfig)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    seasonal: SeasonalConfig = field(default_factory=SeasonalConfig)

    @property
    def p_alarm(self) -> float:
        """The tail probability a test alarms below, per bucket: `tail_probability` if set, else
        `false_alarms_per_day` spread over the day's buckets (so it survives a bucket change)."""
        if self.tail_probability is not None:
            return self.tail_probability
        return min(MAX_TAIL, self.false_alarms_per_day * self.bucket / DAY)

    def check(self) -> None:
        if self.bucket * 1e9 < 1 or self.bucket != self.bucket:
            raise ConfigError("bucket", f"must be at least 1ns, got {self.bucket!r}")
        for name in ("half_life", "dispersion_half_life", "idle_ttl"):
            if getattr(self, name) < self.bucket:
                raise ConfigError(
                    name, f"must be at least one bucket ({self.bucket}s), got {getattr(self, name)}"
                )
        for name in ("half_life", "dispersion_half_life"):
            least = MIN_MEMORY_BUCKETS * self.bucket
            if getattr(self, name) < least:
                raise ConfigError(
                    name,
                    f"must be at least {MIN_MEMORY_BUCKETS} buckets ({least:g}s at bucket "
                    f"{self.bucket:g}s), got {getattr(self, name):g}s: a shorter memory learns a "
                    "slowly building anomaly as it rises; durations are clock times, so raise "
                    "them with the bucket",
                )
        self._check_budget()

    def _check_budget(self) -> None:
        """Reject a budget that is not finite or whose per-bucket probability leaves
        [MIN_TAIL, MAX_TAIL]: it would crash the first close (log of 0) or alarm constantly."""
        tail = self.tail_probability
        if tail is not None:
            if not MIN_TAIL <= tail <= MAX_TAIL:  # NaN fails too
                raise ConfigError(
                    "tail_probability",
                    f"must be a per-bucket probability from {MIN_TAIL:g} to {MAX_TAIL:g}, "
                    f"got {tail!r}",
                )
            if self.false_alarms_per_day != DEFAULT_FALSE_ALARMS_PER_DAY:
                raise ConfigError(
                    "tail_probability",
                    f"is set ({tail:g}) together with false_alarms_per_day "
                    f"({self.false_alarms_per_day:g}); it would replace it: set only one",
                )
            return
        per_day = self.false_alarms_per_day
        per_bucket = self.bucket / DAY
        lo, hi = MIN_TAIL / per_bucket, MAX_TAIL / per_bucket
        if not (math.isfinite(per_day) and MIN_TAIL <= per_day * per_bucket <= MAX_TAIL):
            raise ConfigError(
                "false_alarms_per_day",
                f"must be from {lo:g} to {hi:g} at bucket {self.bucket:g}s (a per-bucket "
                f"probability from {MIN_TAIL:g} to {MAX_TAIL:g}), got {per_day!r}",
            )

    def buckets(self, seconds: float) -> int:
        """A duration as a whole number of buckets (rounded up)."""
        return max(0, -int(-seconds // self.bucket)) if seconds > 0 else 0

    @property
    def bucket_ns(self) -> int:
        return max(1, round(self.bucket * 1e9))
