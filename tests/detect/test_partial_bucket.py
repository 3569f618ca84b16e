"""A partial bucket (the end of a replay, cut short) is judged for what it has too much of and
teaches the profiles nothing: a replay's last seconds must not move the state a server resumes."""

from __future__ import annotations

import numpy as np

from tests.detect.test_gaps import _learned
from via_otlp.detect.profile import ProfileTable

_SHOWN = ("recent_count", "recent_root", "recent_distinct")  # (the control API's recent ring)


def _state(table: ProfileTable) -> dict[str, np.ndarray]:
    return {n: a.copy() for n, (a, _) in table._slot_arrays().items() if n not in _SHOWN}


def test_a_partial_bucket_moves_no_learnt_state_of_any_profile() -> None:
    eng = _learned(profiles=20)
    table = eng._table
    # Something held in each test that keeps evidence between buckets: a day-one CUSUM part
    # way up, a silent run under way, a drift residual off zero.
    table.cusum.pos[:20] = 2.0
    table.cusum.neg[:20] = 1.0
    table.zrun_logp[:20] = -3.0
    table.zrun_expect[:20] = 3.0
    table.drift_fast[:20] = 0.5
    before = _state(table)
    counts = np.zeros(table.capacity)
    counts[:10] = 1.0  # half the patterns have a record in the cut-short bucket, half none
    bucket = eng._next_close
    assert bucket is not None
    table.close(bucket, counts, np.zeros(table.capacity), True)
    after = _state(table)
    moved = [n for n in before if not np.array_equal(before[n], after[n])]
    assert moved == []
