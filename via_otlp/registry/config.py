"""Configuration of the registry (the `registry` section of via.json5).

An empty `dsn` means "embedded": VIA starts its own PostgreSQL in the data directory, so one
command runs the whole system on a fresh machine; production points `dsn` at a shared server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.errors import ConfigError

# Rows one registry query returns at most (a page of the control API).
MAX_PAGE = 1000


@dataclass(frozen=True)
class SchemaDriftConfig:
    """Schema inference: when a change of attribute keys or types is a `schema` anomaly."""

    window: float = field(default=300.0, metadata=spec(unit="duration", gt=0))
    min_samples: int = field(default=50, metadata=spec(ge=1))
    warmup_windows: int = field(default=2, metadata=spec(ge=1))
    min_weight: float = field(default=0.1, metadata=spec(gt=0, le=1))
    learn_rate: float = field(default=0.2, metadata=spec(gt=0, le=1))
    max_sources: int = field(default=10_000, metadata=spec(ge=1))
    max_keys_per_source: int = field(default=256, metadata=spec(ge=1))
    top_templates: int = field(default=20, metadata=spec(ge=1))


@dataclass(frozen=True)
class RegistryConfig:
    """PostgreSQL memory shared by instances: patches, schemas, anomalies, incidents, metrics."""

    enabled: bool = True
    dsn: str = field(default="", metadata=spec(env="VIA_REGISTRY_DSN"))
    embedded_dir: str = field(default="postgres", metadata=spec(nonempty=True))
    embedded_os_user: str = field(default="nobody", metadata=spec(nonempty=True))
    pool_min_size: int = field(default=1, metadata=spec(ge=0))
    pool_max_size: int = field(default=4, metadata=spec(ge=1))
    connect_timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    command_timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    flush_interval: float = field(default=1.0, metadata=spec(unit="duration", gt=0))
    flush_max_rows: int = field(default=500, metadata=spec(ge=1))
    buffer_max: int = field(default=20_000, metadata=spec(ge=1))
    retry_max_backoff: float = field(default=5.0, metadata=spec(unit="duration", gt=0))
    shutdown_timeout: float = field(default=5.0, metadata=spec(unit="duration", gt=0))
    patch_refresh_interval: float = field(default=30.0, metadata=spec(unit="duration", gt=0))
    schema_save_interval: float = field(default=60.0, metadata=spec(unit="duration", gt=0))
    schema: SchemaDriftConfig = field(default_factory=SchemaDriftConfig)

    def check(self) -> None:
        if self.pool_min_size > self.pool_max_size:
            raise ConfigError(
                "pool_min_size",
                f"must be <= pool_max_size ({self.pool_max_size}), got {self.pool_min_size}",
            )
        if self.dsn and not self.dsn.startswith(("postgres://", "postgresql://")):
            raise ConfigError(
                "dsn", "must be a postgresql:// URL, or empty for the embedded server"
            )
