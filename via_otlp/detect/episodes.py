"""Episodes: an anomaly opens one per (rhythm hash, kind); it resolves after a calm cool-down.

Events are emitted when an episode opens and when it resolves, never on every bucket, so a
sustained anomaly is one notification. Episode ids are derived from the rhythm hash, the kind
and the bucket it started in, so a replay gives the same ids.

>>> episode_id("895bb00eb4ca5e29", AnomalyKind.SPIKE, 42)
'55db5abaf08779a5'
>>> rate_text(48, 10.0), rate_text(0.25, 10.0), rate_text(1500, 1.0)
('288/min', '1.5/min', '90k/min')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import xxhash

from via_otlp.model import AnomalyKind

UPDATE_BAND = 10.0
"""An open episode whose score rises into a higher band of this width sends an update event."""


def rose_a_band(score: float, reported: float) -> bool:
    """Has `score` entered a higher band than the last reported one?

    >>> rose_a_band(69.9, 61.0), rose_a_band(70.0, 61.0), rose_a_band(95.0, 99.0)
    (False, True, False)
    """
    return int(score // UPDATE_BAND) > int(reported // UPDATE_BAND)


def episode_id(rhythm_hash: str, kind: AnomalyKind, start_bucket: int) -> str:
    """Deterministic id: xxh64 of rhythm hash, kind and start bucket, as 16 hex digits."""
    return xxhash.xxh64_hexdigest(f"{rhythm_hash}\x1f{kind.value}\x1f{start_bucket}".encode())


def number_text(x: float) -> str:
    """A count for people: 3 significant digits at most, k/M suffixes."""
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.3g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.3g}k"
    if ax >= 100:
        return f"{x:.0f}"
    return f"{x:.2g}" if ax < 10 else f"{x:.3g}"


def rate_text(per_bucket: float, bucket_seconds: float) -> str:
    """A count per bucket as a rate per minute."""
    return f"{number_text(per_bucket * 60.0 / bucket_seconds)}/min"


SEVERITY_NOVELTY_SCORE = {
    "FATAL": 95.0,
    "ERROR": 85.0,
    "WARN": 65.0,
    "INFO": 45.0,
    "DEBUG": 30.0,
    "TRACE": 25.0,
}
"""Novelty scores by severity: a new ERROR or FATAL pattern matters more than a new INFO."""


def severity_boost(severity: str) -> float:
    return 10.0 if severity in ("ERROR", "FATAL") else 0.0


def boosted(score: float, severity: str) -> float:
    """A rate score raised for an ERROR or FATAL pattern: +10 at 50, less towards 100, never 100.

    >>> boosted(50.0, "ERROR"), boosted(90.0, "ERROR"), boosted(90.0, "INFO")
    (60.0, 92.0, 90.0)
    """
    return score + severity_boost(severity) * max(0.0, 100.0 - score) / 50.0


@dataclass(slots=True)
class Episode:
    """An open episode of one kind of anomaly on one rhythm hash."""

    episode_id: str
    rhythm_hash: str
    kind: AnomalyKind
    start_bucket: int
    last_hot_bucket: int
    calm_buckets: int
    score: float  # the highest so far (what an update reports)
    expected: float
    observed: float
    baseline_mean: float
    baseline_std: float
    explanation: str
    sample_trace_ids: list[str] = field(default_factory=list)
    open_score: float = -1.0  # the score it opened with (what its resolution carries); -1: score
    reported: float = -1.0  # the score of its last opening or update event; -1: open_score

    def to_json(self) -> list[Any]:
        return [
            self.episode_id, self.rhythm_hash, self.kind.value, self.start_bucket, self.last_hot_bucket,
            self.calm_buckets, self.score, self.expected, self.observed, self.baseline_mean,
            self.baseline_std, self.explanation, list(self.sample_trace_ids), self.open_score,
            self.reported,
        ]  # fmt: skip

    @classmethod
    def from_json(cls, v: list[Any]) -> Episode:
        return cls(v[0], v[1], AnomalyKind(v[2]), int(v[3]), int(v[4]), int(v[5]), float(v[6]), float(v[7]),
                   float(v[8]), float(v[9]), float(v[10]), v[11], list(v[12]),
                   float(v[13]) if len(v) > 13 else -1.0, float(v[14]) if len(v) > 14 else -1.0)  # fmt: skip
