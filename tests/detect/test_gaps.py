"""Gaps in event time: skipped in one step (bounded work), not judged or learnt as silence."""

from __future__ import annotations

import copy
import functools
from dataclasses import replace

import numpy as np

from tests.detect.test_engine import BUCKET, CFG, batch, run
from via_otlp.detect import Engine
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.detect.windows import HALF, MEAN_LEN, WindowState, tail_dispersion_at
from via_otlp.model import AnomalyKind, Source
from via_otlp.state import decode_tree, encode_tree

HOUR = 360  # buckets of 10 s


def _learned(config: DetectConfig = CFG, profiles: int = 50) -> Engine:
    """An engine that learnt `profiles` steady patterns over two hours (buckets 0 .. 719): a
    deep copy of the one run for these arguments (each test has its own engine; the same two
    hours are not run again for every test)."""
    return copy.deepcopy(_learned_once(config, profiles))


@functools.cache
def _learned_once(config: DetectConfig, profiles: int) -> Engine:
    eng = Engine(config)
    for b in range(2 * HOUR):
        rows = [(f"p{i}", b * BUCKET + 1 + i) for i in range(profiles) for _ in range(3)]
        eng.observe(batch(rows))
    return eng


def test_a_day_long_gap_costs_a_few_bucket_closes_not_eight_thousand() -> None:
    eng = _learned()
    before = eng.stats()
    means = {p.rhythm_hash: p.baseline_mean for p in eng.profiles()}
    back = 2 * HOUR + 24 * HOUR * 6  # 24 h later (a day has 8,640 buckets)
    events = eng.observe(batch([(f"p{i}", back * BUCKET + 1 + i) for i in range(50)]))
    after = eng.stats()
    # The work is bounded in bucket closes: the buckets before the gap that the lateness held,
    # none inside it.
    assert after.buckets_closed - before.buckets_closed <= 3
    assert after.buckets_skipped >= 24 * HOUR - 3
    # Nothing was judged in the gap: no silence or drop, and the baselines are what they were.
    assert not [e for e in events if e.kind in (AnomalyKind.DROP,)]
    assert {p.rhythm_hash: p.baseline_mean for p in eng.profiles()} == means


def test_the_same_traffic_after_the_gap_is_not_an_anomaly() -> None:
    eng = _learned()
    back = 2 * HOUR + 6 * HOUR
    events = run(eng, [
        batch([(f"p{i}", b * BUCKET + 1 + i) for i in range(50) for _ in range(3)])
        for b in range(back, back + 60)
    ])  # fmt: skip
    assert events == []


def test_a_shorter_silence_is_still_closed_bucket_by_bucket_and_judged() -> None:
    eng = _learned(profiles=5)
    before = eng.stats().buckets_closed
    back = 2 * HOUR + 30 * 6  # 30 minutes: under max_gap (1 h)
    events = eng.observe(batch([(f"p{i}", back * BUCKET + 1 + i) for i in range(5)]))
    assert eng.stats().buckets_closed - before >= 30 * 6 - 2
    assert eng.stats().buckets_skipped == 0
    assert {e.kind for e in events} & {AnomalyKind.DROP}


def test_profiles_idle_past_their_ttl_are_evicted_at_the_gap() -> None:
    eng = _learned(replace(CFG, idle_ttl=6 * 3600.0), profiles=5)
    back = 2 * HOUR + 8 * HOUR
    eng.observe(batch([("fresh", back * BUCKET + 1)]))
    assert eng.stats().evictions_idle == 5
    assert {p.rhythm_hash for p in eng.profiles()} == {"fresh"}


def test_max_gap_zero_closes_every_bucket() -> None:
    eng = _learned(replace(CFG, max_gap=0.0), profiles=2)
    before = eng.stats().buckets_closed
    back = 2 * HOUR + 2 * HOUR
    eng.observe(batch([("p0", back * BUCKET + 1)]))
    assert eng.stats().buckets_closed - before >= 2 * HOUR - 2
    assert eng.stats().buckets_skipped == 0


def test_a_tick_after_a_restart_skips_the_downtime_in_one_call() -> None:
    eng = _learned(profiles=5)
    before = eng.stats().buckets_closed
    now = (2 * HOUR + 12 * HOUR) * BUCKET
    eng.tick(now, max_buckets=100)
    assert eng.stats().buckets_skipped >= 12 * HOUR - 5
    assert eng.stats().buckets_closed - before <= 100


def test_a_window_after_a_gap_is_judged_at_the_length_it_holds() -> None:
    """A gap empties the half-blocks it skips (`WindowState.begin`), so the windows just after
    it hold only the buckets since (and, across a short gap, what their previous half-block had
    before it). `lengths` counted the previous half-block as full all the same: the first
    bucket after a gap, alone in its windows, was taken for windows of 4, 16 and 76 buckets
    at a quarter to a 68th of the rate, so its wander was scaled almost away
    (`tail_dispersion_at`). Counted from the buckets begun, each window's length is what it
    sums (one expected record a bucket here) from a new table's first bucket on, through a gap
    longer than every half-block and one shorter than the longest, and a bucket at the rate
    learnt is judged with the wander learnt at that rate."""
    win = WindowState(1)
    one = np.ones(1)
    for b in [*range(200), *range(1200, 1300), *range(1320, 1400)]:  # gaps of 1000 and 20
        win.begin(b)
        _, e = win.sums(one, one)
        assert win.lengths().tolist() == e[0].tolist(), (b, win.lengths(), e)
        if b == 1200:  # alone in its windows
            disp = np.full((1, len(HALF)), 3.0)
            at = MEAN_LEN[None, :]  # (learnt at one record a bucket)
            phi = tail_dispersion_at(disp, at, np.array([1e9]), 2160.0, e, win.lengths(), one)
            assert phi.round(2).tolist() == [[3.19, 3.42, 3.72]]  # (old: 1.69, 1.54, 1.75)
        win.add(one, one)


def test_a_table_restored_or_taken_in_the_windows_after_a_gap_judges_them_at_their_length() -> None:
    """The buckets each half-block holds after a gap (`WindowState.filled`) go with the table's
    half-block clock into a snapshot and a `take`: a table restored from it, or a new one the
    profiles were `put` into, judged the windows after the gap as full (a replay split there by
    snapshot and restore was not the uninterrupted one, `test_engine`'s determinism rule)."""
    src = Source.from_attributes((("service.name", "gap"),))
    table = ProfileTable(DetectConfig())
    table.add("0" * 16, src, "t", "t", "INFO", 0, 0)
    counts, zeros = np.zeros(table.capacity), np.zeros(table.capacity)
    counts[0] = 5.0
    for b in [*range(100), *range(1000, 1010)]:  # after the gap, 10 buckets in the windows
        table.close(b, counts, zeros)
    full = [h + 1010 % h + 1 for h in HALF]  # (as a table that did not count takes them)
    restored = ProfileTable(DetectConfig())
    restored.restore(decode_tree(encode_tree(table.snapshot())))
    fresh = ProfileTable(DetectConfig())
    fresh.put(decode_tree(encode_tree(table.take([0]))))
    table.win.begin(1010)
    want = table.win.lengths().tolist()
    assert want[1:] == [11.0, 11.0] and want != full
    for other in (restored, fresh):
        other.win.begin(1010)
        assert other.win.lengths().tolist() == want  # (old: 21 and 66 buckets)
    # A snapshot from before the count (no `windows_filled`) still takes them as full.
    state = table.snapshot()
    del state["windows_filled"]
    old = ProfileTable(DetectConfig())
    old.restore(state)
    old.win.begin(1011)
    assert old.win.lengths().tolist() == [h + 1011 % h + 1 for h in HALF]
