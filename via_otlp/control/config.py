"""Configuration of the control API (the `control` section of via.json5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControlConfig:
    """Placeholder until the control API defines its keys."""
