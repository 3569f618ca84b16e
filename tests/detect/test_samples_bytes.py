"""Trace id samples held as 16 bytes: the same samples as strs, in a quarter of the memory.

An open bucket keeps each profile's first `k` distinct trace ids. Held as Python strs they
cost ~120 bytes each (0.58 KB per profile with 5, issue #13's budget is 2 KB in all); as 16
bytes in shared columns ~32. The samples must stay those of the loop
``if tid and len(have) < k and tid not in have: have.append(tid)`` whatever form the ids came
in (strs of lower hex, bytes off the wire packed or as a list, ids of another kind that turn a
bucket's samples into strs), and whatever their keys collide on.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import numpy as np
import pytest

from benchmarks.engine import memory_batch
from tests.detect.test_engine import BUCKET, CFG, batch
from tests.detect.test_trace_candidates import _run as run_trace_stream
from tests.detect.test_trace_candidates import _stream as trace_stream
from via_otlp.detect import DetectConfig, Engine
from via_otlp.detect import samples as samples_mod
from via_otlp.detect.engine import _OpenBucket
from via_otlp.model import LogBatch, Source
from via_otlp.receive.normalise import HexIds

K = 3


def _ids(rng: np.random.Generator, n: int, odd: bool) -> list[str]:
    """Lower hex ids (few values: many repeats), empty ones, and with `odd` a few others: upper
    case (strs) or 8 bytes (ids off the wire), which are not held as 16 bytes."""
    out = []
    for x in rng.integers(0, 14, n).tolist():
        if x == 0:
            out.append("")
        elif odd and x == 13:
            out.append(f"{int(rng.integers(10, 13)):032X}")  # ("...0A": upper case)
        else:
            out.append(f"{x:016x}{x * 7:016x}")
    return out


def _as(kind: str, tids: list[str]) -> Sequence[str]:
    """The ids as a batch gives them: strs, or bytes (an odd one: 8 of them) packed or not."""
    if kind == "strs":
        return tids
    raw = [bytes.fromhex(t)[-8:] if t != t.lower() else bytes.fromhex(t) for t in tids]
    if kind == "packed":  # (no empty ids: one width)
        return HexIds.packed(b"".join(raw), 16, len(raw))
    return HexIds(raw)


Batch = tuple[np.ndarray, Sequence[str]]


def _batches(seed: int, kind: str, odd_from: int) -> list[Batch]:
    """(slots, ids as a batch gives them) of 30 candidate batches over 20 slots."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(30):
        n = int(rng.integers(1, 50))
        tids = _ids(rng, n, i >= odd_from)
        if kind == "packed":
            tids = [t or f"{99:032x}" for t in tids]
        out.append((rng.integers(0, 20, n).astype(np.int64), _as(kind, tids)))
    return out


def _loop(batches: list[Batch], forget_at: int) -> dict[int, list[str]]:
    have: dict[int, list[str]] = {}
    for i, (slots, tids) in enumerate(batches):
        for s, t in zip(slots.tolist(), list(tids), strict=True):
            h = have.setdefault(s, [])
            if t and len(h) < K and t not in h:
                h.append(t)
        if i == forget_at:
            for s in (2, 5):
                have.pop(s, None)
    return dict(sorted(have.items()))


# (kind of ids, the batch from which ids of another kind come: at once, later, never)
CASES = [("strs", 0), ("strs", 12), ("strs", 99), ("list", 0), ("list", 12), ("list", 99),
         ("packed", 99)]  # fmt: skip


@pytest.mark.parametrize(("kind", "odd_from"), CASES)
def test_samples_held_as_bytes_are_the_loops(kind: str, odd_from: int) -> None:
    for seed in (1, 2):
        batches = _batches(seed, kind, odd_from)
        ob = _OpenBucket(np.zeros(20), np.zeros(20))
        for i, (slots, tids) in enumerate(batches):
            ids, hashes, keep = samples_mod.pick_ids(tids, np.arange(len(tids)))
            ob.add_candidates(slots, ids, K, hashes, keep)
            if i % 4 == 3:
                ob.fold(K)
            if i == 20:
                ob.forget(np.array([2, 5], dtype=np.int64))
        assert ob.samples_of(None, K) == _loop(batches, 20)
        assert ob.traces.strs == (odd_from < 99)


def test_ids_whose_keys_collide_are_compared_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    want = _loop(_batches(3, "strs", 99), 99)
    # Every id on one of two keys: the fast path must find the clash and take the loop.
    monkeypatch.setattr(samples_mod, "_id_hashes", lambda ids: (ids[:, 1] & 1).view(np.int64))
    ts = samples_mod.TraceSamples()
    for slots, tids in _batches(3, "strs", 99):
        ids, _, keep = samples_mod.pick_ids(tids, np.arange(len(tids)))
        ts.see(slots)
        ts.take(slots if keep is None else slots[keep], ids, K)
    assert not ts.strs
    assert ts.by_slot(None) == want


def test_ids_that_are_not_lower_hex_stay_strs() -> None:
    for tids in (["ab" * 16, "AB" * 16], ["ab" * 16, "ab" * 15 + " a"], ["ab" * 16, "ab" * 17]):
        ids, hashes, keep = samples_mod.pick_ids(tids, np.arange(2))
        assert ids.dtype == object and hashes is not None and keep is None
        assert ids.tolist() == tids


def _wire(b: LogBatch) -> LogBatch:
    """`b` with its trace ids as the intake gives them (bytes, `HexIds`)."""
    return replace(b, trace_id=cast(list[str], HexIds.of([bytes.fromhex(t) for t in b.trace_id])))


def test_the_engine_samples_the_same_ids_whatever_form_they_came_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = trace_stream()
    # a batch over two buckets, some of its ids empty
    stream.append(batch([(f"h{i % 5}", 3 * BUCKET + 500 + i * (BUCKET // 40), "INFO", "",
                          f"{i % 9:032x}" if i % 4 else "") for i in range(80)]))  # fmt: skip
    _, want_ev, want_trees = run_trace_stream(stream)
    _, wire_ev, wire_trees = run_trace_stream([_wire(b) for b in stream])
    monkeypatch.setattr(samples_mod, "_from_hex", _refuse)  # every id as a str, as before
    _, str_ev, str_trees = run_trace_stream(stream)
    assert repr(want_ev) == repr(wire_ev) == repr(str_ev)
    assert want_trees == wire_trees == str_trees
    assert any(f"{3:032x}" in t for t in want_trees)  # (samples in the open buckets)


def _refuse(ids: object) -> np.ndarray:
    raise ValueError("as strs")


def _tree_engine() -> Engine:
    eng = Engine(CFG)
    rows = [(f"h{i % 4}", 5 * BUCKET + i + 1, "INFO", "", f"{i % 7:032x}" if i % 3 else "")
            for i in range(40)]  # fmt: skip
    eng.observe(batch(rows))
    return eng


def test_a_snapshot_of_byte_samples_restores_them_as_bytes() -> None:
    eng = _tree_engine()
    (acc,) = eng._open.values()
    want = acc.samples_of(None, CFG.max_sample_trace_ids)
    state = eng.snapshot()  # (the samples as strs: the format of the snapshots before)
    assert state["open"][0]["samples"] == [[s, v] for s, v in sorted(want.items())]
    back = Engine(CFG)
    back.restore(state)
    (acc2,) = back._open.values()
    assert acc2.samples_of(None, CFG.max_sample_trace_ids) == want
    assert not acc2.traces.strs and acc2.traces.n == sum(map(len, want.values()))


N = 8_000
SOURCES = [Source.from_attributes((("service.name", f"svc{i}"),)) for i in range(100)]


def _open_bucket_bytes(traces: int) -> float:
    """Bytes per profile (tracemalloc) of an engine of `N` profiles whose bucket is open, each
    with `traces` records of distinct trace ids, once the batch is gone (as `memory` in
    benchmarks/engine.py measures it)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        eng = Engine(DetectConfig(max_profiles=N))
        b = memory_batch(SOURCES, range(N), 0, traces)
        eng.observe(b)
        (acc,) = eng._open.values()
        acc.fold(5)  # (as an alarm or a snapshot would: every candidate folded)
        del b
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert acc.traces.n == N * traces
    return used / N


def test_five_trace_ids_held_in_an_open_bucket_cost_under_250_bytes_a_profile() -> None:
    # 583 B per profile as strs with an int64 key, slot and place each (benchmarks/engine.py,
    # 100,000 profiles); 16 bytes, an int64 key and int32 slot and place: ~32 B per id.
    extra = _open_bucket_bytes(5) - _open_bucket_bytes(0)
    assert extra < 250, extra


def test_an_odd_id_after_every_sample_was_forgotten_is_held() -> None:
    """All of a bucket's samples forgotten (their profiles evicted), then an id that is not
    lower hex: it is held as a str (an empty chunk of 16-byte ids was left beside it, and the
    next read of the samples failed to join them)."""
    ts = samples_mod.TraceSamples()
    ts.see(np.array([0]))
    tids, h, _ = samples_mod.pick_ids(["ab" * 16], np.array([0]))
    ts.take(np.array([0]), tids, 5, h)
    ts.forget(np.array([0]))
    ts.see(np.array([1]))
    tids, h, _ = samples_mod.pick_ids(["AB" * 16], np.array([0]))
    ts.take(np.array([1]), tids, 5, h)
    assert ts.by_slot(None) == {1: ["AB" * 16]}


def test_ids_made_to_share_a_key_cost_the_batch_not_the_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two 16-byte ids with one key are easy to make (the key is linear in the id's halves);
    the exact fallback then compares only the samples of the batch's own slots."""
    held, per = 2000, 5
    ts = samples_mod.TraceSamples()
    slots = np.repeat(np.arange(held), per)
    ts.see(slots)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2**63, size=(len(slots), 2), dtype=np.int64).view(np.uint64)
    ts.take(slots, ids, per + 1)
    compared: list[int] = []
    real = samples_mod._hashable

    def counted(tids: np.ndarray) -> list[object]:
        compared.append(len(tids))
        return real(tids)

    monkeypatch.setattr(samples_mod, "_hashable", counted)
    hi, lo = 12345, 67890
    mask, mix = (1 << 64) - 1, int(samples_mod._MIX2)
    twin = [(hi + 1) & mask, lo ^ ((hi * mix) & mask) ^ (((hi + 1) * mix) & mask)]
    pair = np.array([[hi, lo], twin], dtype=np.uint64)
    assert samples_mod._id_hashes(pair)[0] == samples_mod._id_hashes(pair)[1]  # one key
    taken = ts.take(np.array([7, 7]), pair, per + 1)
    assert taken.tolist() == [7]  # the slot had room for one more: the first of the two
    assert compared and sum(compared) <= 2 + per  # the batch and its slot's samples, not all 10,000
