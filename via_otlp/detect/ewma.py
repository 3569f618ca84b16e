"""Exponentially weighted mean and variance, set by half-life, bias-corrected while warming up.

The step taken towards each new value is ``max(λ, w/n)`` where ``λ = 1 - 2**(-1/half_life)``
and ``n`` is the (weighted) number of values seen: while ``n < 1/λ`` this is the plain running
mean and population variance (no bias towards the zero it started from); afterwards it is a
classical EWMA. The variance is a real exponentially weighted variance (West, 1979):
``var ← (1 - s)(var + s·d²)``, not a fraction of the mean.

State may be scalars or numpy arrays (one element per profile): `update` works elementwise,
and a per-element `weight` in [0, 1] lets a caller learn less (or nothing) from a value.

>>> e = EWMeanVar(half_life=10)
>>> for x in (1.0, 2.0, 3.0):
...     e.update(x)
>>> float(e.mean), round(float(e.var), 4)
(2.0, 0.6667)
>>> e = EWMeanVar(half_life=1)
>>> for x in [0.0] * 20 + [8.0]:
...     e.update(x)
>>> float(e.mean)
4.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def decay_of(half_life: float) -> float:
    """The EWMA weight λ of a new value for a half-life counted in updates."""
    return 1.0 - 2.0 ** (-1.0 / half_life)


class EWMeanVar:
    """Exponentially weighted mean and variance of a stream (scalar or elementwise arrays)."""

    VERSION = 1

    def __init__(self, half_life: float, size: int | None = None) -> None:
        if not (isinstance(half_life, int | float) and math.isfinite(half_life) and half_life > 0):
            raise ValueError(f"half_life: must be a finite number > 0, got {half_life!r}")
        if size is not None and size < 0:
            raise ValueError(f"size: must be >= 0, got {size!r}")
        self.half_life = float(half_life)
        self.lam = decay_of(self.half_life)
        self.size = size
        z: Any = 0.0 if size is None else np.zeros(size)
        self.n: Any = z if size is None else z.copy()
        self.mean: Any = z if size is None else z.copy()
        self.var: Any = z if size is None else z.copy()

    @property
    def std(self) -> Any:
        return np.sqrt(self.var) if self.size is not None else math.sqrt(self.var)

    def step_size(self, weight: Any = 1.0) -> Any:
        """The step a value of this weight would take (0 for weight 0)."""
        n = self.n + weight
        if self.size is None:
            return 0.0 if n <= 0 else weight * max(self.lam, 1.0 / n)
        # (1/n only where n > 0: an errstate costs more than the where, a close takes six steps)
        pos = n > 0
        s = weight * np.maximum(self.lam, 1.0 / np.where(pos, n, 1.0))
        return np.where(pos, s, 0.0)

    def update(self, x: Any, weight: Any = 1.0) -> None:
        """Learn from `x` with `weight` (1: a full update, 0: none)."""
        s = self.step_size(weight)
        d = x - self.mean
        sd = s * d  # (s·d·d is (s·d)·d: the same values)
        self.mean = self.mean + sd
        self.var = (1.0 - s) * (self.var + sd * d)
        self.n = self.n + weight

    def grow(self, size: int) -> None:
        """Array state only: extend to `size` elements (new ones empty)."""
        if self.size is None or size <= self.size:
            return
        pad = size - self.size
        self.n = np.concatenate([self.n, np.zeros(pad)])
        self.mean = np.concatenate([self.mean, np.zeros(pad)])
        self.var = np.concatenate([self.var, np.zeros(pad)])
        self.size = size

    def clear(self, index: Any) -> None:
        """Array state only: forget the elements at `index`."""
        self.n[index] = 0.0
        self.mean[index] = 0.0
        self.var[index] = 0.0

    def snapshot(self) -> dict[str, Any]:
        from via_otlp.detect.codec import leaf

        if self.size is None:
            return {
                "version": self.VERSION,
                "half_life": self.half_life,
                "n": self.n,
                "mean": self.mean,
                "var": self.var,
            }
        return {
            "version": self.VERSION,
            "half_life": self.half_life,
            "size": self.size,
            "n": leaf(self.n),
            "mean": leaf(self.mean),
            "var": leaf(self.var),
        }

    @classmethod
    def from_snapshot(cls, state: dict[str, Any]) -> EWMeanVar:
        from via_otlp.detect.codec import as_array, check_version

        check_version(state, cls.VERSION, "EWMeanVar")
        size = state.get("size")
        out = cls(state["half_life"], size)
        if size is None:
            out.n, out.mean, out.var = float(state["n"]), float(state["mean"]), float(state["var"])
        else:
            out.n, out.mean, out.var = (
                as_array(state[k], np.float64) for k in ("n", "mean", "var")
            )
        return out
