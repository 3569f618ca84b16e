"""The status of a running service, read from its parts in one place.

`App.read_status()` fills a `ServiceStatus`; `/status` (and the self-metrics, which read that
JSON) is its `as_dict()`, and the control API's GetStatus is `control.convert.status_to_proto`
of the same object, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from via_otlp.configload import to_plain
from via_otlp.correlate.service import CorrelationStats
from via_otlp.detect.engine import EngineStats
from via_otlp.emit.exporter import EmitStats
from via_otlp.lifecycle import AppState
from via_otlp.patterns.stage import PatternStats
from via_otlp.receive.intake import IntakeStats
from via_otlp.registry.records import RegistryStatus

# What a stage that is switched off shows in `/status` and GetStatus.
DISABLED = {"state": "disabled"}


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What the service reports about itself at one moment (`registry` and `correlation` are
    None when switched off; `latency` and `http_connections` are plain JSON already)."""

    version: str
    state: AppState
    uptime_seconds: float
    queue_depth: int
    queue_capacity: int
    body_bytes: int
    rhythm_hashes: int
    intake: IntakeStats
    patterns: PatternStats
    engine: EngineStats
    events_emitted: int
    events_suppressed: int
    events_by_kind: Mapping[tuple[str, str], int]
    emitter: EmitStats
    registry: RegistryStatus | None
    correlation: CorrelationStats | None
    latency: dict[str, Any]
    http_connections: dict[str, int]
    loop_lag_max_ms: float  # the serving event loop's worst lateness

    def as_dict(self) -> dict[str, Any]:
        """The JSON of `/status` (see `telemetry.metrics` for the keys it relies on)."""
        return {
            "version": self.version,
            "state": self.state.value,
            "uptime_seconds": self.uptime_seconds,
            "queue": {
                "depth": self.queue_depth,
                "capacity": self.queue_capacity,
                "body_bytes": self.body_bytes,
            },
            "intake": self.intake.as_dict(),
            "http": {"connections": self.http_connections},
            "rhythm_hashes": self.rhythm_hashes,
            "patterns": to_plain(self.patterns),
            "detect": to_plain(self.engine),
            "events": {
                "emitted": self.events_emitted,
                "suppressed": self.events_suppressed,
                "by_kind": {f"{k}/{s}": n for (k, s), n in sorted(self.events_by_kind.items())},
            },
            "latency": self.latency,
            "emit": to_plain(self.emitter),
            "registry": to_plain(self.registry) if self.registry is not None else dict(DISABLED),
            "correlate": to_plain(self.correlation)
            if self.correlation is not None
            else dict(DISABLED),
            "loop": {"lag_max_ms": self.loop_lag_max_ms},
        }
