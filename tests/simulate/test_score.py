"""Scoring rules: matching by kind, place and time; tolerance; delay; false episodes per day."""

from __future__ import annotations

import pytest

from via_otlp.model import AnomalyKind
from via_otlp.simulate.generate import TruthWindow
from via_otlp.simulate.scenario import InjectedKind
from via_otlp.simulate.score import Detection, quantile, score

B = 10 * 10**9  # one bucket
T0 = 1_700_000_000 * 10**9
DAY = 86_400 * 10**9
SRC = "shop/api/prod"


def window(kind: InjectedKind, start_b: int, end_b: int, index: int = 0, codes=(0,)) -> TruthWindow:
    return TruthWindow(index, kind, "api", SRC, codes, T0 + start_b * B, T0 + end_b * B, "w")


def det(kind: AnomalyKind, start_b: int, rh: str = "r0", src: str = SRC) -> Detection:
    return Detection(kind, src, rh, T0 + start_b * B, T0 + (start_b + 1) * B)


def run(windows, detections, rhythms=None, tol_b=30, days=1.0):
    return score(
        windows, detections, sources=[SRC], run_start_ns=T0, run_end_ns=T0 + int(days * DAY),
        bucket_ns=B, tolerance_ns=tol_b * B, rhythms_of=rhythms,
    )  # fmt: skip


def test_a_fitting_detection_in_the_window_is_a_hit_with_its_delay() -> None:
    s = run([window(InjectedKind.SPIKE, 100, 130)], [det(AnomalyKind.SPIKE, 101)])
    k = s.by_kind[InjectedKind.SPIKE]
    assert (k.hits, k.misses, k.false_positives) == (1, 0, 0)
    assert k.delays == [2.0]  # the event is at the end of the window's second bucket
    assert k.precision == k.recall == k.f1 == 1.0


def test_kind_must_fit() -> None:
    s = run([window(InjectedKind.SPIKE, 100, 130)], [det(AnomalyKind.DRIFT, 101)])
    assert s.by_kind[InjectedKind.SPIKE].misses == 1
    assert s.by_kind[InjectedKind.DRIFT].false_positives == 1
    s = run([window(InjectedKind.SILENCE, 100, 130)], [det(AnomalyKind.DROP, 105)])
    assert s.by_kind[InjectedKind.SILENCE].hits == 1  # a silence is reported as a drop


def test_tolerance_after_the_window_but_not_before_it() -> None:
    w = [window(InjectedKind.DRIFT, 100, 130)]
    assert run(w, [det(AnomalyKind.DRIFT, 150)], tol_b=30).by_kind[InjectedKind.DRIFT].hits == 1
    assert run(w, [det(AnomalyKind.DRIFT, 161)], tol_b=30).by_kind[InjectedKind.DRIFT].hits == 0
    assert run(w, [det(AnomalyKind.DRIFT, 99)], tol_b=30).by_kind[InjectedKind.DRIFT].hits == 0


def test_template_must_match_when_rhythms_are_known() -> None:
    w = [window(InjectedKind.SPIKE, 100, 130)]
    rhythms = {0: frozenset({"r0"})}
    assert (
        run(w, [det(AnomalyKind.SPIKE, 101, "r9")], rhythms).by_kind[InjectedKind.SPIKE].hits == 0
    )
    assert (
        run(w, [det(AnomalyKind.SPIKE, 101, "r0")], rhythms).by_kind[InjectedKind.SPIKE].hits == 1
    )
    other = det(AnomalyKind.SPIKE, 101, "r0", src="shop/other/prod")
    assert run(w, [other]).by_kind[InjectedKind.SPIKE].hits == 0


def test_several_detections_of_one_window_are_one_hit_and_not_false() -> None:
    w = [window(InjectedKind.SILENCE, 100, 130)]
    ds = [det(AnomalyKind.DROP, 103, "a"), det(AnomalyKind.DROP, 101, "b")]
    k = run(w, ds).by_kind[InjectedKind.SILENCE]
    assert (k.hits, k.matched_detections, k.false_positives) == (1, 2, 0)
    assert k.delays == [2.0]  # the first of them


def test_false_episodes_per_source_day_count_only_quiet_time() -> None:
    w = [window(InjectedKind.SPIKE, 0, 8640 - 30)]  # all but the tolerance: half a day busy
    ds = [det(AnomalyKind.DROP, 9000), det(AnomalyKind.DRIFT, 12000)]
    s = run(w, ds, tol_b=30, days=2.0)
    assert s.quiet_days_by_source[SRC] == pytest.approx(1.0)
    assert s.false_per_source_day()[SRC] == pytest.approx(2.0)


def test_quantile() -> None:
    assert quantile([], 0.5) is None
    assert quantile([1.0, 2.0, 3.0, 10.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 10.0], 0.9) == pytest.approx(7.9)
