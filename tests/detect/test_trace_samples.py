"""Trace samples taken in a few sorts (`TraceSamples.take`) are those of the loop they replace.

The loop: per slot, ``if tid and len(have) < cap and tid not in have: have.append(tid)`` over the
candidates in order. The fast path compares ids by a key made of their hash and slot; where two
different ids meet on one key it must hand the batch to the loop itself (`_take_exact`). Both
are checked on the same mixed candidates (repeats within a batch and across batches, slots
that fill, slots forgotten and reused), the second with a key that makes most ids collide.
"""

from __future__ import annotations

import numpy as np
import pytest

from via_otlp.detect import samples as samples_mod
from via_otlp.detect.engine import _OpenBucket
from via_otlp.detect.samples import TraceSamples

CAP = 3


def _batches(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(40):
        n = int(rng.integers(1, 60))
        slots = rng.integers(0, 25, n).astype(np.int64)
        tids = np.empty(n, dtype=object)
        # few ids (many repeats), and the empty one (never taken)
        tids[:] = [f"{int(x):032x}" if x else "" for x in rng.integers(0, 12, n)]
        out.append((slots, tids))
    late = np.empty(3, dtype=object)
    late[:] = ["e" * 32, "e" * 32, "f" * 32]
    out.append((np.array([30, 30, 31], dtype=np.int64), late))  # slots that stay short
    return out


def _run(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[dict[int, list[str]], list[int]]:
    ts = TraceSamples()
    for i, (slots, tids) in enumerate(batches):
        ts.see(slots)
        ts.take(slots, tids, CAP)
        if i == 25:
            ts.forget(np.array([3, 7], dtype=np.int64))
    return ts.by_slot(None), ts.count.tolist()


def _loop(batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, list[str]]:
    have: dict[int, list[str]] = {}
    for i, (slots, tids) in enumerate(batches):
        for s, t in zip(slots.tolist(), tids.tolist(), strict=True):
            h = have.setdefault(s, [])
            if t and len(h) < CAP and t not in h:
                h.append(t)
        if i == 25:
            for s in (3, 7):
                have.pop(s, None)
    return dict(sorted(have.items()))


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_path_takes_what_the_loop_takes(seed: int) -> None:
    batches = _batches(seed)
    got, count = _run(batches)
    want = _loop(batches)
    assert got == want
    assert all(count[s] == len(v) for s, v in got.items())
    assert any(len(v) == CAP for v in got.values()) and any(len(v) < CAP for v in got.values())


def _loop_take(have: dict[int, list[str]], ps: np.ndarray, pt: np.ndarray, cap: int) -> list[int]:
    """The loop `take` replaces, on `have` in place; the slots of the samples it takes."""
    taken = []
    for s, t in zip(ps.tolist(), pt.tolist(), strict=True):
        h = have.setdefault(s, [])
        if t and len(h) < cap and t not in h:
            h.append(t)
            taken.append(s)
    return taken


def test_ids_that_share_a_key_are_taken_by_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fallback call returns the slots the loop takes and leaves the counts it leaves."""
    batches = _batches(3)
    want = _loop(batches)
    calls = []
    exact = TraceSamples._take_exact

    def checked(
        self: TraceSamples, ps: np.ndarray, pt: np.ndarray, key: np.ndarray, cap: int
    ) -> np.ndarray:
        have = self.by_slot(None)
        ref = _loop_take(have, ps, pt, cap)
        out = exact(self, ps, pt, key, cap)
        calls.append(1)
        assert out.tolist() == ref
        assert self.count.tolist() == [len(have.get(s, [])) for s in range(len(self.count))]
        return out

    # Keys of two values only: different ids of one slot meet all the time.
    monkeypatch.setattr(samples_mod, "_keys", lambda h, s: (s & 1).astype(np.int64))
    monkeypatch.setattr(TraceSamples, "_take_exact", checked)
    got, count = _run(batches)
    assert len(calls) > 5 and got == want
    assert all(count[s] == len(v) for s, v in got.items())


def test_an_open_bucket_keeps_each_slots_first_k_distinct_ids() -> None:
    """`_OpenBucket` through candidates, folds (asked and automatic), forget with the slot
    reused, and `to_tree`/`add_tree` (all slots, and some renumbered) against a model: per
    slot, its first `k` distinct non-empty ids in the order they came."""
    k, n_slots = 3, 40
    rng = np.random.default_rng(7)
    ob = _OpenBucket(counts=np.zeros(0), with_id=np.zeros(0))
    ob.grow(n_slots)
    ref: dict[int, list[str]] = {}

    def add(slots: np.ndarray, tids: np.ndarray) -> None:
        np.add.at(ob.counts, slots, 1.0)
        ob.add_candidates(slots, tids, k)
        _loop_take(ref, slots, tids, k)  # (an entry for every slot seen, ids or not)

    def batch(n: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        slots = rng.integers(0, hi, n).astype(np.int64)
        tids = np.empty(n, dtype=object)
        tids[:] = [f"{int(x):032x}" if x else "" for x in rng.integers(0, 9, n)]
        return slots, tids

    for i in range(30):
        add(*batch(int(rng.integers(1, 40)), n_slots - 2))
        if i % 7 == 3:
            assert ob.samples_of(None, k) == dict(sorted(ref.items()))
            # A slot is marked complete once a fold fills it, and only then.
            done = ob.saturated(np.arange(n_slots, dtype=np.int64))
            assert done.tolist() == [len(ref.get(s, [])) >= k for s in range(n_slots)]
        if i in (10, 20):
            gone = np.array([1, 2, 5], dtype=np.int64)
            ob.forget(gone)
            for s in gone.tolist():
                ref.pop(s, None)
            assert not ob.saturated(gone).any()
            # Reused at once: the new occupant starts with no samples.
            reuse = np.empty(4, dtype=object)
            reuse[:] = ["", "a" * 32, "a" * 32, "b" * 32]
            add(np.array([2, 2, 2, 5], dtype=np.int64), reuse)
    add(*batch(3000, n_slots - 2))  # past `_FOLD_SOON`: folded as it arrives
    assert ob.pending < 3000
    add(*batch(20, n_slots - 2))  # ...and a few left pending for the reads below
    last = np.empty(3, dtype=object)
    last[:] = ["", "", "d" * 32]
    add(np.array([38, 38, 39], dtype=np.int64), last)  # only empty ids; one id
    want = dict(sorted(ref.items()))
    assert ob.samples_of({2, 5, 39, 1000}, k) == {s: want[s] for s in (2, 5, 39) if s in want}
    assert ob.samples_of(None, k) == want
    assert want[38] == [] and want[39] == ["d" * 32]
    assert not any("" in v for v in want.values())

    # All slots, into a bucket where slot i is 2i + 1 and some already hold ids.
    into = _OpenBucket(counts=np.zeros(0), with_id=np.zeros(0))
    into.grow(2 * n_slots + 1)
    held = np.empty(3, dtype=object)
    held[:] = ["c" * 32, f"{3:032x}", ""]
    into.add_candidates(np.array([3, 3, 5], dtype=np.int64), held, k)
    have = {3: ["c" * 32, f"{3:032x}"], 5: []}
    # Folded first: `add_tree` does not fold, so ids still pending would be taken after the
    # tree's and could be crowded out of a slot the tree fills.
    into.fold(k)
    slot_of = np.arange(n_slots, dtype=np.int64) * 2 + 1
    into.add_tree(ob.to_tree(0, None, k), slot_of)
    for s, v in want.items():  # each id its slot does not hold yet, however many it holds
        h = have.setdefault(int(slot_of[s]), [])
        h.extend(t for t in v if t not in h)
    assert into.samples_of(None, k) == dict(sorted(have.items()))

    # Some slots, renumbered 0.. in the order given.
    pick = np.array([7, 2, 30], dtype=np.int64)
    part = _OpenBucket(counts=np.zeros(0), with_id=np.zeros(0))
    part.grow(3)
    part.add_tree(ob.to_tree(0, pick, k), np.arange(3, dtype=np.int64))
    assert part.samples_of(None, k) == {
        i: want[s] for i, s in enumerate(pick.tolist()) if s in want
    }
