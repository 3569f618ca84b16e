"""Novelty that needs evidence: base rate of new patterns per source, repetition, severity,
merges of a split template, one episode per pattern."""

from __future__ import annotations

import copy
import functools
from dataclasses import replace
from typing import Any

import numpy as np

from tests.detect.trees import dumps, roundtrip
from via_otlp.config import Config, parse_config
from via_otlp.detect import DetectConfig, Engine
from via_otlp.detect.config import NoveltyConfig
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, LogBatch, Source
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.patterns.stage import TemplateMerge
from via_otlp.pipeline import Pipeline

S = 1_000_000_000
BUCKET = 10 * S
SRC = Source.from_attributes((("service.name", "checkout"),))
CFG = DetectConfig(warmup=600, cooldown=60, novelty=NoveltyConfig(source_warmup=600))


def rows_batch(rows: list[tuple[str, int, str]]) -> LogBatch:
    """rows: (template id, time_ns, severity); rhythm hashes as the patterns stage makes them."""
    n = len(rows)
    return LogBatch(
        sources=[SRC],
        source_index=[0] * n,
        severity=[r[2] for r in rows],
        body=[""] * n,
        time_ns=[r[1] for r in rows],
        trace_id=[""] * n,
        unique_id=[""] * n,
        template_id=[r[0] for r in rows],
        template=[f"pattern {r[0]} <*>" for r in rows],
        rhythm_hash=[rhythm_hash(SRC.key, r[2], r[0]) for r in rows],
    )


def background(b0: int, b1: int, rare: tuple[int, ...] = ()) -> list[LogBatch]:
    """A busy INFO template (2 a bucket) from bucket b0 to b1; rare templates once each at `rare`."""
    rng = np.random.default_rng(b0)
    out = []
    for b in range(b0, b1):
        rows = [("busy", b * BUCKET + 1 + i, "INFO") for i in range(int(rng.poisson(2.0)))]
        rows += [(f"rare{b}", b * BUCKET + 5, "INFO")] if b in rare else []
        out.append(rows_batch(rows))
    return out


def with_rows(b0: int, rows: list[list[tuple[str, int, str]]]) -> list[LogBatch]:
    """`background` from bucket b0 on, a bucket per entry of `rows`, each bucket's rows first."""
    out = []
    for r, busy in zip(rows, background(b0, b0 + len(rows)), strict=True):
        out += [rows_batch(r), busy] if r else [busy]
    return out


def novelty_opens(events: list[AnomalyEvent]) -> list[AnomalyEvent]:
    return [e for e in events if e.kind is AnomalyKind.NOVELTY and e.state is EpisodeState.OPEN]


def run(eng: Engine, batches: list[LogBatch]) -> list[AnomalyEvent]:
    out: list[AnomalyEvent] = []
    for b in batches:
        out += eng.observe(b)
    return out


@functools.cache
def _settled() -> tuple[Engine, tuple[AnomalyEvent, ...]]:
    eng = Engine(CFG)
    return eng, tuple(run(eng, background(0, 8640)))


def settled_day(cfg: DetectConfig) -> tuple[Engine, list[AnomalyEvent]]:
    """An engine after a day of `background(0, 8640)` and that day's events: the day is run once,
    and every test gets its own deep copy of the engine (the same state, unshared). Under
    another novelty config, the engine restarted with it from that day's snapshot: the day opens
    no novelty, so its state is the same under any `hold` (the snapshots are equal)."""
    eng, events = _settled()
    if cfg == CFG:
        return copy.deepcopy(eng), list(events)
    assert replace(cfg, novelty=replace(cfg.novelty, hold=CFG.novelty.hold)) == CFG  # hold only
    assert novelty_opens(list(events)) == []
    restarted = Engine(cfg)
    restarted.restore(roundtrip(eng.snapshot()))
    return restarted, list(events)


def test_one_new_error_is_news_on_a_settled_source_not_on_a_young_one() -> None:
    day = 8640  # buckets
    # Settled: a day in which every pattern repeats; then one never-seen ERROR line.
    settled, ev = settled_day(CFG)
    ev += run(
        settled, [rows_batch([("boom", day * BUCKET + 3, "ERROR")]), *background(day + 1, day + 4)]
    )
    (op,) = novelty_opens(ev)
    assert op.time_ns == (day + 1) * BUCKET  # at the close of its own bucket: no delay added
    assert op.observed == 1 and "new ERROR pattern 'pattern boom <*>'" in op.explanation
    # Young: 1.5 h in which two rare templates were seen once each (its rare patterns are still
    # turning up); the same single ERROR line is no news there...
    young = Engine(CFG)
    t = 540
    ev = run(young, background(0, t, rare=(200, 400)))
    ev += run(young, [rows_batch([("boom", t * BUCKET + 3, "ERROR")]), *background(t + 1, t + 400)])
    assert novelty_opens(ev) == []
    # ...but a new ERROR that keeps coming is.
    ev = run(young, [rows_batch([("bang", (t + 400) * BUCKET + i * S, "ERROR") for i in range(3)])])
    ev += run(young, background(t + 401, t + 404))
    assert [e.template for e in novelty_opens(ev)] == ["pattern bang <*>"]


def test_a_source_still_showing_new_patterns_on_its_first_morning_is_not_surprised() -> None:
    # Six templates, first seen within the first hour (quiet at night), all repeating since.
    young = Engine(CFG)
    t = 1440  # 4 h
    rows = [[] for _ in range(t)]
    for i, first in enumerate((0, 40, 90, 150, 220, 330)):
        for b in range(first, t, 60 + 20 * i):
            rows[b].append((f"t{i}", b * BUCKET + 2 + i, "INFO"))
    batches = [rows_batch(r) for r in rows]
    assert novelty_opens(run(young, [*background(0, 1), *batches])) == []
    # A rare ERROR template's first record that morning is no news; on a settled source it is
    # (test_one_new_error_is_news_on_a_settled_source_not_on_a_young_one).
    ev = run(young, [rows_batch([("rare", t * BUCKET + 3, "ERROR")]), *background(t + 1, t + 200)])
    assert novelty_opens(ev) == []


def test_severity_raises_the_bar_for_debug() -> None:
    eng, _ = settled_day(CFG)
    day = 8640
    ev = run(
        eng, [rows_batch([("dbg", day * BUCKET + 3, "DEBUG"), ("err", day * BUCKET + 4, "ERROR")])]
    )
    ev += run(eng, background(day + 1, day + 4))
    assert [e.severity for e in novelty_opens(ev)] == ["ERROR"]


def test_one_episode_per_template_and_a_known_template_at_a_new_severity_is_not_new() -> None:
    eng, _ = settled_day(CFG)
    day = 8640
    b = day * BUCKET
    ev = run(eng, [rows_batch([("new", b + 3, "WARN"), ("new", b + 4, "ERROR"), ("new", b + 5, "WARN"),
                               ("busy", b + 6, "ERROR")])])  # fmt: skip
    ev += run(eng, background(day + 1, day + 4))
    opens = novelty_opens(ev)
    assert [(e.template, e.severity) for e in opens] == [("pattern new <*>", "ERROR")]
    assert opens[0].observed == 3  # both severities' records are its evidence


def born(tree: dict[str, Any]) -> tuple[object, dict[str, tuple[int, int]]]:
    """An engine export's sources (with the time each was first seen) and, per rhythm hash, the
    first bucket and time its pattern was seen: what the source and pattern ages start from."""
    cols, meta = tree["table"]["columns"], tree["table"]["profiles"]
    firsts = zip(cols["first_bucket"].tolist(), cols["first_seen_ns"].tolist(), strict=True)
    return tree["sources"], dict(zip(meta["rhythm_hash"], firsts, strict=True))


def test_a_held_pattern_survives_a_snapshot_and_a_handoff() -> None:
    cfg = DetectConfig(warmup=600, cooldown=60, novelty=NoveltyConfig(source_warmup=600, hold=30))
    day = 8640
    a, _ = settled_day(cfg)
    run(a, [rows_batch([("boom", day * BUCKET + 3, "ERROR")]), *background(day + 1, day + 2)])
    b = Engine(cfg)
    b.restore(roundtrip(a.snapshot()))
    c = Engine(cfg)
    assert a.watermark_ns is not None
    c.advance(a.watermark_ns)  # an instance already running takes the source over
    c.import_sources(roundtrip(a.export_sources([SRC.key])))
    # Both took the source's first time seen and its patterns' first buckets too (its warm-up
    # and its patterns' ages do not start again), not only what this hold needs: the restored
    # engine all of `a`'s state (the importer realigns its recent-bucket ring on its own).
    assert dumps(b.snapshot()) == dumps(a.snapshot())
    assert born(c.export_sources([SRC.key])) == born(a.export_sources([SRC.key]))
    rest = background(day + 2, day + 8)
    want = novelty_opens(run(a, rest))
    assert len(want) == 1 and want[0].time_ns == (day + 4) * BUCKET  # held 3 buckets more
    assert novelty_opens(run(b, rest)) == want
    assert novelty_opens(run(c, rest)) == want


def _pipeline() -> Pipeline:
    return Pipeline(
        parse_config('{detect: {warmup: "10m", novelty: {source_warmup: "10m"}}}'), None, None
    )


def _feed(p: Pipeline, rows: list[tuple[int, str, str]]) -> list[AnomalyEvent]:
    """rows: (time_ns, severity, body), one batch, through intake and the engine."""
    got: list[AnomalyEvent] = []
    p.dispatch.sink = got.extend
    batch = LogBatch(
        sources=[SRC], source_index=[0] * len(rows), severity=[r[1] for r in rows],
        body=[r[2] for r in rows], time_ns=[r[0] for r in rows], trace_id=[""] * len(rows),
        span_id=[""] * len(rows), unique_id=[""] * len(rows), event_name=[""] * len(rows),
        template_hint=[""] * len(rows),
    )  # fmt: skip
    p.consume(p.intake.process(batch))
    return got


def _history(p: Pipeline, buckets: int) -> None:
    for b in range(buckets):
        _feed(p, [(b * BUCKET + 1, "INFO", f"Cache refreshed in {b % 7 + 3} ms"),
                  (b * BUCKET + 2, "ERROR", "Worker alpha lost its lease")])  # fmt: skip


def test_a_word_variables_new_value_is_not_a_new_pattern() -> None:
    hours = 1440  # 4 h of history
    p = _pipeline()
    _history(p, hours)
    t = hours * BUCKET
    # The word's second value: the miner keeps it apart (too few values to generalise yet)...
    ev = _feed(p, [(t + 1, "ERROR", "Worker beta lost its lease")])
    ev += _feed(p, [(t + 2, "ERROR", "Disk quota exceeded on volume 7")])
    for b in range(hours + 1, hours + 5):
        ev += _feed(p, [(b * BUCKET + 1, "ERROR", "Worker beta lost its lease"),
                        (b * BUCKET + 2, "ERROR", f"Disk quota exceeded on volume {b % 9}")])  # fmt: skip
    assert {t.template for t in p.patterns.templates()} >= {
        "Worker alpha lost its lease",
        "Worker beta lost its lease",
    }
    # ...and it is not news, while a new pattern of the same source at the same time is.
    assert [e.template for e in novelty_opens(ev)] == ["Disk quota exceeded on volume <*>"]


def test_a_held_pattern_that_merges_into_a_known_one_is_dropped() -> None:
    cfg = DetectConfig(warmup=600, cooldown=60, novelty=NoveltyConfig(source_warmup=600, hold=30))
    day = 8640
    new_rh = rhythm_hash(SRC.key, "ERROR", "boom")
    opened = []
    for merge in (False, True):
        eng, _ = settled_day(cfg)
        run(eng, [rows_batch([("boom", day * BUCKET + 3, "ERROR")]), *background(day + 1, day + 3)])
        if merge:  # the miner widened "busy" over it (rhythm: old hash -> the survivor's)
            busy_rh = rhythm_hash(SRC.key, "ERROR", "busy")
            eng.merged(
                [TemplateMerge(SRC.key, "boom", "busy", "pattern <*>", ((new_rh, busy_rh),))]
            )
        opened.append(novelty_opens(run(eng, background(day + 3, day + 8))))
    assert [len(o) for o in opened] == [1, 0]


def test_config_keys() -> None:
    nv = Config().detect.novelty
    assert (nv.hold, nv.hold_max, nv.threshold, nv.incident_gap) == (0.0, 1800.0, 4.0, 120.0)


def test_a_sparse_repeat_of_a_rare_error_is_not_news_while_a_stream_of_a_new_one_is() -> None:
    # A young source (1.5 h, two rare templates seen once): a rare normal ERROR (its rate about
    # one an hour) comes, and once more 7 minutes later, inside the hold. A chance repeat is
    # unlikely for it, but as unlikely for an incident's new pattern, which comes at least
    # every `incident_gap` (2 min): no episode, however many buckets of the hold judge it.
    young = Engine(CFG)
    t = 540
    ev = run(young, background(0, t, rare=(200, 400)))
    rows: list[list[tuple[str, int, str]]] = [[] for _ in range(200)]
    rows[0] = [("rare", t * BUCKET + 3, "ERROR")]
    rows[42] = [("rare", (t + 42) * BUCKET + 3, "ERROR")]
    ev += run(young, with_rows(t, rows))
    assert novelty_opens(ev) == []
    # A new ERROR at an incident's pace (one a minute, half the floor's gap) on the same source,
    # judged by the same evidence, opens with its second record.
    t += 200
    rows = [[("bang", (t + b) * BUCKET + 4, "ERROR")] if b % 6 == 0 else [] for b in range(60)]
    (op,) = novelty_opens(run(young, with_rows(t, rows)))
    assert op.template == "pattern bang <*>" and op.time_ns == (t + 7) * BUCKET
