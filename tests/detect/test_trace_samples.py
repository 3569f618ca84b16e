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


def test_ids_that_share_a_key_are_taken_by_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _batches(3)
    want = _loop(batches)
    calls = []
    exact = TraceSamples._take_exact

    def counted(self: TraceSamples, *a: object) -> None:
        calls.append(1)
        exact(self, *a)  # type: ignore[arg-type]

    # Keys of two values only: different ids of one slot meet all the time.
    monkeypatch.setattr(samples_mod, "_keys", lambda h, s: (s & 1).astype(np.int64))
    monkeypatch.setattr(TraceSamples, "_take_exact", counted)
    got, _ = _run(batches)
    assert calls and got == want
