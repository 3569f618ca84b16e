"""What a restored shard's pipeline holds per profile: no more than before the restart."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from via_otlp.config import Config
from via_otlp.model import LogBatch, Source
from via_otlp.pipeline import Pipeline
from via_otlp.state import decode_tree, encode_tree

_SOURCES, _TEMPLATES = 20, 100
_T0 = 1_700_000_000 * 10**9


def _batch(t_ns: int) -> LogBatch:
    """One record of each of 100 sender-named templates of 20 services (as benchmarks/shards.py
    sends them): a profile each, with new string objects for every value, as a decoder makes."""
    n = _SOURCES * _TEMPLATES
    return LogBatch(
        sources=[Source.from_attributes((("service.name", f"svc-{s}"),)) for s in range(_SOURCES)],
        source_index=[i // _TEMPLATES for i in range(n)],
        severity=["".join(["IN", "FO"]) for _ in range(n)],
        body=[f"event {i % _TEMPLATES} of service {i // _TEMPLATES}" for i in range(n)],
        time_ns=[t_ns] * n,
        template_hint=[f"event kind {i % _TEMPLATES}" for i in range(n)],
    )


def _feed(pipeline: Pipeline, t_ns: int) -> None:
    pipeline.consume(pipeline.intake.process(_batch(t_ns)))


def _held_per_profile(make: Callable[[], Pipeline], t_ns: int) -> tuple[float, Pipeline]:
    """Bytes per profile that `make()` (a pipeline) and one more record of each profile, in
    the bucket of `t_ns`, hold."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        pipeline = make()
        _feed(pipeline, t_ns)
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    return held / pipeline.rhythm_hashes, pipeline


def test_a_restored_pipeline_holds_no_more_per_profile_than_before_the_restart() -> None:
    # Parsed from a snapshot, the profile table's severities, template ids and texts were each
    # a string of their own, and the patterns stage's sender-named templates held another copy
    # of the ids and texts: a restored pipeline held ~350 B more per profile here than the one
    # it replaced, which put `serve` over 2 KB a profile after any restart.
    config = Config()

    def fresh() -> Pipeline:
        pipeline = Pipeline(config)
        _feed(pipeline, _T0)
        return pipeline

    before, pipeline = _held_per_profile(fresh, _T0 + 20 * 10**9)
    blob = encode_tree(pipeline.snapshot())
    del pipeline

    def restored() -> Pipeline:
        pipeline = Pipeline(config)
        pipeline.restore(decode_tree(blob))
        return pipeline

    after, pipeline = _held_per_profile(restored, _T0 + 40 * 10**9)
    assert pipeline.rhythm_hashes == _SOURCES * _TEMPLATES
    assert pipeline.engine.stats().records == 3 * _SOURCES * _TEMPLATES
    assert after < before + 50, (before, after)  # (old code: +240 B; now -40 B)


def test_a_restored_pipeline_seen_again_holds_one_rhythm_hash_string_per_profile() -> None:
    # The patterns stage worked the rhythm hash out again on the first record after a restart
    # (`_rhythm_of`) while the profile table kept the one parsed from the snapshot: a second
    # 65 B string per profile, which put `serve` over 2 KB a profile after a restart. The
    # stage keeps the profile table's string now (`PatternStage.known_hash`): one for both.
    config = Config()
    fresh = Pipeline(config)
    _feed(fresh, _T0)
    before = _held(lambda: _feed_canonical(fresh, _T0 + 20 * 10**9)) / fresh.rhythm_hashes
    pipeline = Pipeline(config)
    pipeline.restore(decode_tree(encode_tree(fresh.snapshot())))
    for miner in pipeline.patterns._miners.values():
        assert miner.hinted  # built here, as a fed pipeline's are: not counted below
    after = _held(lambda: _feed_canonical(pipeline, _T0 + 40 * 10**9)) / pipeline.rhythm_hashes
    assert pipeline.rhythm_hashes == _SOURCES * _TEMPLATES
    assert pipeline.engine.stats().records == 3 * _SOURCES * _TEMPLATES
    assert after < before + 16, (before, after)  # (old code: +65 B, a hash string a profile)
    table = pipeline.engine._table
    kept = {t.rhythm: t for m in pipeline.patterns._miners.values() for t in m.hinted.values()}
    assert len(kept) == len(table.index) == _SOURCES * _TEMPLATES
    assert all(kept[table.rhythm_hash[slot]].rhythm is table.rhythm_hash[slot]
               for slot in table.index.values())  # fmt: skip


def _feed_canonical(pipeline: Pipeline, t_ns: int) -> None:
    """`_feed`, with one severity string for all records, as the normaliser's cache gives them
    (a restored template takes the line's severity string on first use: not what is measured)."""
    batch = _batch(t_ns)
    batch.severity = ["INFO"] * len(batch.severity)
    pipeline.consume(pipeline.intake.process(batch))


def _held(work: Callable[[], None]) -> int:
    """Bytes that `work()` left allocated."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
