"""The via.v1.Control gRPC server (placeholder until the control API lands)."""

from __future__ import annotations

from typing import Any

from via_otlp.control.config import ControlConfig


class ControlServer:
    """Serves via.v1.Control on its own port; `app` is the running `via_otlp.app.App`."""

    def __init__(self, config: ControlConfig, app: Any) -> None:
        self.config = config
        self.app = app
        self.port = 0

    async def start(self) -> None:
        """Start serving (nothing yet)."""

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving; idempotent and safe without start."""
