"""detect/: event-time buckets, per-pattern baselines, anomaly tests and episodes. Pure, no I/O.

One small module per algorithm (`ewma`, `cusum`, `hll`, `tails`), the profile columns
(`profile`), episodes (`episodes`) and the `Engine` that owns event time (`engine`).
"""

from typing import TYPE_CHECKING

from via_otlp.lazy import lazy_exports

if TYPE_CHECKING:
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

# Imported when first read (see via_otlp/lazy.py): `via_otlp.config` reads only the config,
# and `serve` loads it before numpy to begin the registry's start early.
__getattr__ = lazy_exports(
    __name__,
    {
        "DetectConfig": "via_otlp.detect.config",
        "Engine": "via_otlp.detect.engine",
        "EngineStats": "via_otlp.detect.engine",
        "ProfileState": "via_otlp.detect.profile",
        "ProfileSummary": "via_otlp.detect.profile",
        "RecentBucket": "via_otlp.detect.profile",
    },
)
