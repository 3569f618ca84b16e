"""The exact tail tests over arrays (`tails.count_tails`, `windows.level_wander_tails`) give the
scalar tails' values to the bit, and a close computes them in a few array calls, however many
patterns are candidates (#10: a x4 surge of 2,000 warm patterns, 469 ms a close with a scalar
tail per candidate, 16 for each against a level the wander set)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from via_otlp.detect import tails
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import _LEVEL_NODES, _LEVEL_WEIGHTS, level_wander_tails
from via_otlp.model import Source

# The scalar tails as they were before the arrays (Numerical Recipes' series and continued
# fractions, one element at a time): what the arrays must reproduce.


def _ref_front(a: float, x: float) -> float:
    return math.exp(-x + a * math.log(x) - math.lgamma(a))


def _ref_gamma(a: float, x: float, lower: bool) -> float:
    if x <= 0:
        return 0.0 if lower else 1.0
    if x < a + 1.0:
        ap, s, term = a, 1.0 / a, 1.0 / a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            s += term
            if abs(term) < abs(s) * 1e-15:
                break
        p = s * _ref_front(a, x)
        return p if lower else 1.0 - p
    b, c, d = x + 1.0 - a, 1.0 / 1e-300, 1.0 / (x + 1.0 - a)
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    q = _ref_front(a, x) * h
    return 1.0 - q if lower else q


def _ref_cf(a: float, b: float, x: float) -> float:
    def off(v: float) -> float:
        return 1e-300 if abs(v) < 1e-300 else v

    c, d = 1.0, 1.0 / off(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 10_000):
        for aa in (
            m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m)),
        ):
            d = 1.0 / off(1.0 + aa * d)
            c = off(1.0 + aa / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _ref_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    lbt += b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _ref_cf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _ref_cf(b, a, 1.0 - x) / b


def _ref_tail(k: float, mean: float, var: float, upper: bool) -> float:
    if (k <= 0) if upper else (k < 0):
        return 1.0 if upper else 0.0
    if mean == 0:
        return 0.0 if upper else 1.0
    if var <= mean * (1.0 + 1e-9):
        return _ref_gamma(k, mean, True) if upper else _ref_gamma(k + 1.0, mean, False)
    r = mean * mean / (var - mean)
    p = r / (r + mean)
    return _ref_beta(k, r, 1.0 - p) if upper else _ref_beta(r, k + 1.0, p)


def _ref_level(k: float, e: float, var: float, v: float) -> float:
    if v <= 0.0:
        return _ref_tail(k, e, var, True)
    sig, out = math.sqrt(math.log1p(v)), 0.0
    for z, w in zip(_LEVEL_NODES.tolist(), _LEVEL_WEIGHTS.tolist(), strict=True):
        m = e * math.exp(sig * z + 0.5 * sig * sig)
        out += w * _ref_tail(k, m, max(var * m / e, m + v * m * m), True)
    return min(out, 1.0)


def _cases(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Counts from far below to far above their means (1e-3 to 3e4), Poisson (variance at or
    under the mean) or overdispersed up to 200x, with edge cases: counts 0 and -1, means and
    variances 0."""
    rng = np.random.default_rng(seed)
    mean = np.exp(rng.uniform(math.log(1e-3), math.log(3e4), n))
    over = np.exp(rng.uniform(0.0, math.log(200.0), n))
    var = mean * np.where(rng.random(n) < 0.3, rng.uniform(0.2, 1.0, n), over)
    k = np.floor(mean * np.exp(rng.normal(0.0, 1.5, n)))
    k[:20], k[20:30], mean[30:45], var[45:60] = 0.0, -1.0, 0.0, 0.0
    return k, mean, var


@pytest.mark.parametrize("n", [5, 3000])  # (a few elements run as floats, many on arrays)
def test_array_tails_are_the_scalar_tails_to_the_bit(n: int) -> None:
    """Both tails over 3,000 cases, far tails included (p down to 1e-300 and below: the scores
    are -log p, so a tiny p keeps its relative accuracy), and a few."""
    k, mean, var = _cases(n, 5)
    for upper in (True, False):
        got = tails.count_tails(k, mean, var, upper).tolist()
        want = [
            _ref_tail(*x, upper) for x in zip(k.tolist(), mean.tolist(), var.tolist(), strict=True)
        ]
        assert got == want
        assert n < 3000 or min(p for p in want if p > 0) < 1e-300


def test_level_wander_tails_are_the_scalar_mixture_to_the_bit() -> None:
    """`level_wander_tails` of 300 counts (a fifth without a spread) against the mixture of
    16 scalar tails each."""
    k, mean, var = (x[60:360] for x in _cases(360, 7))
    v = np.where(np.arange(300) % 5 == 0, 0.0, np.exp(np.linspace(-9.0, 1.0, 300)))
    e, var = mean + 1e-3, np.maximum(var, mean + 1e-3)
    got = level_wander_tails(k, e, var, v).tolist()
    want = [
        _ref_level(*x) for x in zip(k.tolist(), e.tolist(), var.tolist(), v.tolist(), strict=True)
    ]
    assert got == want


def test_a_surge_close_makes_a_few_array_tail_calls_whatever_its_candidates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100 patterns of 5 services at Poisson 3 a bucket for 2 hours (the lags ready: every
    spike test runs, the three against a level with 16 nodes each), then x4: every pattern is
    a candidate of the one-bucket and window spike tests. A close computes its tails in at
    most one incomplete beta and one incomplete gamma call a kind (spike, drop), not one (or
    16) a candidate: the scalar tails made ~1,000 calls a surge close here."""
    table, n = ProfileTable(DetectConfig(warmup=60)), 100
    sources = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(5)]
    for i in range(n):
        table.add(f"{i:016x}", sources[i % 5], f"t{i}", f"template {i}", "INFO", 0, 0)
    rng, zeros = np.random.default_rng(1), np.zeros(table.capacity)

    def bucket(rate: float) -> np.ndarray:
        return np.pad(rng.poisson(rate, n).astype(np.float64), (0, table.capacity - n))

    for b in range(720):
        table.close(b, bucket(3.0), zeros)
    names = ("betainc", "gammainc", "gammainc_lower", "gammainc_upper")
    calls = dict.fromkeys(names, 0)
    real = {f: getattr(tails, f) for f in names if hasattr(tails, f)}

    def counted(f: str) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            calls[f] += 1
            return real[f](*args, **kw)

        return call

    for f in real:
        monkeypatch.setattr(tails, f, counted(f))
    spikes = sum(len(table.close(b, bucket(12.0), zeros).alarms) for b in range(720, 723))
    assert spikes > 50  # (the surge is judged: most patterns alarm)
    assert sum(calls.values()) <= 3 * 4
