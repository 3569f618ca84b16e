"""The false-alarm budget is set per day, so it survives a change of bucket (issue #10, class 3)."""

from __future__ import annotations

import pytest

from via_otlp.config import parse_config
from via_otlp.detect.config import MAX_TAIL, MIN_TAIL, DetectConfig
from via_otlp.errors import ConfigError


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


_FIVE = 'bucket: "5m", half_life: "15h", dispersion_half_life: "180h"'


@pytest.mark.parametrize(
    ("keys", "key", "shown"),
    [
        # Underflows to 0 a bucket: the first close took log(0) and crashed.
        ("false_alarms_per_day: 1e-320", "false_alarms_per_day", "1e-320"),
        # Passed `gt=0` and `min(0.25, nan)` is 0.25: a test alarming on a quarter of buckets.
        ('false_alarms_per_day: "nan"', "false_alarms_per_day", "nan"),
        ('false_alarms_per_day: "inf"', "false_alarms_per_day", "inf"),
        # 1e9 a day, or 8000 a day at 10 s (p = 0.93), was capped at 0.25 without a word.
        ("false_alarms_per_day: 1e9", "false_alarms_per_day", "1e9"),
        ("false_alarms_per_day: 8000", "false_alarms_per_day", "8000"),
        (f"{_FIVE}, false_alarms_per_day: 100", "false_alarms_per_day", "100"),
        ('tail_probability: "nan"', "tail_probability", "nan"),
        ("tail_probability: 0.4", "tail_probability", "0.4"),
        ("tail_probability: 1e-320", "tail_probability", "1e-320"),
    ],
)
def test_a_budget_no_bucket_can_use_is_a_config_error(keys: str, key: str, shown: str) -> None:
    """A budget that is not finite, underflows to 0 a bucket or asks for p above MAX_TAIL is
    refused at load with its key, its value and the range allowed at this bucket."""
    with pytest.raises(ConfigError) as err:
        parse_config(f"{{detect: {{{keys}}}}}")
    msg = str(err.value)
    assert err.value.path == f"detect.{key}", msg
    assert f"got {float(shown)!r}" in msg, msg
    assert f"{MIN_TAIL:g}" in msg and f"{MAX_TAIL:g}" in msg, msg


def test_the_largest_budget_a_bucket_allows_is_the_edge_of_the_range() -> None:
    """The bounds the error names are the real ones: 2160 a day at 10 s is p = 0.25 exactly."""
    edge = parse_config("{detect: {false_alarms_per_day: 2160}}")
    assert edge.detect.p_alarm == MAX_TAIL
    with pytest.raises(ConfigError, match=r"from 8\.64e-297 to 2160 at bucket 10s"):
        parse_config("{detect: {false_alarms_per_day: 2161}}")


def test_both_budgets_set_is_a_config_error_unless_the_daily_one_is_the_default() -> None:
    """`tail_probability` would silently replace a budget a day the user also chose; the
    shipped via.json5 spells out the default budget a day, so setting `tail_probability` next
    to that default still works."""
    with pytest.raises(ConfigError, match="set only one") as err:
        parse_config("{detect: {false_alarms_per_day: 0.0864, tail_probability: 1e-4}}")
    assert err.value.path == "detect.tail_probability"
    ok = parse_config("{detect: {false_alarms_per_day: 0.00864, tail_probability: 1e-4}}")
    assert ok.detect.p_alarm == 1e-4
