"""Configuration of the detect stage (the `detect` section of via.json5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectConfig:
    """Placeholder until the detect stage defines its keys."""
