"""Distinct ids over windows: a pattern with a record or two a bucket, from a small pool of ids,
turning to new ids at only 1.5x the volume (invisible in any one bucket)."""

from __future__ import annotations

import copy
import functools

import numpy as np

from tests.detect.trees import roundtrip
from via_otlp.detect import DetectConfig, Engine
from via_otlp.detect.cardinality import IdWindow
from via_otlp.detect.hll import compact, hash64, pack, registers_of
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, LogBatch, Source

S = 1_000_000_000
BUCKET = 10 * S
SRC = Source.from_attributes((("service.name", "auth"),))
RH = "c" * 16
CFG = DetectConfig()


def warnings(b0: int, b1: int, rate: float, pool: int | None, seed: int) -> list[LogBatch]:
    """`rate` records a bucket (Poisson); ids from `pool` users, or every one new (None)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(b0, b1):
        n = int(rng.poisson(rate))
        ids = [f"user{rng.integers(pool)}" if pool else f"new{b}-{i}-{seed}" for i in range(n)]
        out.append(
            LogBatch(
                sources=[SRC], source_index=[0] * n, severity=["WARN"] * n, body=[""] * n,
                time_ns=[b * BUCKET + 1 + i for i in range(n)], trace_id=[""] * n,
                unique_id=ids, template_id=["T"] * n, template=["Login failed for <*>"] * n,
                rhythm_hash=[RH] * n,
            )
        )  # fmt: skip
    return out


def run(eng: Engine, batches: list[LogBatch]) -> list[AnomalyEvent]:
    out: list[AnomalyEvent] = []
    for b in batches:
        out += eng.observe(b)
    return out


def card_opens(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    return [e for e in events if e.kind is AnomalyKind.CARDINALITY and e.state is EpisodeState.OPEN]


QUIET = 6 * 360  # 6 h of buckets
RATE = 0.2  # 1.2 records a minute


@functools.cache
def _quiet_once(seed: int) -> tuple[Engine, list[AnomalyEvent]]:
    eng = Engine(CFG)
    return eng, run(eng, warnings(0, QUIET, RATE, 20, seed))


def quiet(seed: int) -> tuple[Engine, list[AnomalyEvent]]:
    """An engine after the quiet history of `seed` (20 clients, six hours), and its events: a
    deep copy of the one run per seed (each test has its own engine; both tests use seed 1)."""
    eng, events = _quiet_once(seed)
    return copy.deepcopy(eng), list(events)


def test_same_clients_then_new_ones_at_one_and_a_half_times_the_volume() -> None:
    for seed in range(3):
        eng, events = quiet(seed)
        assert card_opens(events) == []
        calm = copy.deepcopy(eng)  # the same quiet history, run once (for the known ids below)
        attack = warnings(QUIET, QUIET + 120, 1.5 * RATE, None, seed)  # 20 minutes
        ev = run(eng, [*attack, *warnings(QUIET + 120, QUIET + 200, RATE, 20, seed)])
        (op,) = card_opens(ev)
        assert QUIET * BUCKET < op.time_ns <= (QUIET + 60) * BUCKET, seed  # within 10 minutes
        assert "ids not seen lately" in op.explanation
        # The same clients at 1.5x the volume are known ids: no alarm.
        assert card_opens(run(calm, warnings(QUIET, QUIET + 200, 1.5 * RATE, 20, seed + 7))) == []


def test_the_window_is_carried_by_snapshots_and_handoff() -> None:
    eng, _ = quiet(1)
    snap = Engine(CFG)
    snap.restore(roundtrip(eng.snapshot()))
    moved = Engine(CFG)
    assert eng.watermark_ns is not None
    moved.advance(eng.watermark_ns)
    moved.import_sources(roundtrip(eng.export_sources([SRC.key])))
    attack = warnings(QUIET, QUIET + 120, 1.5 * RATE, None, 1)
    want = card_opens(run(eng, attack))
    assert len(want) == 1
    assert card_opens(run(snap, attack)) == want
    assert card_opens(run(moved, attack)) == want


def test_fresh_ids_are_found_and_places_are_reused_least_recent_first() -> None:
    w = IdWindow(DetectConfig(), 4)

    def regs(slot: int, names: list[str]) -> np.ndarray:
        idx, rho = registers_of(np.array([hash64(x) for x in names], np.uint64), 10)
        return compact(pack(np.full(len(names), slot), idx, rho))

    active = np.ones(4, dtype=bool)
    w.close(1, regs(2, ["a", "b"]), active)
    assert int(np.count_nonzero(w.fp[2])) == 2 and float(w.fresh[2]) == 2.0
    w.close(2, regs(2, ["a", "c"]), active)  # one known, one fresh
    assert int(np.count_nonzero(w.fp[2])) == 3
    assert abs(float(w.fresh[2]) / float(w.seen[2]) - 3 / 4) < 0.01  # 3 of 4 ids fresh
    # More ids than places: the least recently seen make room, nothing else is touched.
    w.close(3, regs(2, [f"x{i}" for i in range(16)]), active)
    w.close(4, regs(2, [f"y{i}" for i in range(16)]), active)
    assert int(np.count_nonzero(w.fp[2])) == w.k and not w.fp[[0, 1, 3]].any()


def test_the_window_costs_what_it_says_per_profile() -> None:
    w = IdWindow(DetectConfig(), 1000)
    held = sum(a.nbytes for a, _ in w.slot_arrays("").values())
    assert held == 1000 * w.nbytes_per_slot and w.nbytes_per_slot <= 160
