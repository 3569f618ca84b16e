"""The peak of normal buckets is kept deseasonalised: a spike at a quiet hour is measured
against the highs of the whole day relative to their hours, not against the busy hours' raw
counts, which it may never reach however far above its own hour it is (a single-bucket spike
must exceed the peak)."""

from __future__ import annotations

from tests.detect.test_bucket_dispersion import quiet_hour_profile


def test_the_peak_is_learnt_deseasonalised() -> None:
    table, slot = quiet_hour_profile(6.0, 300, 5)
    # The highest normal bucket was about 15 records, 50 once divided by the hour's 0.3.
    assert 35.0 < float(table.peak[slot]) < 70.0
