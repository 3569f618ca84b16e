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
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.pipeline import join_batches

S = 1_000_000_000
BUCKET = 10 * S
CFG = DetectConfig()
SEEDS = range(3)


def source(name: str) -> Source:
    return Source.from_attributes((("service.name", name),))


def warnings(
    b0: int, b1: int, rate: float, pool: int | None, seed: int, src: Source
) -> list[LogBatch]:
    """`rate` records a bucket (Poisson); ids from `pool` users, or every one new (None)."""
    rng = np.random.default_rng(seed)
    rh = rhythm_hash(src.key, "WARN", "T")
    out = []
    for b in range(b0, b1):
        n = int(rng.poisson(rate))
        ids = [f"user{rng.integers(pool)}" if pool else f"new{b}-{i}-{seed}" for i in range(n)]
        out.append(
            LogBatch(
                sources=[src], source_index=[0] * n, severity=["WARN"] * n, body=[""] * n,
                time_ns=[b * BUCKET + 1 + i for i in range(n)], trace_id=[""] * n,
                unique_id=ids, template_id=["T"] * n, template=["Login failed for <*>"] * n,
                rhythm_hash=[rh] * n,
            )
        )  # fmt: skip
    return out


def side_by_side(runs: list[list[LogBatch]]) -> list[LogBatch]:
    """Runs of the same buckets, each under its own source, as one batch a bucket: one engine
    runs them all at the cost of one (a source's profiles share nothing with another's)."""
    return [join_batches(list(parts))[0] for parts in zip(*runs, strict=True)]


def run(eng: Engine, batches: list[LogBatch]) -> list[AnomalyEvent]:
    out: list[AnomalyEvent] = []
    for b in batches:
        out += eng.observe(b)
    return out


def card_opens(events: list[AnomalyEvent], src: Source) -> list[AnomalyEvent]:
    return [
        e
        for e in events
        if e.kind is AnomalyKind.CARDINALITY
        and e.state is EpisodeState.OPEN
        and e.source.key == src.key
    ]


QUIET = 6 * 360  # 6 h of buckets
RATE = 0.2  # 1.2 records a minute
# Per seed: a source that the new ids come to, and one (the same history) whose clients stay.
ATTACKED = {seed: source(f"auth{seed}") for seed in SEEDS}
CALM = {seed: source(f"calm{seed}") for seed in SEEDS}


@functools.cache
def _quiet_once() -> tuple[Engine, list[AnomalyEvent]]:
    eng = Engine(CFG)
    runs = [
        warnings(0, QUIET, RATE, 20, seed, src)
        for seed in SEEDS
        for src in (ATTACKED[seed], CALM[seed])
    ]
    return eng, run(eng, side_by_side(runs))


def quiet() -> tuple[Engine, list[AnomalyEvent]]:
    """An engine after the quiet history of every seed (20 clients, six hours; under its
    attacked and its calm source), and its events: a deep copy of the one run (each test has
    its own engine)."""
    eng, events = _quiet_once()
    return copy.deepcopy(eng), list(events)


def test_same_clients_then_new_ones_at_one_and_a_half_times_the_volume() -> None:
    eng, events = quiet()
    after: list[list[LogBatch]] = []
    for seed in SEEDS:
        assert card_opens(events, ATTACKED[seed]) == [] and card_opens(events, CALM[seed]) == []
        attack = warnings(QUIET, QUIET + 120, 1.5 * RATE, None, seed, ATTACKED[seed])  # 20 min
        after.append([*attack, *warnings(QUIET + 120, QUIET + 200, RATE, 20, seed, ATTACKED[seed])])
        # The same clients at 1.5x the volume are known ids: no alarm.
        after.append(warnings(QUIET, QUIET + 200, 1.5 * RATE, 20, seed + 7, CALM[seed]))
    ev = run(eng, side_by_side(after))
    for seed in SEEDS:
        (op,) = card_opens(ev, ATTACKED[seed])
        assert QUIET * BUCKET < op.time_ns <= (QUIET + 60) * BUCKET, seed  # within 10 minutes
        assert "ids not seen lately" in op.explanation
        assert card_opens(ev, CALM[seed]) == [], seed


def test_the_window_is_carried_by_snapshots_and_handoff() -> None:
    eng, _ = quiet()
    src = ATTACKED[1]
    snap = Engine(CFG)
    snap.restore(roundtrip(eng.snapshot()))
    moved = Engine(CFG)
    assert eng.watermark_ns is not None
    moved.advance(eng.watermark_ns)
    moved.import_sources(roundtrip(eng.export_sources([src.key])))
    attack = warnings(QUIET, QUIET + 120, 1.5 * RATE, None, 1, src)
    want = card_opens(run(eng, attack), src)
    assert len(want) == 1
    assert card_opens(run(snap, attack), src) == want
    assert card_opens(run(moved, attack), src) == want


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
