"""The families' other traffic shapes (`simulate --families --daily-shape business`, `--noise
walk`): a working day's curve and a slow log-rate walk, for checking a detector on traffic it was
not developed on; the ideal test under the walk; the options' checks."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import pytest

from via_otlp.errors import ConfigError
from via_otlp.simulate.cli import add_parser
from via_otlp.simulate.families import (
    _walk_minutes,
    build_case,
    evidence_by_minute,
    window_buckets,
)
from via_otlp.simulate.generate import GenTemplate, seasonal_factor, walk_factors
from via_otlp.simulate.scenario import (
    DailyShape,
    InjectedKind,
    NoiseKind,
    NoiseSpec,
    SeasonalitySpec,
)


def test_a_business_day_has_the_cosines_mean_and_night_and_a_steeper_rise() -> None:
    case = build_case(3, "day1", daily_shape="business")
    cosine = build_case(3, "day1")
    s = case.scenario.seasonality
    assert s.shape is DailyShape.BUSINESS and 8.0 <= s.rise_hour <= 9.0
    assert s.daily == cosine.scenario.seasonality.daily  # the same draw, the same depth
    day = seasonal_factor(case.scenario, case.scenario.buckets)
    cos = seasonal_factor(cosine.scenario, cosine.scenario.buckets)
    assert day.mean() == pytest.approx(1.0, abs=1e-4)
    hour = (np.arange(len(day)) + 0.5) * case.scenario.bucket / 3600.0
    assert day[hour < 4].min() == pytest.approx(1.0 - s.daily, abs=1e-3)
    assert day.min() == pytest.approx(cos.min(), abs=1e-3)
    rise = np.diff(day) / (case.scenario.bucket / 3600.0)  # per hour
    assert rise.max() > 3 * np.diff(cos).max() / (cosine.scenario.bucket / 3600.0)
    assert 8.0 <= hour[np.argmax(rise)] <= 9.0  # steepest in the morning
    lunch = (hour > s.lunch_hour - 2) & (hour < s.lunch_hour + 2)
    assert 12.0 <= hour[lunch][np.argmin(day[lunch])] <= 13.5 or s.lunch_hour < 12.0


def test_the_new_shapes_leave_every_other_draw_as_built() -> None:
    built = build_case(3, "day1")
    for varied in (
        build_case(3, "day1", daily_shape="business"),
        build_case(3, "day1", noise="walk"),
        build_case(3, "day1", 60.0, None, "business", "walk"),
    ):
        assert varied.scenario.sources == built.scenario.sources
        assert varied.labels == built.labels
        assert [a.at for a in varied.scenario.anomalies] == [a.at for a in built.scenario.anomalies]
        assert varied.scenario.noise.shape == built.scenario.noise.shape
    assert build_case(3, "day1", 60.0, None, "cosine", "gamma") == built
    walk = build_case(3, "day1", noise="walk").scenario.noise
    assert walk.kind is NoiseKind.WALK and 1200.0 <= walk.correlation <= 3600.0
    assert walk.walk_var == pytest.approx(math.log1p(1.0 / built.scenario.noise.shape))


def test_the_walk_has_mean_one_its_variance_and_its_correlation_time() -> None:
    """Log-factors of a per-template walk: variance v, autocorrelation e^-1 one correlation
    time apart (30 periods here), `shared` of it common to a service's templates."""
    sc = build_case(1, "day1", noise="walk").scenario
    noise = NoiseSpec(NoiseKind.WALK, shape=10.0, period=60.0, correlation=1800.0, shared=0.5)
    sc = replace(sc, noise=noise, bucket=60.0, duration=40 * 86400.0)
    spec = sc.sources[0].templates[1]
    templates = [GenTemplate(i, "s", 0, spec) for i in range(8)]
    rngs = [np.random.default_rng([9, i]) for i in range(8)]
    f = walk_factors(sc, templates, rngs, 57600)
    assert f.shape == (8, 57600)
    assert f.mean() == pytest.approx(1.0, abs=0.03)
    x = np.log(f)
    v = noise.walk_var
    assert x.var() == pytest.approx(v, rel=0.1)
    xc = x - x.mean(axis=1, keepdims=True)
    acf = float((xc[:, 30:] * xc[:, :-30]).mean() / xc.var())
    assert acf == pytest.approx(math.exp(-1.0), abs=0.05)
    assert float((xc[0] * xc[1]).mean() / xc.var()) == pytest.approx(0.5, abs=0.1)


def test_the_ideal_z_under_the_walk_is_the_log_counts_matched_filter() -> None:
    """The Kalman filter's z² equals sᵀΣ⁻¹s over the minutes before the drop and its own, in log
    counts: Σ = diag(1/λ) + v·φ^|Δperiod|, s the drop's log ratio (0 before it)."""
    sc = build_case(2, "day1", noise="walk").scenario
    a = next(a for a in sc.anomalies if a.kind is InjectedKind.DROP)
    t = next(x for s in sc.sources for x in s.templates if x.name == a.template)
    t = replace(t, rate=0.5)  # 3 a minute
    z = evidence_by_minute(sc, a, t)
    b0, b1 = window_buckets(a, sc.bucket, sc.buckets)
    minutes = len(z)
    b = np.arange(b0, b0 + 6 * minutes)
    lam = t.rate * seasonal_factor(sc, b[-1] + 1)[b0:]
    lam_m = lam.reshape(minutes, 6).sum(axis=1)
    k, rates, periods = _walk_minutes(sc, a, t, b, lam_m)
    assert k == math.ceil(3 * sc.noise.correlation / 60.0)
    lost = np.where(b < b1, lam / a.factor, lam).reshape(minutes, 6).sum(axis=1)
    s = np.concatenate([np.zeros(k), np.log(lost / lam_m)])
    # the Poisson part at its exact information (2·KL), not the delta method's r²λ
    e = np.exp(s)
    info = 2.0 * rates * (s * e - e + 1.0)
    obs = np.where(s == 0, 1.0 / rates, s * s / np.where(s == 0, 1.0, info))
    assert obs[k] > 2.0 / rates[k]  # (a drop of 4-8x: the delta method was 2.7-3.3x hopeful)
    cov = np.diag(obs) + sc.noise.walk_var * sc.noise.walk_phi ** np.abs(
        periods[:, None] - periods[None, :]
    )
    for m in (1, 5, minutes):
        n = k + m
        assert z[m - 1] == pytest.approx(
            math.sqrt(s[:n] @ np.linalg.solve(cov[:n, :n], s[:n])), rel=1e-9
        )
    blind = s[k:] @ np.linalg.solve(cov[k:, k:], s[k:])  # the window's minutes alone
    assert z[-1] > 1.2 * math.sqrt(blind)  # seeing where the walk stood before it helps


def test_the_new_options_are_checked() -> None:
    with pytest.raises(ValueError, match="daily shape must be one of cosine, business"):
        build_case(1, "day1", daily_shape="square")
    with pytest.raises(ValueError, match="noise must be one of gamma, walk"):
        build_case(1, "day1", noise="pink")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--families", "--daily-shape", "business"])
    assert (args.daily_shape, args.noise) == ("business", "gamma")
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--families", "--noise", "brown"])
    bad = SeasonalitySpec(shape=DailyShape.BUSINESS, rise_hour=19.0, fall_hour=9.0)
    with pytest.raises(ConfigError, match="falls after it rises"):
        bad.check()


def test_a_report_says_which_traffic_it_measured() -> None:
    """A families report names the traffic options that differ from the families as built (in
    its first line and its JSON), so two reports of different traffic are not mistaken for one."""
    from via_otlp.simulate.families import FamiliesReport

    built = FamiliesReport(
        traffic={"wander": 60.0, "daily": None, "daily_shape": "cosine", "noise": "gamma"}
    )
    assert built.traffic_text() == ""
    shaped = FamiliesReport(
        traffic={"wander": 900.0, "daily": 0.9, "daily_shape": "business", "noise": "walk"}
    )
    assert shaped.traffic_text() == "--wander 900 --daily 0.9 --daily-shape business --noise walk"
    assert shaped.to_json()["traffic"] == shaped.traffic
    assert shaped.table().splitlines()[0].endswith("; traffic " + shaped.traffic_text())
