"""Trace id samples: a slot whose samples in a bucket are complete takes no more candidates.

The samples of a profile in a bucket are its first `k` distinct non-empty trace ids among its
candidates (its first `k` records in each batch), in record order; once a bucket has folded `k` of them for a slot, later records of that slot cannot
change them, so the engine skips them (no hex encoding, no pending candidate). These tests
check that the samples, the events and the snapshot are those of the lazy path, and that the
skipped records really add no work.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.detect.test_engine import BUCKET, CFG, batch
from tests.detect.trees import dumps
from via_otlp.detect import Engine
from via_otlp.detect import engine as engine_mod
from via_otlp.model import AnomalyEvent, LogBatch

K = CFG.max_sample_trace_ids
HASHES = [f"h{i}" for i in range(12)]


def _trace(rng: np.random.Generator, rh: str) -> str:
    """h0: never an id; h1: one id repeated; the rest: a few ids often repeated, some empty."""
    if rh == "h0":
        return ""
    if rh == "h1":
        return "ab" * 16
    x = int(rng.integers(0, 10))
    return "" if x < 2 else f"{int(rng.integers(0, 8)):032x}"


def _stream(seed: int = 3) -> list[LogBatch]:
    """Three buckets of eight 240-record batches over 12 rhythm hashes, then a spike of h5."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(3):
        for j in range(8):
            rows = []
            for i in range(240):
                rh = HASHES[int(rng.integers(0, len(HASHES)))]
                t = b * BUCKET + j * 1000 + i + 1
                rows.append((rh, t, "INFO", "", _trace(rng, rh)))
            out.append(batch(rows))
    spike = [("h5", 3 * BUCKET + i + 1, "INFO", "", f"{i % 50:032x}") for i in range(400)]
    out.append(batch(spike))
    return out


def _run(stream: list[LogBatch]) -> tuple[Engine, list[AnomalyEvent], list[str]]:
    eng = Engine(CFG)
    events: list[AnomalyEvent] = []
    trees = []
    for i, b in enumerate(stream):
        events += eng.observe(b)
        if i % 5 == 4:
            trees.append(dumps(eng.snapshot()))
    events += eng.flush()
    trees.append(dumps(eng.snapshot()))
    return eng, events, trees


def _reference(stream: list[LogBatch], bucket: int) -> dict[str, list[str]]:
    """The rule itself: per rhythm hash, its first K distinct non-empty ids in the bucket among
    the candidates (the first K records of each hash in each batch)."""
    out: dict[str, list[str]] = {}
    for b in stream:
        seen: dict[str, int] = {}
        for rh, t, tid in zip(b.rhythm_hash, b.time_ns, b.trace_id, strict=True):
            if t // BUCKET != bucket:
                continue
            seen[rh] = seen.get(rh, 0) + 1
            have = out.setdefault(rh, [])
            if seen[rh] <= K and tid and len(have) < K and tid not in have:
                have.append(tid)
    return out


def test_skipping_complete_slots_changes_no_sample_event_or_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _stream()
    monkeypatch.setattr(engine_mod, "_FOLD_SOON", 16)  # fold early at once: skip the most
    _, events, trees = _run(stream)
    monkeypatch.setattr(engine_mod, "_FOLD_SOON", 1 << 40)  # never early: nothing skipped
    _, lazy_events, lazy_trees = _run(stream)
    assert trees == lazy_trees
    assert [(e.kind, e.state, e.rhythm_hash, e.sample_trace_ids) for e in events] == [
        (e.kind, e.state, e.rhythm_hash, e.sample_trace_ids) for e in lazy_events
    ]
    # The snapshots taken while buckets were open hold their samples (`to_tree` folds them).
    assert all(f'"{"ab" * 16}"' in t for t in trees[:-1])
    # Before a bucket closes, its samples are the rule's.
    live = Engine(CFG)
    monkeypatch.setattr(engine_mod, "_FOLD_SOON", 16)
    for b in stream[:8]:
        live.observe(b)
    acc = live._open[0]
    got = acc.samples_of(None, K)
    slot = live._table.index
    assert {rh: got[slot[rh]] for rh in HASHES if rh in slot} == _reference(stream[:8], 0)


def test_a_complete_slot_adds_no_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "_FOLD_SOON", 16)
    eng = Engine(CFG)
    first = batch([(f"h{i % 4}", 1 + i, "INFO", "", f"{i:032x}") for i in range(40)])
    eng.observe(first)  # 4 slots x K candidates > 16: folded, every slot complete
    acc = eng._open[0]
    assert acc.pending == 0 and all(len(v) == K for v in acc.samples.values())
    before = {s: list(v) for s, v in acc.samples.items()}
    later = batch([(f"h{i % 4}", 100 + i, "INFO", "", f"{1000 + i:032x}") for i in range(400)])
    eng.observe(later)
    assert acc.pending == 0 and not acc.pending_slots  # 400 records, not one candidate
    assert acc.samples == before
    # A slot evicted and reused starts again without samples.
    acc.forget(np.array([0], dtype=np.int64))
    assert not acc.saturated(np.array([0]))[0] and acc.saturated(np.array([1]))[0]


def test_pending_counts_the_candidates_held_not_the_records_without_ids() -> None:
    """`pending` decides when candidates are folded: it counts those held (records without a
    trace id are left out of them), so forgetting slots brings it back to what is held."""
    acc = engine_mod._OpenBucket(counts=np.zeros(4), with_id=np.zeros(4))
    slots = np.arange(40, dtype=np.int64) % 4
    tids = np.array([f"{i:032x}" if i % 10 == 0 else "" for i in range(40)], dtype=object)
    acc.add_candidates(slots, tids, K)
    held = sum(len(p) for p in acc.pending_slots)
    assert held == 4 and acc.pending == held  # 4 ids among 40 records
    acc.forget(np.array([0], dtype=np.int64))
    assert acc.pending == sum(len(p) for p in acc.pending_slots) == 2
