"""Each algorithm against closed forms, and property tests (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.detect.trees import roundtrip
from via_otlp.detect.cusum import Cusum
from via_otlp.detect.ewma import EWMeanVar
from via_otlp.detect.hll import HyperLogLog
from via_otlp.detect.tails import (
    count_tail,
    log_p_zero,
    nbinom_cdf,
    nbinom_sf,
    poisson_cdf,
    poisson_sf,
)


def poisson_pmf(k: int, mu: float) -> float:
    return math.exp(k * math.log(mu) - mu - math.lgamma(k + 1))


def nbinom_pmf(k: int, mean: float, var: float) -> float:
    r = mean * mean / (var - mean)
    p = r / (r + mean)
    return math.exp(
        math.lgamma(k + r)
        - math.lgamma(r)
        - math.lgamma(k + 1)
        + r * math.log(p)
        + k * math.log1p(-p)
    )


@given(st.integers(0, 60), st.floats(0.01, 80))
def test_poisson_tails_match_pmf_sums(k: int, mu: float) -> None:
    cdf = math.fsum(poisson_pmf(i, mu) for i in range(k + 1))
    assert poisson_cdf(k, mu) == pytest.approx(cdf, rel=1e-9, abs=1e-300)
    upper = math.fsum(poisson_pmf(i, mu) for i in range(k + 1, k + 400))
    assert poisson_sf(k + 1, mu) == pytest.approx(upper, rel=1e-6, abs=1e-14)


@given(st.integers(0, 60), st.floats(0.05, 50), st.floats(1.01, 20))
def test_nbinom_tails_match_pmf_sums(k: int, mean: float, disp: float) -> None:
    var = mean * disp
    cdf = math.fsum(nbinom_pmf(i, mean, var) for i in range(k + 1))
    assert nbinom_cdf(k, mean, var) == pytest.approx(cdf, rel=1e-8, abs=1e-300)
    upper = math.fsum(nbinom_pmf(i, mean, var) for i in range(k + 1, k + 3000))
    assert nbinom_sf(k + 1, mean, var) == pytest.approx(upper, rel=1e-6, abs=1e-14)


def test_closed_forms() -> None:
    assert poisson_cdf(0, 3.0) == pytest.approx(math.exp(-3.0))
    # r = 1 is geometric: P(X >= k) = (1 - p)^k with p = 1 / (1 + mean).
    assert nbinom_sf(5, mean=3.0, var=12.0) == pytest.approx((3.0 / 4.0) ** 5)
    assert log_p_zero(2.0, 2.0) == -2.0
    assert log_p_zero(3.0, 12.0) == pytest.approx(math.log(0.25))
    # Far tails stay accurate (no 1 - (1 - tiny)).
    assert poisson_sf(48, 2.0) == pytest.approx(
        math.fsum(poisson_pmf(i, 2.0) for i in range(48, 200)), rel=1e-9
    )


def test_small_rates_do_not_alarm_on_two() -> None:
    assert count_tail(2, mean=0.5, var=0.5).upper > 0.05


def test_ewma_warmup_is_the_running_mean_and_variance() -> None:
    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    e = EWMeanVar(half_life=100)
    for x in xs:
        e.update(x)
    assert e.mean == pytest.approx(np.mean(xs))
    assert e.var == pytest.approx(np.var(xs))


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=60), st.floats(0.5, 20))
def test_ewma_after_warmup_is_the_recurrence(xs: list[float], hl: float) -> None:
    lam = 1 - 2 ** (-1 / hl)
    e = EWMeanVar(hl)
    m = v = 0.0
    for i, x in enumerate(xs, 1):
        s = max(lam, 1 / i)
        d = x - m
        m += s * d
        v = (1 - s) * (v + s * d * d)
        e.update(x)
    assert e.mean == pytest.approx(m, abs=1e-9)
    assert e.var == pytest.approx(v, rel=1e-9, abs=1e-9)


def test_ewma_half_life_and_real_variance() -> None:
    e = EWMeanVar(half_life=10)
    for _ in range(2000):
        e.update(0.0)
    for _ in range(10):
        e.update(10.0)
    assert e.mean == pytest.approx(5.0)  # half the way after one half-life
    rng = np.random.default_rng(1)
    e = EWMeanVar(half_life=2000)
    for x in rng.normal(100.0, 3.0, 20_000):
        e.update(float(x))
    assert e.std == pytest.approx(3.0, rel=0.1)  # not a fraction of the mean


def test_ewma_array_equals_scalar() -> None:
    rng = np.random.default_rng(3)
    xs = rng.poisson(4.0, size=(50, 3)).astype(float)
    arr = EWMeanVar(5, 3)
    scal = [EWMeanVar(5) for _ in range(3)]
    for row in xs:
        arr.update(row)
        for j in range(3):
            scal[j].update(float(row[j]))
    assert np.allclose(arr.mean, [s.mean for s in scal])
    assert np.allclose(arr.var, [s.var for s in scal])


def test_cusum_closed_form_detection_time() -> None:
    c = Cusum(slack=0.5, threshold=10.0)
    steps = 0
    while True:
        steps += 1
        up, down = c.update(2.0)  # each step adds 1.5
        if up:
            break
    assert steps == math.floor(10.0 / 1.5) + 1
    assert c.pos == 0.0 and not down
    c2 = Cusum(slack=0.5, threshold=3.0)
    alarms = [c2.update(-2.0)[1] for _ in range(3)]
    assert alarms == [False, False, True] and c2.neg == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 16), st.integers(1, 50_000), st.integers(0, 2**32 - 1))
def test_hll_error_within_bound(precision: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h = HyperLogLog(precision)
    h.add_hashes(rng.integers(0, 2**64, size=n, dtype=np.uint64))
    bound = 1.04 / math.sqrt(2**precision)
    # 4.5σ: a per-example bound. With 16 or 32 registers the estimate's right tail is far
    # heavier than a normal one (precision 4, 468 ids: 0.5 % of streams beyond 4.5σ, the worst
    # of 3,000 at 7.5σ), so the few smallest precisions get 9σ.
    k = 4.5 if precision >= 6 else 9.0
    assert abs(h.cardinality - n) / n <= k * bound + 1e-9


def test_hll_rms_error_over_many_seeds() -> None:
    for precision in (6, 10, 14):
        errs = []
        for seed in range(60):
            rng = np.random.default_rng(seed)
            n = int(rng.integers(100, 200_000))
            h = HyperLogLog(precision)
            h.add_hashes(rng.integers(0, 2**64, size=n, dtype=np.uint64))
            errs.append((h.cardinality - n) / n)
        rmse = math.sqrt(float(np.mean(np.square(errs))))
        assert rmse <= 1.04 / math.sqrt(2**precision) * 1.25, (precision, rmse)


@given(st.lists(st.text(max_size=8), max_size=300), st.lists(st.text(max_size=8), max_size=300))
def test_hll_merge_is_union_and_sparse_equals_dense(a: list[str], b: list[str]) -> None:
    ha, hb, hu = HyperLogLog(8), HyperLogLog(8), HyperLogLog(8)
    ha.update(a)
    hb.update(b)
    hu.update(a + b)
    ha.merge(hb)
    assert np.array_equal(ha.registers(), hu.registers())
    assert ha.cardinality == pytest.approx(hu.cardinality)


def test_hll_sparse_then_dense_and_snapshot() -> None:
    h = HyperLogLog(12)
    h.update(["a", "b", "c"])
    assert h.is_sparse
    s = roundtrip(h.snapshot())
    assert HyperLogLog.from_snapshot(s) == h
    h.update(f"u{i}" for i in range(5000))
    assert not h.is_sparse
    assert HyperLogLog.from_snapshot(roundtrip(h.snapshot())) == h
    with pytest.raises(ValueError, match="version"):
        HyperLogLog.from_snapshot({**s, "version": 99})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EWMeanVar(0), "half_life"),
        (lambda: EWMeanVar(float("nan")), "half_life"),
        (lambda: Cusum(-1, 5), "slack"),
        (lambda: Cusum(0.5, 0), "threshold"),
        (lambda: HyperLogLog(3), "precision"),
        (lambda: HyperLogLog(17), "precision"),
        (lambda: poisson_sf(1, -1.0), "mean"),
        (lambda: nbinom_sf(1, 2.0, 1.0), "var"),
    ],
)
def test_bad_parameters_are_rejected_by_name(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()
