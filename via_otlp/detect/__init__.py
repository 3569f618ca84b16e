"""detect/: event-time buckets, per-pattern baselines, anomaly tests and episodes. Pure, no I/O.

One small module per algorithm (`ewma`, `cusum`, `hll`, `tails`), the profile columns
(`profile`), episodes (`episodes`) and the `Engine` that owns event time (`engine`).
"""

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.engine import Engine, EngineStats
from via_otlp.detect.profile import ProfileState, ProfileSummary, RecentBucket

__all__ = [
    "DetectConfig",
    "Engine",
    "EngineStats",
    "ProfileState",
    "ProfileSummary",
    "RecentBucket",
]
