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
from typing import Any

import json5

from via_otlp.configload import load_dataclass, spec
from via_otlp.control.config import ControlConfig
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.detect.config import DetectConfig
from via_otlp.emit.config import EmitConfig
from via_otlp.endpoints import split_endpoint
from via_otlp.errors import ConfigError
from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES, SERVICE_NAME
from via_otlp.patterns.config import PatternsConfig
from via_otlp.registry.config import RegistryConfig
from via_otlp.security.config import BearerAuthConfig, ServerTlsConfig
from via_otlp.telemetry.config import TelemetryConfig

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "via.json5"


def _check_endpoint(endpoint: str, path: str) -> None:
    if split_endpoint(endpoint) is None:
        raise ConfigError(path, f"must be HOST:PORT with a port 0-65535, got {endpoint!r}")


@dataclass(frozen=True)
class GrpcConfig:
    """OTLP/gRPC intake (LogsService, health, reflection)."""

    enabled: bool = True
    endpoint: str = field(default="0.0.0.0:4317", metadata=spec(env="VIA_GRPC_ENDPOINT"))
    max_recv_msg_size: int = field(default=64 * 1024**2, metadata=spec(unit="size", gt=0))
    tls: ServerTlsConfig = field(default_factory=ServerTlsConfig)
    # Open connections at most (lowered to fit the open-file limit); more are closed at once.
    max_connections: int = field(default=1000, metadata=spec(ge=1))
    # A new connection must finish the HTTP/2 handshake within this.
    handshake_timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    # A connection without calls for this long is closed (GOAWAY; clients reconnect).
    max_connection_idle: float = field(default=300.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        _check_endpoint(self.endpoint, "endpoint")
        self.tls.check_grpc("tls")


@dataclass(frozen=True)
class HttpConfig:
    """OTLP/HTTP intake (/v1/logs), NDJSON intake (/v1/ingest), /healthz and /status."""

    enabled: bool = True
    endpoint: str = field(default="0.0.0.0:4318", metadata=spec(env="VIA_HTTP_ENDPOINT"))
    tls: ServerTlsConfig = field(default_factory=ServerTlsConfig)
    # Largest body, after gzip is inflated (OTLP/HTTP and NDJSON alike); larger ones get 413.
    max_request_body_size: int = field(default=64 * 1024**2, metadata=spec(unit="size", gt=0))
    # Most lines (blank ones too) in one NDJSON body; more get 413.
    max_ndjson_lines: int = field(default=1_000_000, metadata=spec(ge=1))
    # Open connections at most (lowered to fit the open-file limit); more are answered 503.
    max_connections: int = field(default=1000, metadata=spec(ge=1))
    # A new connection must send its request line and headers within this.
    read_header_timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    # A request body that stops arriving for this long is answered 408.
    body_read_timeout: float = field(default=30.0, metadata=spec(unit="duration", gt=0))
    # A keep-alive connection with no request in progress is closed after this.
    idle_timeout: float = field(default=60.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        _check_endpoint(self.endpoint, "endpoint")


@dataclass(frozen=True)
class ReceiveConfig:
    """How requests become LogBatches."""

    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: BearerAuthConfig = field(default_factory=BearerAuthConfig)
    source_attributes: tuple[str, ...] = field(
        default=DEFAULT_SOURCE_ATTRIBUTES, metadata=spec(nonempty=True)
    )
    unique_id_attributes: tuple[str, ...] = ("enduser.id", "user.id", "client.address")
    max_future_skew: float = field(default=300.0, metadata=spec(unit="duration", ge=0))
    attribute_sample_every: int = field(default=64, metadata=spec(ge=1))
    queue_max_records: int = field(default=200_000, metadata=spec(ge=1))
    ndjson_batch_records: int = field(default=1000, metadata=spec(ge=1))

    def check(self) -> None:
        if SERVICE_NAME not in self.source_attributes:
            raise ConfigError("source_attributes", f"must include '{SERVICE_NAME}'")
        if len(set(self.source_attributes)) != len(self.source_attributes):
            raise ConfigError("source_attributes", "must not name an attribute twice")


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
    try:
        data: Any = json5.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError("", f"{origin} is not valid JSON5: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{origin} must hold a JSON5 object at the top level")
    return load_dataclass(Config, data, "", environ)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load and validate a config file; `None` means the built-in defaults, whose env-backed
    keys (``VIA_GRPC_ENDPOINT``, ``VIA_DATA_DIR``, ...) are read from `environ` as a file's
    ``${env:...}`` would be."""
    if path is None:
        return load_dataclass(Config, {}, "", environ)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "", f"config file {p} does not exist", hint="pass --config FILE"
        ) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {p}: {exc.strerror}") from None
    return parse_config(text, str(p), environ)
