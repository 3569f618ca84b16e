"""Configuration of via-otlp's own telemetry (the `telemetry` section of via.json5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec


@dataclass(frozen=True)
class MetricsConfig:
    """Self-metrics: scraped as Prometheus text at `GET /metrics`, and/or pushed as OTLP.

    The OTLP push goes to `emit.endpoint` with the emitter's protocol, TLS and headers, like the
    Collector's own `service.telemetry.metrics` periodic reader.
    """

    prometheus: bool = True
    otlp: bool = field(default=False, metadata=spec(env="VIA_TELEMETRY_METRICS_OTLP"))
    interval: float = field(default=60.0, metadata=spec(unit="duration", gt=0))
    timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))


@dataclass(frozen=True)
class TelemetryConfig:
    """via-otlp's own telemetry."""

    metrics: MetricsConfig = field(default_factory=MetricsConfig)
