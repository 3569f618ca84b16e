"""Configuration of the emit stage (the `emit` section of via.json5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmitConfig:
    """Placeholder until the emit stage defines its keys."""
