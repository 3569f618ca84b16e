"""The configuration of via-otlp: one JSON5 file loaded into frozen dataclasses.

Defaults live here (and in each stage's own `config.py`), nowhere else. `load_config` reads the
file, substitutes ``${env:NAME}`` / ``${env:NAME:-default}``, and validates every key: an unknown
key or a bad value is a `ConfigError` naming its key path.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from via_otlp.configload import load_dataclass, parse_document, read_document, spec
from via_otlp.control.config import ControlConfig
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.detect.config import DetectConfig
from via_otlp.emit.config import EmitConfig
from via_otlp.patterns.config import PatternsConfig
from via_otlp.receive.config import GrpcConfig, HttpConfig, ReceiveConfig
from via_otlp.registry.config import RegistryConfig
from via_otlp.telemetry.config import TelemetryConfig

# The receive section's classes are re-exported: its listeners' settings used to live here.
__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "GrpcConfig",
    "HttpConfig",
    "LogConfig",
    "PipelineConfig",
    "ReceiveConfig",
    "StateConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "via.json5"


@dataclass(frozen=True)
class PipelineConfig:
    """How the work is spread: shard processes, batch bounds, memory-based admission."""

    # Shard worker processes; every source's learned state lives in exactly one. 0: one per core.
    workers: int = field(default=0, metadata=spec(ge=0, le=256))
    # Run the whole pipeline inside the serving process (no shards): tests and debugging only.
    in_process: bool = False
    # A request is cut into batches of at most this many records (memory stays bounded).
    batch_max_records: int = field(default=16384, metadata=spec(ge=1))
    # Request bytes and batch bytes waiting for a shard, at most: above it, retry later.
    max_queued_bytes: int = field(default=256 * 1024**2, metadata=spec(unit="size", gt=0))
    # Soft limit on the resident memory of the service (all its processes); 0: none.
    max_rss: int = field(default=0, metadata=spec(unit="size", ge=0))
    # How long a sender is asked to wait when the service is full (RetryInfo, Retry-After).
    retry_after: float = field(default=1.0, metadata=spec(unit="duration", gt=0))
    # How long a shard may take to restore its state and say it is ready (at start and after a
    # crash). Past it the shard is killed: a start fails with an error, a restart is tried again
    # after a backoff. A restore that hangs (a stuck disk) must not keep a shard down for ever.
    ready_timeout: float = field(default=300.0, metadata=spec(unit="duration", gt=0))

    @property
    def worker_count(self) -> int:
        """The number of shards: `workers`, or the cores this process may use."""
        if self.workers:
            return self.workers
        return max(
            1,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1),
        )


@dataclass(frozen=True)
class StateConfig:
    """Where learned state lives between runs."""

    data_dir: str = field(default="./var/via", metadata=spec(env="VIA_DATA_DIR", nonempty=True))
    snapshot_interval: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    # How often each source's learned state is copied to the registry, so that another
    # instance can take the source over (also at shutdown); 0: never.
    share_interval: float = field(default=30.0, metadata=spec(unit="duration", ge=0))


@dataclass(frozen=True)
class LogConfig:
    """via-otlp's own diagnostic log (stderr)."""

    level: str = field(
        default="info",
        metadata=spec(choices=("debug", "info", "warning", "error"), env="VIA_LOG_LEVEL"),
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration; every section has defaults, so `{}` is a valid file."""

    receive: ReceiveConfig = field(default_factory=ReceiveConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    patterns: PatternsConfig = field(default_factory=PatternsConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    emit: EmitConfig = field(default_factory=EmitConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    correlate: CorrelateConfig = field(default_factory=CorrelateConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    @property
    def log_level(self) -> int:
        return int(logging.getLevelName(self.log.level.upper()))


def parse_config(
    text: str, origin: str = "<config>", environ: dict[str, str] | None = None
) -> Config:
    """Parse JSON5 text into a validated `Config`."""
    return load_dataclass(Config, parse_document(text, origin), "", environ)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load and validate a config file; `None` means the built-in defaults, whose env-backed
    keys (``VIA_GRPC_ENDPOINT``, ``VIA_DATA_DIR``, ...) are read from `environ` as a file's
    ``${env:...}`` would be."""
    return load_dataclass(Config, {} if path is None else read_document(path), "", environ)
