"""Configuration of the control API (the `control` section of via.json5).

The control API reads and steers everything (patches drop telemetry), so it listens on
loopback by default; `token` adds a bearer token for anything wider.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.errors import ConfigError
from via_otlp.registry.config import MAX_PAGE


@dataclass(frozen=True)
class ControlConfig:
    """The via.v1.Control gRPC service on its own port."""

    enabled: bool = True
    endpoint: str = field(default="127.0.0.1:4320", metadata=spec(env="VIA_CONTROL_ENDPOINT"))
    token: str = field(default="", metadata=spec(env="VIA_CONTROL_TOKEN"))
    default_page_size: int = field(default=100, metadata=spec(ge=1))
    max_page_size: int = field(default=1000, metadata=spec(ge=1, le=MAX_PAGE))

    def check(self) -> None:
        # Imported here: via_otlp.config imports this module while it is being defined.
        from via_otlp.config import _check_endpoint

        _check_endpoint(self.endpoint, "endpoint")
        if self.default_page_size > self.max_page_size:
            raise ConfigError(
                "default_page_size",
                f"must be <= max_page_size ({self.max_page_size}), got {self.default_page_size}",
            )
        if self.token != self.token.strip() or any(c in self.token for c in "\r\n"):
            raise ConfigError("token", "must not have surrounding whitespace or line breaks")
