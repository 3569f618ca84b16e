"""The false-alarm budget is set per day, so it survives a change of bucket (issue #10, class 3)."""

from __future__ import annotations

from via_otlp.config import parse_config
from via_otlp.detect.config import DetectConfig


def test_the_budget_a_day_gives_the_same_false_alarms_a_day_at_any_bucket() -> None:
    """The default (0.00864 a day) is the old 1e-6 a 10 s bucket exactly, and 3e-5 a 5-minute
    one, the hand-scaled value the count-series config used to carry; a per-bucket
    `tail_probability` (the older key, still read) replaces it whatever the bucket."""
    assert DetectConfig().p_alarm == 1e-6
    five = parse_config('{detect: {bucket: "5m", half_life: "15h", dispersion_half_life: "180h"}}')
    assert abs(five.detect.p_alarm - 3e-5) < 1e-18
    old = parse_config('{detect: {bucket: "5m", half_life: "15h", dispersion_half_life: "180h", '
                       "tail_probability: 1e-4}}")  # fmt: skip
    assert old.detect.p_alarm == 1e-4
    day = parse_config("{detect: {false_alarms_per_day: 0.0864}}")
    assert abs(day.detect.p_alarm * 8640 - 0.0864) < 1e-15
