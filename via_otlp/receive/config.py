"""Configuration of the receive stage (the `receive` section of via.json5): the OTLP/gRPC and
OTLP/HTTP listeners, and how a request becomes a `LogBatch`."""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.endpoints import check_endpoint
from via_otlp.errors import ConfigError
from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES, SERVICE_NAME
from via_otlp.security.config import BearerAuthConfig, ServerTlsConfig


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
        check_endpoint(self.endpoint, "endpoint")
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
    # A client that stops reading an answer (nothing leaves its socket) is cut off after this.
    write_timeout: float = field(default=30.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        check_endpoint(self.endpoint, "endpoint")


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
