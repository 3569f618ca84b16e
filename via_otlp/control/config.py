"""Configuration of the control API (the `control` section of via.json5).

The control API reads and steers everything (patches drop telemetry), so it listens on
loopback by default, and a `token` is required before it may listen on anything wider: a
configuration that would expose it without one does not load. `tls` is the same block as the
intake's listeners (certificate rotation included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.endpoints import check_endpoint, is_loopback, split_endpoint
from via_otlp.errors import ConfigError
from via_otlp.registry.config import MAX_PAGE
from via_otlp.security.config import ServerTlsConfig, check_token


@dataclass(frozen=True)
class ControlConfig:
    """The via.v1.Control gRPC service on its own port."""

    enabled: bool = True
    endpoint: str = field(default="127.0.0.1:4320", metadata=spec(env="VIA_CONTROL_ENDPOINT"))
    token: str = field(default="", metadata=spec(env="VIA_CONTROL_TOKEN"))
    default_page_size: int = field(default=100, metadata=spec(ge=1))
    max_page_size: int = field(default=1000, metadata=spec(ge=1, le=MAX_PAGE))
    tls: ServerTlsConfig = field(default_factory=ServerTlsConfig)

    def check(self) -> None:
        check_endpoint(self.endpoint, "endpoint")
        if self.default_page_size > self.max_page_size:
            raise ConfigError(
                "default_page_size",
                f"must be <= max_page_size ({self.max_page_size}), got {self.default_page_size}",
            )
        check_token(self.token, "token")
        self.tls.check_grpc("tls")
        host = (split_endpoint(self.endpoint) or ("", 0))[0]
        if self.enabled and not self.token and not is_loopback(host):
            raise ConfigError(
                "token",
                f"is required when the control API listens beyond loopback ({self.endpoint}): "
                "anyone who reaches it could add DROP patches",
                hint="set control.token or VIA_CONTROL_TOKEN, or listen on 127.0.0.1",
            )
