"""Configuration of the patterns stage (the `patterns` section of via.json5)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PatternsConfig:
    """Placeholder until the patterns stage defines its keys."""
