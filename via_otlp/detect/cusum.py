"""Two-sided CUSUM on standardised residuals: slack `k`, threshold `h`, reset of the side that alarms.

``S⁺ ← max(0, S⁺ + z - k)`` and ``S⁻ ← max(0, S⁻ - z - k)``; a side alarms when it exceeds `h`
and is then reset to 0, so a persisting shift alarms again after about ``h / (δ - k)`` steps.
With Gaussian residuals the in-control run length of one side is about
``(exp(2k(h + 1.166)) - 2k(h + 1.166) - 1) / (2k²)`` (Siegmund); see `arl0`.

State may be scalars or numpy arrays (one element per profile).

>>> c = Cusum(slack=0.5, threshold=3.5)
>>> [c.update(z) for z in (0.2, 1.5, 1.5, 1.5, 1.5)]
[(False, False), (False, False), (False, False), (False, False), (True, False)]
>>> c.pos
0.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def arl0(slack: float, threshold: float) -> float:
    """Siegmund's approximation of the in-control average run length of one side."""
    if slack == 0:
        return (threshold + 1.166) ** 2
    b = threshold + 1.166
    return (math.exp(2 * slack * b) - 2 * slack * b - 1) / (2 * slack * slack)


class Cusum:
    """Two-sided CUSUM of standardised residuals."""

    VERSION = 1

    def __init__(
        self, slack: float, threshold: float, size: int | None = None, dtype: Any = np.float64
    ) -> None:
        if not (math.isfinite(slack) and slack >= 0):
            raise ValueError(f"slack: must be a finite number >= 0, got {slack!r}")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold: must be a finite number > 0, got {threshold!r}")
        self.slack = float(slack)
        self.threshold = float(threshold)
        self.size = size
        self.dtype = dtype  # of the arrays (float32 where memory counts: ProfileTable)
        self.pos: Any = 0.0 if size is None else np.zeros(size, dtype=dtype)
        self.neg: Any = 0.0 if size is None else np.zeros(size, dtype=dtype)

    def update(self, z: Any) -> tuple[Any, Any]:
        """Add residual(s) `z`; returns ``(up, down)``: which side alarmed (and was reset)."""
        if self.size is None:
            pos = max(0.0, self.pos + z - self.slack)
            neg = max(0.0, self.neg - z - self.slack)
            up, down = pos > self.threshold, neg > self.threshold
            self.pos = 0.0 if up else pos
            self.neg = 0.0 if down else neg
            return up, down
        pos = np.maximum(0.0, self.pos + z - self.slack).astype(self.dtype, copy=False)
        neg = np.maximum(0.0, self.neg - z - self.slack).astype(self.dtype, copy=False)
        up, down = pos > self.threshold, neg > self.threshold
        pos[up] = 0.0
        neg[down] = 0.0
        self.pos, self.neg = pos, neg
        return up, down

    def grow(self, size: int) -> None:
        if self.size is None or size <= self.size:
            return
        pad = np.zeros(size - self.size, dtype=self.dtype)
        self.pos = np.concatenate([self.pos, pad])
        self.neg = np.concatenate([self.neg, pad])
        self.size = size

    def clear(self, index: Any) -> None:
        self.pos[index] = 0.0
        self.neg[index] = 0.0

    def snapshot(self) -> dict[str, Any]:
        from via_otlp.detect.codec import leaf

        d: dict[str, Any] = {
            "version": self.VERSION,
            "slack": self.slack,
            "threshold": self.threshold,
        }
        if self.size is None:
            d.update(pos=self.pos, neg=self.neg)
        else:
            d.update(size=self.size, pos=leaf(self.pos), neg=leaf(self.neg))
        return d

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> Cusum:
        from via_otlp.detect.codec import as_array, check_version

        check_version(state, cls.VERSION, "Cusum")
        size = state.get("size")
        out = cls(state["slack"], state["threshold"], size)
        if size is None:
            out.pos, out.neg = float(state["pos"]), float(state["neg"])
        else:
            out.pos = as_array(state["pos"], np.float64)
            out.neg = as_array(state["neg"], np.float64)
        return out
