"""Tail probabilities of counts: Poisson, or negative binomial where the baseline is overdispersed.

Log counts are small integers, not Gaussians: a template that usually logs 0–1 times a bucket
is judged by ``P(X >= 2)`` under its baseline, which is not small, so it does not alarm.
`count_tail` picks the distribution from the baseline's mean and variance: Poisson when the
variance is not above the mean, else the negative binomial with that mean and variance.

Exact (to ~1e-14 relative) through the regularised incomplete gamma and beta functions
(Numerical Recipes' series and continued fractions); no scipy.

>>> round(poisson_sf(2, 0.5), 4)   # P(X >= 2) for a 0-1 per bucket template
0.0902
>>> round(poisson_cdf(0, 10.0), 8)  # a steady template going silent
4.54e-05
>>> round(nbinom_sf(3, mean=1.0, var=2.0), 4)  # geometric, p = 1/2: (1/2)^3
0.125
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def _gamma_series(a: float, x: float) -> float:
    """Lower regularised gamma P(a, x) by its series (good for x < a + 1)."""
    ap, s, term = a, 1.0 / a, 1.0 / a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        s += term
        if abs(term) < abs(s) * _EPS:
            break
    return s * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_cf(a: float, x: float) -> float:
    """Upper regularised gamma Q(a, x) by its continued fraction (good for x >= a + 1)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def gammainc_lower(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x)."""
    if x <= 0:
        return 0.0
    return _gamma_series(a, x) if x < a + 1.0 else 1.0 - _gamma_cf(a, x)


def gammainc_upper(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = 1 - P(a, x)."""
    if x <= 0:
        return 1.0
    return 1.0 - _gamma_series(a, x) if x < a + 1.0 else _gamma_cf(a, x)


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _beta_cf(b, a, 1.0 - x) / b


def _check(k: int, mean: float) -> None:
    if mean < 0 or not math.isfinite(mean):
        raise ValueError(f"mean: must be a finite number >= 0, got {mean!r}")


def poisson_sf(k: int, mean: float) -> float:
    """``P(X >= k)`` for X ~ Poisson(mean)."""
    _check(k, mean)
    if k <= 0:
        return 1.0
    if mean == 0:
        return 0.0
    return gammainc_lower(float(k), mean)


def poisson_cdf(k: int, mean: float) -> float:
    """``P(X <= k)`` for X ~ Poisson(mean)."""
    _check(k, mean)
    if k < 0:
        return 0.0
    if mean == 0:
        return 1.0
    return gammainc_upper(float(k) + 1.0, mean)


def nbinom_size(mean: float, var: float) -> float:
    """The negative binomial size r with this mean and variance (var = mean + mean²/r)."""
    if var <= mean:
        raise ValueError(
            f"var: must exceed the mean for a negative binomial, got {var!r} <= {mean!r}"
        )
    return mean * mean / (var - mean)


def nbinom_sf(k: int, mean: float, var: float) -> float:
    """``P(X >= k)`` for the negative binomial with this mean and variance (var > mean)."""
    _check(k, mean)
    if k <= 0:
        return 1.0
    if mean == 0:
        return 0.0
    r = nbinom_size(mean, var)
    p = r / (r + mean)  # success probability; P(X <= k-1) = I_p(r, k)
    return betainc(float(k), r, 1.0 - p)


def nbinom_cdf(k: int, mean: float, var: float) -> float:
    """``P(X <= k)`` for the negative binomial with this mean and variance (var > mean)."""
    _check(k, mean)
    if k < 0:
        return 0.0
    if mean == 0:
        return 1.0
    r = nbinom_size(mean, var)
    return betainc(r, float(k) + 1.0, r / (r + mean))


def log_p_zero(mean: float, var: float) -> float:
    """``log P(X = 0)``: Poisson ``-mean``, negative binomial ``-r·log1p(mean/r)``."""
    if var <= mean * (1.0 + 1e-9):
        return -mean
    r = nbinom_size(mean, var)
    return -r * math.log1p(mean / r)


class Distribution(enum.Enum):
    """Which count model a tail probability was computed under."""

    POISSON = "poisson"
    NEGATIVE_BINOMIAL = "negative_binomial"


@dataclass(frozen=True, slots=True)
class Tail:
    """Both tails of an observed count under a baseline: ``P(X >= k)`` and ``P(X <= k)``."""

    upper: float
    lower: float
    distribution: Distribution


def count_tail(k: int, mean: float, var: float) -> Tail:
    """Tails of count `k` under Poisson(mean), or NB(mean, var) when var exceeds the mean.

    >>> t = count_tail(48, mean=2.0, var=1.0)
    >>> t.distribution.value, t.upper < 1e-30
    ('poisson', True)
    """
    if var <= mean * (1.0 + 1e-9):
        return Tail(poisson_sf(k, mean), poisson_cdf(k, mean), Distribution.POISSON)
    return Tail(nbinom_sf(k, mean, var), nbinom_cdf(k, mean, var), Distribution.NEGATIVE_BINOMIAL)
