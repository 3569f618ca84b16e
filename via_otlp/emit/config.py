"""Configuration of the emit stage (the `emit` section of via.json5).

Defaults live here and nowhere else. `EmitConfig.check` validates the endpoint once, at load
time, through `parse_endpoint`, the same function the transports use, so a bad endpoint stops
the program with its key path instead of failing at the first export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from via_otlp.configload import spec
from via_otlp.endpoints import split_endpoint
from via_otlp.errors import ConfigError

Protocol = Literal["grpc", "http"]
Signals = Literal["logs", "spans", "both"]
Compression = Literal["gzip", "none"]


@dataclass(frozen=True)
class TlsConfig:
    """Transport security towards the downstream endpoint, by the Collector's rules.

    ``https://`` is TLS and ``http://`` plaintext; an endpoint without a scheme is TLS unless
    `insecure` is true (null and false both mean TLS there). An `insecure` that contradicts the
    scheme is a config error rather than silently ignored.
    """

    insecure: bool | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def check(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("cert_file", "cert_file and key_file must be set together")
        if self.insecure and (self.ca_file or self.cert_file):
            raise ConfigError("insecure", "is true, but TLS files are set; remove one or the other")


@dataclass(frozen=True)
class BatchConfig:
    """How events are grouped into one export request."""

    max_size: int = field(default=512, metadata=spec(ge=1, le=100_000))
    interval: float = field(default=1.0, metadata=spec(unit="duration", gt=0))


@dataclass(frozen=True)
class RetryConfig:
    """Jittered exponential backoff for retryable failures, within one deadline per batch."""

    enabled: bool = True
    initial_interval: float = field(default=1.0, metadata=spec(unit="duration", gt=0))
    max_interval: float = field(default=30.0, metadata=spec(unit="duration", gt=0))
    multiplier: float = field(default=1.5, metadata=spec(ge=1.0, le=10.0))
    randomization_factor: float = field(default=0.5, metadata=spec(ge=0.0, lt=1.0))
    max_elapsed_time: float = field(default=300.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        if self.max_interval < self.initial_interval:
            raise ConfigError(
                "max_interval",
                f"must be >= initial_interval ({self.initial_interval}s), got {self.max_interval}s",
            )


@dataclass(frozen=True)
class EmitConfig:
    """Where and how anomaly events leave via-otlp; an empty endpoint prints them to stdout."""

    endpoint: str = field(default="", metadata=spec(env="VIA_EMIT_ENDPOINT"))
    protocol: Protocol = field(default="grpc", metadata=spec(env="VIA_EMIT_PROTOCOL"))
    signals: Signals = "logs"
    headers: dict[str, str] = field(default_factory=dict)
    compression: Compression = "gzip"
    tls: TlsConfig = field(default_factory=TlsConfig)
    timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    batch: BatchConfig = field(default_factory=BatchConfig)
    queue_size: int = field(default=10_000, metadata=spec(ge=1))
    retry: RetryConfig = field(default_factory=RetryConfig)
    error_score: float = field(default=80.0, metadata=spec(ge=0.0, le=100.0))

    def check(self) -> None:
        if self.endpoint.strip():
            parse_endpoint(self.endpoint, self.protocol, self.tls.insecure)
        for name in self.headers:
            if not name or name != name.strip() or any(c in name for c in ":\r\n "):
                raise ConfigError(f"headers.{name}", "is not a valid header name")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed endpoint: `authority` is ``host:port`` (for gRPC), `base_url` ends without ``/``."""

    authority: str
    secure: bool
    base_url: str


def parse_endpoint(endpoint: str, protocol: Protocol, insecure: bool | None) -> Target:
    """Parse ``host:port`` or ``http(s)://host[:port][/prefix]``; errors carry relative key paths.

    Without a scheme it is TLS unless `insecure` is true, as the Collector's ``otlp`` exporter:

    >>> parse_endpoint("collector:4317", "grpc", None).secure
    True
    >>> parse_endpoint("collector:4317", "grpc", True)
    Target(authority='collector:4317', secure=False, base_url='http://collector:4317')
    >>> parse_endpoint("http://collector:4317", "grpc", None).secure
    False
    >>> parse_endpoint("https://otlp.example.com/otlp", "http", None).base_url
    'https://otlp.example.com:443/otlp'
    """
    text = endpoint.strip()
    if "://" in text:
        host, port, secure, path = _parse_url(text, insecure)
        if protocol == "grpc" and path:
            raise ConfigError("endpoint", f"a gRPC endpoint has no path, got {endpoint!r}")
    else:
        host, port = _parse_authority(text)
        secure = not insecure
        path = ""
    bracketed = f"[{host}]" if ":" in host else host
    authority = f"{bracketed}:{port}"
    scheme = "https" if secure else "http"
    return Target(authority=authority, secure=secure, base_url=f"{scheme}://{authority}{path}")


def _parse_url(text: str, insecure: bool | None) -> tuple[str, int, bool, str]:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError("endpoint", f"scheme must be http or https, got {parts.scheme!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("endpoint", f"has an invalid port: {text!r}") from None
    if not parts.hostname:
        raise ConfigError("endpoint", f"has no host: {text!r}")
    if parts.query or parts.fragment:
        raise ConfigError("endpoint", f"must not have a query or fragment: {text!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "endpoint",
            "must not carry credentials (they would not be sent)",
            hint="use emit.headers: {authorization: 'Bearer ${env:TOKEN}'}",
        )
    secure = parts.scheme == "https"
    if insecure is not None and insecure == secure:
        raise ConfigError("tls.insecure", f"is {str(insecure).lower()}, which contradicts {text!r}")
    return parts.hostname, port or (443 if secure else 80), secure, parts.path.rstrip("/")


def _parse_authority(text: str) -> tuple[str, int]:
    parsed = split_endpoint(text, allow_port_zero=False)
    if parsed is None:
        raise ConfigError(
            "endpoint", f"must be HOST:PORT or http(s)://HOST[:PORT][/PATH], got {text!r}"
        )
    return parsed
