"""The patterns stage: columns, hints, rhythm hashes, stats, snapshot and restart."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import pytest

from via_otlp.model import LogBatch, Source
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.patterns.stage import PatternStage, SnapshotError

DATA = Path(__file__).resolve().parent.parent / "data" / "loghub-2k"
SOURCES = [
    Source.from_attributes((("service.name", "a"),)),
    Source.from_attributes((("service.name", "b"),)),
]


def batch(
    bodies: list[str], source_index: list[int] | None = None, hints: list[str] | None = None
) -> LogBatch:
    n = len(bodies)
    return LogBatch(
        sources=SOURCES,
        source_index=source_index or [0] * n,
        severity=["INFO"] * n,
        body=bodies,
        template_hint=hints or [""] * n,
    )


def test_apply_fills_template_columns_and_rhythm_hashes() -> None:
    stage = PatternStage()
    b = batch(
        ["user=alice logged in from 10.0.0.1", "user=bob logged in from 10.0.0.2", "x"], [0, 0, 1]
    )
    stage.apply(b)
    assert b.template_id[0] == b.template_id[1]
    assert b.template[1] == "user=<*> logged in from <*>"
    assert b.rhythm_hash[0] == rhythm_hash("a", "INFO", b.template_id[0])
    assert b.rhythm_hash[2] == rhythm_hash("b", "INFO", b.template_id[2])
    assert all(len(t) <= 10 for t in b.template_id)


def test_sources_have_separate_models() -> None:
    stage = PatternStage()
    b = batch(["disk full", "disk full"], [0, 1])
    stage.apply(b)
    assert b.rhythm_hash[0] != b.rhythm_hash[1]
    assert stage.stats().sources == 2


def test_collector_template_hint_is_used() -> None:
    stage = PatternStage()
    b = batch(["user 1 in", "user 2 in"], hints=["user <*> in", ""])
    stage.apply(b)
    assert b.template[0] == "user <*> in" and b.template_id[0].startswith("h")
    assert stage.stats().hinted == 1
    off = PatternStage(PatternsConfig(use_template_hint=False))
    b = batch(["user 1 in"], hints=["user <*> in"])
    off.apply(b)
    assert not b.template_id[0].startswith("h")


def test_stats_count_templates_and_fast_path() -> None:
    stage = PatternStage()
    stage.apply(batch([f"GET /x/{i} took {i}ms" for i in range(50)]))
    stats = stage.stats()
    assert stats.templates == 1 and stats.lines == 50 and stats.fast_path_hits >= 48
    assert stats.flooding_sources == 0 and stage.flooding_sources() == []


def test_sources_are_bounded() -> None:
    stage = PatternStage(PatternsConfig(max_sources=1))
    stage.apply(batch(["a b c", "a b c"], [0, 1]))
    assert stage.stats().sources == 1 and stage.stats().source_evictions == 1


def _replay() -> list[str]:
    with (DATA / "OpenSSH" / "OpenSSH_2k.log_structured_corrected.csv").open(
        newline="", encoding="utf-8"
    ) as f:
        return [r["Content"] for r in csv.DictReader(f)]


def test_rhythm_hashes_identical_before_and_after_restart() -> None:
    lines = _replay()
    half = len(lines) // 2
    live = PatternStage()
    live.apply(batch(lines[:half]))
    saved = json.dumps(live.snapshot())  # the snapshot is plain JSON: no pickle
    second_half = batch(lines[half:])
    live.apply(second_half)

    restarted = PatternStage()
    restarted.restore(json.loads(saved))
    replayed = batch(lines[half:])
    restarted.apply(replayed)
    assert replayed.rhythm_hash == second_half.rhythm_hash
    assert replayed.template_id == second_half.template_id


def test_restore_rejects_other_versions() -> None:
    stage = PatternStage()
    with pytest.raises(SnapshotError, match="version"):
        stage.restore({"kind": "via-otlp.patterns", "version": 99, "sources": {}})
    with pytest.raises(SnapshotError, match="source 'x'"):
        stage.restore(
            {"kind": "via-otlp.patterns", "version": 1, "sources": {"x": {"templates": [[1]]}}}
        )


def test_the_issue_lines_cost_bounded_work_through_the_stage() -> None:
    # The two lines that froze `serve` (sent as NDJSON): 100 block ids, then 9.
    ids = [f"blk_{'-' if i % 2 else ''}{10**17 + 7919 * i}" for i in range(100)]
    stage = PatternStage()
    b = batch(
        [
            f"ask 10.0.0.1:50010 to delete {' '.join(ids)} now",
            f"ask 10.0.0.2:50010 to delete {' '.join(ids[:9])} now",
        ]
    )
    stage.apply(b)
    assert b.template[1] == "ask <*> to delete <*> <*> <*> <*> <*> <*> <*> <*> <*> now"
    # one span comparison, bounded by template tokens x (line tokens + 1)
    assert stage.miner(SOURCES[0].key).work.steps <= 64 * 15


def test_merges_are_reported_with_the_rhythm_hashes_they_join() -> None:
    stage = PatternStage()
    lines = [
        "job db-2 finished for alice",
        "job db-2 finished for dave",
        "job web-1 finished for dave",
        "job edge-4 finished for carol",
        "job app-3 finished for bob",
    ]
    b = batch(lines)
    b.severity = ["INFO", "INFO", "WARN", "ERROR", "INFO"]
    stage.apply(b)
    merges = stage.take_merges()
    assert merges and stage.take_merges() == []  # taken once
    key = SOURCES[0].key
    survivor = b.template_id[-1]
    assert survivor == b.template_id[0]  # the oldest id stays
    assert {m.new_id for m in merges} == {survivor}
    assert {m.old_id for m in merges} == set(b.template_id) - {survivor}
    for m in merges:
        assert m.source_key == key and m.template == "job <*> finished for <*>"
        for old, new in m.rhythm:
            assert old in b.rhythm_hash and new in {
                rhythm_hash(key, sev, survivor) for sev in ("INFO", "WARN", "ERROR")
            }
    moved = {old for m in merges for old, _ in m.rhythm}
    young = {h for h, tid in zip(b.rhythm_hash, b.template_id, strict=True) if tid != survivor}
    assert young <= moved


def test_hinted_templates_are_listed_and_bounded() -> None:
    stage = PatternStage(PatternsConfig(max_templates_per_source=10))
    hints = ["user <*> in", "user <*> in", "disk <*> full"]
    stage.apply(
        batch(["user 1 in", "user 2 in", "disk a full", "mined line 7"], hints=[*hints, ""])
    )
    listed = {(t.template, t.count, t.hinted) for t in stage.templates()}
    assert ("user <*> in", 2, True) in listed and ("disk <*> full", 1, True) in listed
    assert ("mined line <*>", 1, False) in listed
    stage.apply(batch([f"x {i}" for i in range(30)], hints=[f"event{i} <*>" for i in range(30)]))
    assert sum(t.hinted for t in stage.templates()) == 10
    again = PatternStage()
    again.restore(json.loads(json.dumps(stage.snapshot())))
    assert set(again.templates()) == set(stage.templates())


def test_sources_move_between_stages_with_their_ids() -> None:
    lines = _replay()
    a_lines, b_lines = lines[:600], lines[600:900]
    one = PatternStage()
    one.apply(batch(a_lines, [i % 2 for i in range(len(a_lines))]))
    tree = json.loads(json.dumps(one.export_sources([SOURCES[0].key, "no-such-source"])))
    assert list(tree["sources"]) == [SOURCES[0].key]
    other = PatternStage()
    other.apply(batch(["something else entirely 1"]))  # replaced by the import
    other.import_sources(tree)
    assert {t.source_key for t in other.templates()} == {SOURCES[0].key}
    left, right = batch(b_lines), batch(b_lines)
    one.apply(left)
    other.apply(right)
    assert left.template_id == right.template_id and left.rhythm_hash == right.rhythm_hash


def test_version_1_snapshots_still_restore() -> None:
    v1 = {
        "kind": "via-otlp.patterns",
        "version": 1,
        "sources": {
            SOURCES[0].key: {
                "templates": [["aaaaaaaaaa", ["user", "<*>", "in"], 5]],
                "flooding": False,
                "values": [],
            }
        },
    }
    stage = PatternStage()
    stage.restore(v1)
    b = batch(["user 7 in"])
    stage.apply(b)
    assert b.template_id == ["aaaaaaaaaa"]
    assert stage.snapshot()["version"] == 2


def test_the_stage_keeps_the_string_a_profile_holds_for_a_rhythm_hash() -> None:
    # After a restart the profile table holds its rhythm hashes as parsed from the snapshot;
    # the stage worked each out again on its template's first line: two strings a profile.
    lines = ["user 1 in", "user 2 in", "disk full on sda", "user 3 in"]
    where, hints = [0, 0, 1, 0], ["", "", "disk full on <*>", ""]
    first = batch(lines, where, hints)
    first.severity = ["INFO", "INFO", "INFO", "WARN"]  # (one template at two severities)
    PatternStage().apply(first)
    profiles = {h: "".join(list(h)) for h in first.rhythm_hash}  # equal, other objects
    assert len(profiles) == 3
    stage = PatternStage()
    stage.known_hash = lambda h: profiles.get(h, h)
    for _ in range(2):
        again = batch(lines, where, hints)
        again.severity = list(first.severity)
        stage.apply(again)
        assert again.rhythm_hash == first.rhythm_hash
        assert all(h is profiles[h] for h in again.rhythm_hash)
    new = batch(["user 4 in"], [1])  # no profile yet: its own string
    stage.apply(new)
    assert new.rhythm_hash[0] not in profiles
    assert new.rhythm_hash[0] == rhythm_hash(SOURCES[1].key, "INFO", new.template_id[0])


def test_fast_path_caches_stay_within_their_byte_budget_across_sources() -> None:
    budget = 32 * 1024
    small = PatternStage(PatternsConfig(fast_path_bytes=budget))
    free = PatternStage(PatternsConfig())
    lines = [f"GET /api/orders/{i} from shop{i % 7}.example took {i % 97} ms" for i in range(300)]
    for s in range(40):  # forty sources, each caching every new line shape it meets
        body = [f"src{s} {line} retry={j % 3}" for j, line in enumerate(lines)]
        source = [Source.from_attributes((("service.name", f"svc{s}"),))]
        a = LogBatch(sources=source, source_index=[0] * len(body), severity=["INFO"] * len(body),
                     body=body)  # fmt: skip
        b = LogBatch(sources=source, source_index=[0] * len(body), severity=["INFO"] * len(body),
                     body=body)  # fmt: skip
        small.apply(a)
        free.apply(b)
        assert a.template_id == b.template_id  # dropping caches never changes a template
        stats = small.stats()
        assert stats.cache_bytes <= budget
        assert stats.cache_bytes == sum(m.cache_bytes for m in small._miners.values())
    assert small.stats().cache_clears > 0
    assert free.stats().cache_bytes > 3 * budget  # the budget was what bounded `small`


def test_sender_named_templates_cost_the_stage_little_memory() -> None:
    # Hinted templates never merge, so the stage keeps no severities for them; a set per
    # (source, template) made it ~440 B per template, then ~120 B the rhythm-hash cache's entry;
    # now the hash lives on the template (in miner.py) and the stage keeps only the batch's
    # three columns (~27 B a record).
    stage = PatternStage()
    n = 5_000
    hints = [f"event kind {i}" for i in range(n)]
    b = batch([f"event {i}" for i in range(n)], hints=hints)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        stage.apply(b)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    stage_file = tracemalloc.Filter(True, "*/via_otlp/patterns/stage.py")
    grown = sum(
        d.size_diff
        for d in after.filter_traces([stage_file]).compare_to(
            before.filter_traces([stage_file]), "filename"
        )
    )
    assert len(set(b.template_id)) == n
    assert grown / n < 40, grown / n


def test_rhythm_hashes_stay_right_when_a_template_changes_severity() -> None:
    # The hash of the severity a template was last seen at is kept on the template; the others
    # come from the stage's cache (or are computed), never a stale one.
    stage = PatternStage()
    sevs = ["INFO", "WARN", "INFO", "ERROR", "ERROR", "WARN", "INFO"]
    for sev in sevs:
        b = batch(["disk full on sda", "disk full on sdb"], [0, 1])
        b.severity = [sev, sev]
        stage.apply(b)
        assert b.rhythm_hash == [
            rhythm_hash(src, sev, tid) for src, tid in zip("ab", b.template_id, strict=True)
        ]


def test_a_sender_named_template_costs_under_380_bytes_in_all() -> None:
    # Everything the stage keeps for one (the template, its id and rhythm hash, its entry,
    # a share of its source's model): 412 B with a token list per template, 348 B without.
    sources = [Source.from_attributes((("service.name", f"s{i}"),)) for i in range(50)]
    n = 5_000
    b = LogBatch(
        sources=sources,
        source_index=[i % 50 for i in range(n)],
        severity=["INFO"] * n,
        body=[f"event {i}" for i in range(n)],
        template_hint=[f"event kind {i}" for i in range(n)],
    )
    stage = PatternStage()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stage.apply(b)
        b.template_id = b.template = b.rhythm_hash = []  # the batch's columns are not kept
        per_template = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert stage.stats().templates + stage.stats().hinted >= n
    assert per_template < 380, per_template
