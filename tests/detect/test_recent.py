"""Recent buckets of a profile (the ring GetProfile shows), and the engine's grouped intake:
trace id samples folded late, profiles of the batch never evicted for newcomers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.detect.test_engine import BUCKET, CFG, S, batch, kinds, mixed_stream, run, steady
from tests.detect.trees import dumps, roundtrip
from via_otlp.detect import Engine, RecentBucket
from via_otlp.detect import engine as engine_module
from via_otlp.detect.profile import RECENT


def counts_of(batches: list) -> list[int]:
    return [len(b) for b in batches]


def test_recent_buckets_are_the_last_closed_ones_oldest_first() -> None:
    eng = Engine(CFG)
    bs = steady("a" * 16, 4, 0, 100)
    run(eng, bs, flush=False)
    end = eng.stats().buckets_closed  # buckets 0 .. end-1 closed, the rest wait for the watermark
    assert end == 98
    recent = eng.recent_buckets("a" * 16)
    assert recent is not None and len(recent) == RECENT
    assert [r.start_ns for r in recent] == [b * BUCKET for b in range(end - RECENT, end)]
    assert [r.count for r in recent] == counts_of(bs)[end - RECENT : end]
    assert all(isinstance(r, RecentBucket) and r.distinct == 0 for r in recent)
    p = eng.profile("a" * 16)
    assert p is not None and all(2 < r.expected < 6 for r in recent)
    # the expected count of the last closed bucket is the baseline before it learnt from it
    assert recent[-1].expected != pytest.approx(p.baseline_mean, rel=1e-12)
    assert eng.recent_buckets("nope") is None


def test_a_new_profile_has_no_buckets_from_before_it_and_distinct_ids_are_kept() -> None:
    eng = Engine(CFG)
    run(eng, steady("a" * 16, 2, 0, 30), flush=False)
    ids = batch([("b" * 16, 30 * BUCKET + i, "INFO", f"user{i % 7}") for i in range(20)])
    run(eng, [ids, *steady("a" * 16, 2, 31, 40)])
    recent = eng.recent_buckets("b" * 16)
    assert recent is not None and recent[0].start_ns == 30 * BUCKET
    assert (recent[0].count, recent[0].distinct) == (20, 7)
    assert [r.count for r in recent[1:]] == [0] * (len(recent) - 1)
    assert len(recent) == 10  # 30..39, the last closed by flush (partial)


def test_recent_buckets_survive_a_snapshot() -> None:
    eng = Engine(CFG)
    bs = steady("a" * 16, 3, 0, 80)
    run(eng, bs[:50], flush=False)
    state = roundtrip(eng.snapshot())
    assert state["version"] == Engine.VERSION
    again = Engine(CFG)
    again.restore(state)
    assert again.recent_buckets("a" * 16) == eng.recent_buckets("a" * 16)
    run(again, bs[50:], flush=False)
    run(eng, bs[50:], flush=False)
    assert again.recent_buckets("a" * 16) == eng.recent_buckets("a" * 16)


def test_recent_buckets_of_a_reused_slot_start_empty() -> None:
    eng = Engine(replace(CFG, idle_ttl=100))
    run(eng, steady("a" * 16, 3, 0, 20), flush=False)
    run(eng, steady("b" * 16, 3, 20, 40), flush=False)  # "a" idles out, "b" may take its slot
    assert eng.profile("a" * 16) is None
    recent = eng.recent_buckets("b" * 16)
    assert recent is not None and recent[0].start_ns == 20 * BUCKET
    assert eng.snapshot()["table"]["columns"]["recent_count"] is not None


def test_a_batch_of_newcomers_never_evicts_profiles_of_the_same_batch() -> None:
    eng = Engine(replace(CFG, max_profiles=4))
    eng.observe(batch([(f"{i:016x}", i) for i in range(4)]))
    # two known patterns and five new ones: room for only two newcomers (the two idle ones go)
    eng.observe(batch([(f"{i:016x}", S + i) for i in (0, 1, 10, 11, 12, 13, 14)]))
    eng.flush()
    st = eng.stats()
    assert st.profiles == 4 and st.evictions_capacity == 2 and st.dropped_records == 3
    for known in ("0" * 16, f"{1:016x}"):
        p = eng.profile(known)
        assert p is not None and p.total_count == 2 and p.template == f"pattern {known} <*>"


def test_templates_are_refreshed_from_the_first_record_of_each_profile() -> None:
    eng = Engine(CFG)
    eng.observe(batch([("a" * 16, 1)]))
    b2 = batch([("a" * 16, 2 * S), ("a" * 16, 3 * S), ("a" * 16, 12 * S)])
    b2.template[:] = ["first <*> <*>", "second", "third"]
    eng.observe(b2)
    p = eng.profile("a" * 16)
    assert p is not None and p.template == "first <*> <*>"


def test_samples_folded_late_equal_samples_folded_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = Engine(CFG)
    want = run(whole, mixed_stream())
    monkeypatch.setattr(engine_module, "_FOLD_AT", 3)  # fold after every few candidates
    eager = Engine(CFG)
    got = run(eager, mixed_stream())
    assert repr(got) == repr(want)
    assert dumps(eager.snapshot()) == dumps(whole.snapshot())


def test_trace_samples_of_an_evicted_profile_do_not_pass_to_its_slot() -> None:
    eng = Engine(replace(CFG, max_profiles=1))
    eng.observe(batch([("a" * 16, 1, "INFO", "", f"{1:032x}")]))
    eng.observe(batch([("b" * 16, 2, "INFO", "", f"{2:032x}")]))  # evicts "a", same bucket
    (acc,) = eng._open.values()
    assert acc.samples_of(None, 5) == {0: [f"{2:032x}"]}
    state = eng.snapshot()
    assert state["open"][0]["samples"] == [[0, [f"{2:032x}"]]]


def test_spike_samples_are_the_first_distinct_trace_ids() -> None:
    eng = Engine(CFG)
    bs = steady("a" * 16, 3, 0, 720)
    tids = ["", "t1", "t1", "t2", "", "t3"] + [f"t{i}" for i in range(4, 60)]
    bs.append(batch([("a" * 16, 720 * BUCKET + i, "ERROR", "", t) for i, t in enumerate(tids)]))
    bs += steady("a" * 16, 3, 721, 730, seed=2)
    ev = run(eng, bs)
    assert kinds(ev)[0] == ("spike", "open")
    # the group's first 5 records are the candidates: "", t1, t1, t2, ""
    assert ev[0].sample_trace_ids == ("t1", "t2")
    assert np.all(np.diff([r.start_ns for r in eng.recent_buckets("a" * 16) or []]) == BUCKET)
