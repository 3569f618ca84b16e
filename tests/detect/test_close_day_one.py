"""Once no profile is on its first day, closing a bucket skips the day-one drift tests (the
CUSUM on an untrended level, the comparison with sibling patterns): the same verdicts and state
as when they run, without their work (a tenth of a close with few profiles)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.detect.trees import dumps
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable, Verdict
from via_otlp.model import Source

DAY = 288  # 5-minute buckets
SIBLINGS = Source.from_attributes((("service.name", "siblings"),))
NEWCOMER = Source.from_attributes((("service.name", "newcomer"),))


def _table(cfg: DetectConfig, k: int) -> ProfileTable:
    table = ProfileTable(cfg)
    for i in range(k):
        assert table.add(f"{i:016x}", SIBLINGS, f"t{i}", f"template {i}", "INFO", 0, 0) == i
    return table


def _same(a: Verdict, b: Verdict, k: int) -> bool:
    """The verdicts agree on the first `k` slots."""
    arrays = [(a.counts, b.counts), (a.distinct, b.distinct), (a.mean, b.mean), (a.std, b.std)]
    arrays += [(a.settled[kind], b.settled[kind]) for kind in a.settled]
    return all(x[:k].tobytes() == y[:k].tobytes() for x, y in arrays) and [
        x for x in a.alarms if x.slot < k
    ] == [x for x in b.alarms if x.slot < k]


def test_after_day_one_close_skips_the_day_one_tests_with_the_same_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = DetectConfig(bucket=300.0, allowed_lateness=300.0, warmup=3600.0)
    k, n = 5, 2 * DAY - 20
    rng = np.random.default_rng(3)
    rates = np.array([4.0, 8.0, 16.0, 30.0, 60.0])
    shape = np.ones((n, k))
    shape[150:, 0] = np.linspace(1.0, 3.0, n - 150)  # a sibling drifts up from day one on,
    shape[400:, 2] = 0.0  # another falls silent and a third bursts after it
    shape[450:453, 3] = 5.0
    counts = rng.poisson(rates * shape).astype(np.float64)
    alone, beside = _table(cfg, k), _table(cfg, k)
    calls = {"alone": 0}
    day_one_tests = ProfileTable._sibling_z

    def counted(self: ProfileTable, *args: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if self is alone and bucket > DAY:
            calls["alone"] += 1
        return day_one_tests(self, *args, **kwargs)

    monkeypatch.setattr(ProfileTable, "_sibling_z", counted)
    row, zeros = np.zeros(alone.capacity), np.zeros(alone.capacity)
    for bucket in range(n):
        if bucket == 200:  # a pattern on its first day until bucket 576: the tests run
            assert beside.add(f"{k:016x}", NEWCOMER, "t", "new", "INFO", 0, bucket) == k
        row[:k] = counts[bucket]
        row[k] = 20.0
        v_alone = alone.close(bucket, row, zeros)
        assert _same(v_alone, beside.close(bucket, row, zeros), k), bucket
    assert calls["alone"] == 0  # (the newcomer's table ran them in every one of those closes)
    assert dumps(alone.take(list(range(k)))) == dumps(beside.take(list(range(k))))
