"""Tail probabilities of counts: Poisson, or negative binomial where the baseline is overdispersed.

Log counts are small integers, not Gaussians: a template that usually logs 0–1 times a bucket
is judged by ``P(X >= 2)`` under its baseline, which is not small, so it does not alarm.
`count_tail` picks the distribution from the baseline's mean and variance: Poisson when the
variance is not above the mean, else the negative binomial with that mean and variance.

Exact (to ~1e-14 relative) through the regularised incomplete gamma and beta functions
(Numerical Recipes' series and continued fractions); no scipy. Computed over arrays
(`count_tails`: a close judges all its candidates in one call, and in a surge every pattern is
one), each element's iteration stopping at its own convergence as the scalar loop did, to the
same bits; the scalar functions are its one-element calls.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000
_FEW = 32  # (elements iterated as Python floats rather than arrays: `_until_converged`)

Step = Callable[..., tuple[tuple[np.ndarray, ...], np.ndarray]]
Num = TypeVar("Num", float, np.ndarray)


def math_of(f: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """`f` (one of `math`'s) of each element of `x`: the same values as the scalar calls, where
    numpy's own exp and log1p differ from them in the last bit for a few percent of inputs (the
    array tails agree with the scalar ones to the bit)."""
    return np.fromiter(map(f, x.tolist()), np.float64, len(x))


def _until_converged(step: Step, state: tuple[np.ndarray, ...], first: int) -> np.ndarray:
    """Iterate ``state, done = step(i, *state)`` for i = `first`, `first` + 1, ... below
    `_MAX_ITER` on the elements not yet done, and return each element's ``state[0]`` as it was
    at the step that found it done (or at the last step): element by element, the scalar loop
    that breaks at its own convergence, on arrays (the done ones leave the arrays); for a few
    elements on each one's Python floats (`step` takes either), where numpy's cost a call
    (~1 us an operation, ~50 an iteration) is more than the scalar loop's for all of them."""
    out = np.empty(len(state[0]))
    if len(out) <= _FEW:
        for j, one in enumerate(zip(*(s.tolist() for s in state), strict=True)):
            for i in range(first, _MAX_ITER):
                one, done = step(i, *one)
                if done:
                    break
            out[j] = one[0]
        return out
    idx = np.arange(len(state[0]))
    for i in range(first, _MAX_ITER):
        state, done = step(i, *state)
        if done.any():
            out[idx[done]] = state[0][done]
            left = ~done
            idx = idx[left]
            state = tuple(s[left] for s in state)
            if not len(idx):
                return out
    out[idx] = state[0]
    return out


def _tiny_off(v: Num) -> Num:
    """`_TINY` where `v` is closer to 0 than it (Lentz's guard against a zero denominator)."""
    if isinstance(v, float):
        return _TINY if abs(v) < _TINY else v
    return np.where(abs(v) < _TINY, _TINY, v)


def _gamma_front(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x^a·e^(-x) / Γ(a)``, the factor before the incomplete gamma's series and fraction."""
    return math_of(math.exp, -x + a * math_of(math.log, x) - math_of(math.lgamma, a))


def _series_step(
    _: int, s: np.ndarray, ap: np.ndarray, term: np.ndarray, x: np.ndarray
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    ap = ap + 1.0
    term = term * (x / ap)
    s = s + term
    return (s, ap, term, x), abs(term) < abs(s) * _EPS


def _gamma_series(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Lower regularised gamma P(a, x) by its series (good for x < a + 1)."""
    s = 1.0 / a
    # (The loop's first term is the series' second: Numerical Recipes counts from 0.)
    return _until_converged(_series_step, (s, a, s, x), 0) * _gamma_front(a, x)


def _gamma_cf_step(
    i: int, h: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    an = -i * (i - a)
    b = b + 2.0
    d = _tiny_off(an * d + b)
    c = _tiny_off(b + an / c)
    d = 1.0 / d
    delta = d * c
    h = h * delta
    return (h, a, b, c, d), abs(delta - 1.0) < _EPS


def _gamma_cf(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Upper regularised gamma Q(a, x) by its continued fraction (good for x >= a + 1)."""
    b = x + 1.0 - a
    d = 1.0 / b
    c = np.full(len(a), 1.0 / _TINY)
    return _gamma_front(a, x) * _until_converged(_gamma_cf_step, (d, a, b, c, d), 1)


def gammainc(a: np.ndarray, x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Regularised incomplete gamma of arrays: P(a, x) where `lower`, else Q(a, x) = 1 - P."""
    out = np.where(lower, 0.0, 1.0)  # (x <= 0)
    ser = (x > 0) & (x < a + 1.0)
    frac = (x > 0) & ~ser
    if ser.any():
        p = _gamma_series(a[ser], x[ser])
        out[ser] = np.where(lower[ser], p, 1.0 - p)
    if frac.any():
        q = _gamma_cf(a[frac], x[frac])
        out[frac] = np.where(lower[frac], 1.0 - q, q)
    return out


def _beta_cf_step(
    m: int, h: np.ndarray, a: np.ndarray, b: np.ndarray, x: np.ndarray, c: np.ndarray,
    d: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:  # fmt: skip
    m2 = 2 * m
    am2 = a + m2
    aa = m * (b - m) * x / ((a - 1.0 + m2) * am2)
    d = 1.0 / _tiny_off(1.0 + aa * d)
    c = _tiny_off(1.0 + aa / c)
    h = h * (d * c)
    aa = -(a + m) * (a + b + m) * x / (am2 * (a + 1.0 + m2))
    d = 1.0 / _tiny_off(1.0 + aa * d)
    c = _tiny_off(1.0 + aa / c)
    delta = d * c
    h = h * delta
    return (h, a, b, x, c, d), abs(delta - 1.0) < _EPS


def betainc(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Regularised incomplete beta I_x(a, b) of arrays, by its continued fraction at x or,
    beyond the mean, at 1 - x for the complement (Numerical Recipes)."""
    out = np.where(x <= 0.0, 0.0, 1.0)  # (x <= 0, x >= 1)
    inner = (x > 0.0) & (x < 1.0)
    if not inner.any():
        return out
    a, b, x = a[inner], b[inner], x[inner]
    lbt = (
        math_of(math.lgamma, a + b) - math_of(math.lgamma, a) - math_of(math.lgamma, b)
        + a * math_of(math.log, x) + b * math_of(math.log1p, -x)
    )  # fmt: skip
    near = x < (a + 1.0) / (a + b + 2.0)
    a2, b2, x2 = np.where(near, a, b), np.where(near, b, a), np.where(near, x, 1.0 - x)
    d = 1.0 / _tiny_off(1.0 - (a2 + b2) * x2 / (a2 + 1.0))
    c = np.ones(len(a2))
    front = math_of(math.exp, lbt) * _until_converged(_beta_cf_step, (d, a2, b2, x2, c, d), 1)
    out[inner] = np.where(near, front / a, 1.0 - front / b)
    return out


def _checked(mean: np.ndarray) -> None:
    if not np.all((mean >= 0) & np.isfinite(mean)):
        bad = mean[~((mean >= 0) & np.isfinite(mean))][0]
        raise ValueError(f"mean: must be a finite number >= 0, got {float(bad)!r}")


def _tails(
    k: np.ndarray, mean: np.ndarray, var: np.ndarray | None, upper: np.ndarray
) -> np.ndarray:
    """``P(X >= k)`` where `upper`, else ``P(X <= k)``: Poisson(mean) where `var` is None, else
    the negative binomial with that mean and variance (var > mean)."""
    _checked(mean)
    # (A count below 0 is never, one of 0 or more always, at least 0; a mean of 0 gives 0.)
    out = np.where(upper, k <= 0, (k >= 0) & (mean == 0)).astype(np.float64)
    rest = np.where(upper, k > 0, k >= 0) & (mean != 0)
    if not rest.any():
        return out
    k, m, up = k[rest], mean[rest], upper[rest]
    if var is None:  # P(X >= k) = P(k, mean); P(X <= k) = Q(k + 1, mean)
        out[rest] = gammainc(np.where(up, k, k + 1.0), m, up)
        return out
    r = nbinom_size(m, var[rest])
    p = r / (r + m)  # success probability; P(X <= k-1) = I_p(r, k)
    out[rest] = betainc(np.where(up, k, r), np.where(up, r, k + 1.0), np.where(up, 1.0 - p, p))
    return out


def _one(k: float, mean: float, var: float | None, upper: bool) -> float:
    v = None if var is None else np.array([var], np.float64)
    return float(_tails(np.array([k], np.float64), np.array([mean], np.float64), v,
                        np.array([upper]))[0])  # fmt: skip


def gammainc_lower(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x)."""
    return float(gammainc(np.array([a]), np.array([x]), np.array([True]))[0])


def gammainc_upper(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = 1 - P(a, x)."""
    return float(gammainc(np.array([a]), np.array([x]), np.array([False]))[0])


def poisson_sf(k: int, mean: float) -> float:
    """``P(X >= k)`` for X ~ Poisson(mean)."""
    return _one(k, mean, None, True)


def poisson_cdf(k: int, mean: float) -> float:
    """``P(X <= k)`` for X ~ Poisson(mean)."""
    return _one(k, mean, None, False)


def nbinom_size(mean: Num, var: Num) -> Num:
    """The negative binomial size r with this mean and variance (var = mean + mean²/r)."""
    if np.any(var <= mean):
        raise ValueError(
            f"var: must exceed the mean for a negative binomial, got {var!r} <= {mean!r}"
        )
    return mean * mean / (var - mean)


def nbinom_sf(k: int, mean: float, var: float) -> float:
    """``P(X >= k)`` for the negative binomial with this mean and variance (var > mean)."""
    return _one(k, mean, var, True)


def nbinom_cdf(k: int, mean: float, var: float) -> float:
    """``P(X <= k)`` for the negative binomial with this mean and variance (var > mean)."""
    return _one(k, mean, var, False)


def count_tails(
    k: np.ndarray, mean: np.ndarray, var: np.ndarray, upper: bool | np.ndarray
) -> np.ndarray:
    """`count_tail`'s upper tails ``P(X >= k)`` (`upper`) or lower ``P(X <= k)`` of arrays:
    the same values, element by element, in one pass over the arrays (a close's exact tail
    tests: a surge makes every pattern a candidate).

    >>> k, mean, var = np.array([2.0, 3.0]), np.array([0.5, 1.0]), np.array([0.5, 2.0])
    >>> [round(p, 4) for p in count_tails(k, mean, var, True).tolist()]  # Poisson; geometric
    [0.0902, 0.125]
    """
    k, mean, var = (np.asarray(x, np.float64) for x in (k, mean, var))
    out = np.empty(len(k))
    up = upper if isinstance(upper, np.ndarray) else np.full(len(k), upper)
    pois = var <= mean * (1.0 + 1e-9)
    if pois.any():
        out[pois] = _tails(k[pois], mean[pois], None, up[pois])
    if not pois.all():
        nb = ~pois
        out[nb] = _tails(k[nb], mean[nb], var[nb], up[nb])
    return out


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
    upper, lower = count_tails(np.full(2, k), np.full(2, mean), np.full(2, var), _BOTH).tolist()
    pois = var <= mean * (1.0 + 1e-9)
    return Tail(upper, lower, Distribution.POISSON if pois else Distribution.NEGATIVE_BINOMIAL)


_BOTH = np.array([True, False])
