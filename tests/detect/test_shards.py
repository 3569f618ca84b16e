"""The engine as shards use it: a watermark from outside, sources handed between engines, and
snapshot trees of raw arrays. One engine and any split of its sources over several engines
must give the same anomalies."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.detect.test_engine import BUCKET, CFG, Copies, S, run_copied
from tests.detect.trees import roundtrip
from via_otlp.detect import Engine
from via_otlp.detect.codec import check_tree
from via_otlp.detect.hll import HyperLogLog, compact, estimate_packed, hash64, pack, registers_of
from via_otlp.model import AnomalyEvent, LogBatch, Source

SOURCES = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(5)]


def stream(seed: int = 1, buckets: int = 500) -> list[LogBatch]:
    """Five sources, a few patterns each, with a spike, a silence, ids and a new pattern."""
    rng = np.random.default_rng(seed)
    rates = {(si, p): r for si in range(5) for p, r in enumerate((0.3, 3.0, 12.0))}
    out = []
    for b in range(buckets):
        rows = []
        for (si, p), r in rates.items():
            lam = r * (8.0 if (si == 1 and p == 1 and 400 <= b < 405) else 1.0)
            if si == 2 and p == 2 and 420 <= b < 450:
                lam = 0.0
            for _ in range(int(rng.poisson(lam))):
                uid = f"u{rng.integers(6 if b < 430 else 10_000)}" if si == 3 else ""
                rows.append((si, f"{si:02d}{p:014x}", b * BUCKET + int(rng.integers(BUCKET)), uid))
        if b == 460:
            rows += [(4, "4" * 16, b * BUCKET + i * S, "") for i in range(5)]
        rows.sort(key=lambda r: r[2])
        n = len(rows)
        out.append(
            LogBatch(
                sources=SOURCES,
                source_index=[r[0] for r in rows],
                severity=["ERROR" if r[1] == "4" * 16 else "INFO" for r in rows],
                body=[""] * n,
                time_ns=[r[2] for r in rows],
                trace_id=[f"{i:032x}" for i in range(n)],
                unique_id=[r[3] for r in rows],
                template_id=[r[1][-12:] for r in rows],
                template=[f"pattern {r[1]} <*>" for r in rows],
                rhythm_hash=[r[1] for r in rows],
            )
        )
    return out


def shard_of(src: Source, n: int) -> int:
    return xxhash.xxh64_intdigest(src.key.encode()) % n


class Coordinator:
    """What a sharded pipeline does: split each batch by source, pass the one watermark."""

    def __init__(self, n: int) -> None:
        self.engines = [Engine(CFG) for _ in range(n)]
        self.watermark: int | None = None
        self.newest: int | None = None

    def observe(self, batch: LogBatch) -> list[AnomalyEvent]:
        if len(batch):
            t = max(batch.time_ns)
            self.newest = t if self.newest is None else max(self.newest, t)
            w = t - round(CFG.allowed_lateness * 1e9)
            self.watermark = w if self.watermark is None else max(self.watermark, w)
        n = len(self.engines)
        parts: list[list[int]] = [[] for _ in range(n)]
        for i, si in enumerate(batch.source_index):
            parts[shard_of(batch.sources[si], n)].append(i)
        events: list[AnomalyEvent] = []
        for eng, keep in zip(self.engines, parts, strict=True):
            if self.watermark is None:
                continue
            if keep:
                events += eng.observe(batch.select(keep), watermark_ns=self.watermark)
            else:
                events += eng.advance(self.watermark)
        return events

    def flush(self) -> list[AnomalyEvent]:
        return [e for eng in self.engines for e in eng.flush(max_event_ns=self.newest)]


def canonical(events: list[AnomalyEvent]) -> list[str]:
    return sorted(repr(e) for e in events)


CUTS = (300, 401, 455)  # where the handoff tests move sources to another engine


@pytest.fixture(scope="module")
def one_engine_run() -> tuple[list[AnomalyEvent], Copies]:
    """`stream()` through one engine, run once for the module's six tests (`run_copied`): its
    anomalies, and the engine at each of `CUTS`, which a handoff test hands from."""
    return run_copied(stream(), CUTS)


@pytest.fixture(scope="module")
def one_engine(
    one_engine_run: tuple[list[AnomalyEvent], Copies],
) -> tuple[list[AnomalyEvent], list[str]]:
    """The anomalies of `stream()` through one engine (and canonical), which every split is
    compared with (events are frozen; each test makes its own batches and engines)."""
    want = one_engine_run[0]
    return want, canonical(want)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_any_number_of_shards_gives_the_same_anomalies(
    workers: int, one_engine: tuple[list[AnomalyEvent], list[str]]
) -> None:
    batches = stream()
    want, want_canonical = one_engine
    kinds = {e.kind.value for e in want}
    assert {"spike", "drop", "novelty"} <= kinds, kinds
    co = Coordinator(workers)
    got: list[AnomalyEvent] = []
    for b in batches:
        got += co.observe(b)
    got += co.flush()
    assert canonical(got) == want_canonical


def test_advance_moves_event_time_for_an_engine_without_records() -> None:
    eng = Engine(CFG)
    assert eng.advance(100 * BUCKET) == [] and eng.watermark_ns == 100 * BUCKET
    eng.advance(50 * BUCKET)  # never back
    assert eng.watermark_ns == 100 * BUCKET
    ev = eng.observe(stream(buckets=1)[0])  # records of bucket 0: late, folded, counted
    assert ev == [] and eng.stats().late_records == eng.stats().records > 0


@pytest.mark.parametrize("cut", CUTS)
def test_a_source_handed_to_another_engine_carries_on_as_if_it_had_stayed(
    cut: int,
    one_engine: tuple[list[AnomalyEvent], list[str]],
    one_engine_run: tuple[list[AnomalyEvent], Copies],
) -> None:
    """Engine A has every source; at `cut` svc1 and svc4 move to engine B (which has the rest
    of the sources by then too, imported from A): the anomalies are those of one engine.
    (A is the one engine's copy at `cut`: `one_engine_run`.)"""
    batches = stream()
    _, want_canonical = one_engine
    a, ev = copy.deepcopy(one_engine_run[1][cut])
    moved = {SOURCES[1].key, SOURCES[4].key}
    tree = roundtrip(a.export_sources(moved))
    check_tree(tree)
    stay = roundtrip(a.export_sources({s.key for s in SOURCES} - moved))
    c = Engine(CFG)
    c.advance(a.watermark_ns or 0)
    c.import_sources(stay)
    c.import_sources(tree)
    for bt in batches[cut:]:
        ev += c.observe(bt)
    ev += c.flush()
    assert canonical(ev) == want_canonical


def test_import_replaces_what_the_engine_had_of_those_sources() -> None:
    a = Engine(CFG)
    for bt in stream(buckets=120):
        a.observe(bt)
    key = SOURCES[0].key
    before = list(a.profiles())
    a.import_sources(roundtrip(a.export_sources({key})))
    assert list(a.profiles()) == before  # replaced by the same: nothing duplicated or lost
    assert a.export_sources({"nobody"})["table"]["count"] == 0


def test_snapshots_are_trees_of_json_values_and_1d_arrays() -> None:
    eng = Engine(CFG)
    for bt in stream(buckets=80):
        eng.observe(bt)
    tree = eng.snapshot()
    check_tree(tree)
    cols = tree["table"]["columns"]
    assert cols and all(isinstance(v, np.ndarray) and v.ndim == 1 for v in cols.values())
    assert any(len(ob["regs"]) for ob in tree["open"])  # distinct ids as packed registers
    with pytest.raises(TypeError, match="1-d"):
        check_tree({"x": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="keys must be str"):
        check_tree({1: 2})


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400)), max_size=600),
    st.sampled_from([4, 8, 10, 14]),
)
def test_packed_sketches_estimate_as_the_sketch_class(rows: list, precision: int) -> None:
    """Many sketches as packed triples give exactly `HyperLogLog.cardinality` for each."""
    sketches = {s: HyperLogLog(precision) for s, _ in rows}
    for s, v in rows:
        sketches[s].add(f"id{v}")
    hv = np.array([hash64(f"id{v}") for _, v in rows], dtype=np.uint64)
    idx, rho = registers_of(hv, precision)
    packed = compact(pack(np.array([s for s, _ in rows], dtype=np.int64), idx, rho))
    slots, est = estimate_packed(packed, precision)
    assert slots.tolist() == sorted(sketches)
    for s, e in zip(slots.tolist(), est.tolist(), strict=True):
        assert math.isclose(e, sketches[s].cardinality, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.sampled_from([4, 10, 14]), st.integers(0, 2**32))
def test_a_few_sketches_estimate_exactly_as_many(few: int, precision: int, seed: int) -> None:
    """A closing bucket's few sketches (estimated in Python floats) give the very floats they
    give among many (the vectorised loops): a close's outputs do not depend on which ran."""
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, 60, 3000)
    hv = rng.integers(0, 2**63, 3000, dtype=np.uint64) << np.uint64(1)
    idx, rho = registers_of(hv | rng.integers(0, 2, 3000, dtype=np.uint64), precision)
    packed = compact(pack(slots, idx, rho))
    many_slots, many = estimate_packed(packed, precision)
    assert len(many_slots) > 32  # (more than `hll._FEW`: the vectorised loops)
    mine = (packed >> 24) < few
    few_slots, est = estimate_packed(packed[mine], precision)
    assert est.tobytes() == many[: len(few_slots)].tobytes()
