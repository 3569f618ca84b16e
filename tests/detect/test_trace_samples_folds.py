"""An open bucket with many profiles folds its trace id candidates a few times, not per batch.

Each early fold costs as much as the samples the bucket holds; with many profiles it completes
only a few slots, so folding once per batch made the folds grow quadratically with the bucket.
Folds wait for as many candidates as samples are held, so they get rarer as the bucket fills;
the pending candidates stay under the samples held, and the samples are still each slot's first
`k` distinct ids.
"""

from __future__ import annotations

import numpy as np
import pytest

from via_otlp.detect import engine as engine_mod
from via_otlp.detect.engine import _FOLD_SOON, _OpenBucket

K = 5


def _reference(batches: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, list[str]]:
    have: dict[int, list[str]] = {}
    for ps, pt in batches:
        for s, t in zip(ps.tolist(), pt.tolist(), strict=True):
            h = have.setdefault(s, [])
            if t and len(h) < K and t not in h:
                h.append(t)
    return have


def test_many_profiles_fold_a_few_times_per_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    batches = []
    weights = 1.0 / np.arange(1, 40_001)  # Zipf-like: a few loud profiles, a long tail
    weights /= weights.sum()
    for _ in range(24):  # a bucket's batches: 3,000 candidates over 40,000 profiles each
        slots = rng.choice(40_000, 3_000, p=weights).astype(np.int64)
        tids = np.empty(len(slots), dtype=object)
        tids[:] = [f"{x:032x}" for x in rng.integers(0, 2**62, len(slots)).tolist()]
        batches.append((slots, tids))
    ob = _OpenBucket(counts=np.zeros(0), with_id=np.zeros(0))
    folds: list[int] = []
    fold = _OpenBucket.fold

    def counted(self: _OpenBucket, k: int) -> int:
        folds.append(self.pending)
        return fold(self, k)

    monkeypatch.setattr(engine_mod._OpenBucket, "fold", counted)
    most_pending = 0
    for slots, tids in batches:
        held = ob.traces.n
        ob.add_candidates(slots, tids, K)
        most_pending = max(most_pending, ob.pending)
        assert ob.fold_early  # every fold completes a few slots (the loud ones)
        assert ob.pending <= max(_FOLD_SOON, held)  # never more than the samples held
    assert len(folds) <= 6  # 24 batches past `_FOLD_SOON`: once per batch, 24 folds
    assert most_pending > _FOLD_SOON
    assert ob.samples_of(None, K) == dict(sorted(_reference(batches).items()))  # (a 7th fold)
