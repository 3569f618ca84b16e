"""The engine on deterministic event-time streams: every kind, silence, episodes, state."""

from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import replace

import numpy as np
import pytest
import xxhash

from tests.detect.trees import dumps, roundtrip
from via_otlp.config import parse_config
from via_otlp.detect import DetectConfig, Engine, ProfileState
from via_otlp.detect import engine as engine_module
from via_otlp.detect import samples as samples_module
from via_otlp.detect.config import NoveltyConfig
from via_otlp.errors import ConfigError
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, LogBatch, Source

S = 1_000_000_000
BUCKET = 10 * S
SRC = Source.from_attributes(
    (("service.name", "checkout"), ("deployment.environment.name", "prod"))
)
CFG = DetectConfig(
    warmup=600, half_life=1800, cooldown=60, novelty=NoveltyConfig(source_warmup=600)
)


def batch(rows: list[tuple]) -> LogBatch:
    """rows: (rhythm_hash, time_ns[, severity[, unique_id[, trace_id]]])."""
    n = len(rows)
    rh = [r[0] for r in rows]
    return LogBatch(
        sources=[SRC],
        source_index=[0] * n,
        severity=[r[2] if len(r) > 2 else "INFO" for r in rows],
        body=[""] * n,
        time_ns=[r[1] for r in rows],
        trace_id=[r[4] if len(r) > 4 else "" for r in rows],
        unique_id=[r[3] if len(r) > 3 else "" for r in rows],
        template_id=[f"T{h}" for h in rh],
        template=[f"pattern {h} <*>" for h in rh],
        rhythm_hash=rh,
    )


def steady(rh: str, rate: float, b0: int, b1: int, seed: int = 1, **kw) -> list[LogBatch]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(b0, b1):
        k = int(rng.poisson(rate)) if rate else 0
        out.append(batch([(rh, b * BUCKET + 1 + i, *kw.get("extra", ())) for i in range(k)]))
    return out


def run(eng: Engine, batches: list[LogBatch], flush: bool = True) -> list[AnomalyEvent]:
    ev: list[AnomalyEvent] = []
    for b in batches:
        ev += eng.observe(b)
    return ev + (eng.flush() if flush else [])


def kinds(events: list[AnomalyEvent]) -> list[tuple[str, str]]:
    return [(e.kind.value, e.state.value) for e in events]


def test_spike_opens_then_resolves_with_explanation_and_samples() -> None:
    eng = Engine(CFG)
    bs = steady("a" * 16, 3, 0, 720)
    bs.append(batch([("a" * 16, 720 * BUCKET + i, "ERROR", "", f"{i:032x}") for i in range(60)]))
    bs += steady("a" * 16, 3, 721, 760, seed=2)
    ev = run(eng, bs)
    assert kinds(ev) == [("spike", "open"), ("spike", "resolved")]
    op, res = ev
    assert op.observed == 60 and 2 < op.expected < 4 and op.score >= 50
    assert op.started_ns == 720 * BUCKET and op.time_ns == 721 * BUCKET and op.ended_ns == 0
    assert res.ended_ns == 721 * BUCKET and res.episode_id == op.episode_id
    assert len(op.sample_trace_ids) == CFG.max_sample_trace_ids
    assert op.explanation.startswith("checkout: 'pattern aaaaaaaaaaaaaaaa <*>' 360/min, usually ")


def test_small_rates_do_not_alarm_on_a_two() -> None:
    eng = Engine(CFG)
    bs = steady("b" * 16, 0.1, 0, 720)
    bs.append(batch([("b" * 16, 720 * BUCKET + i) for i in range(2)]))
    assert run(eng, bs) == []


def test_silence_in_serve_mode_with_a_controllable_clock() -> None:
    eng = Engine(CFG)
    assert run(eng, steady("c" * 16, 20, 0, 360), flush=False) == []
    ev: list[AnomalyEvent] = []
    now = 360 * BUCKET
    while not ev and now < 400 * BUCKET:
        now += S
        ev += eng.tick(now)
    assert kinds(ev) == [("drop", "open")]
    # First silent bucket is 360; it closes when the clock passes its end plus the lateness.
    assert ev[0].started_ns == 360 * BUCKET and ev[0].observed == 0
    assert now - (361 * BUCKET + round(CFG.allowed_lateness * S)) < 2 * S
    assert "went silent" in ev[0].explanation
    # The silence goes on (each band its score rises into is one update), then records come
    # back: the drop resolves after the cool-down.
    ev = run(eng, steady("c" * 16, 20, 420, 440), flush=False)
    assert kinds(ev)[-1] == ("drop", "resolved")
    assert 1 <= len(ev) - 1 <= 5 and {k for k in kinds(ev)[:-1]} == {("drop", "updated")}


def test_low_rate_template_going_silent_is_a_drop_after_enough_evidence() -> None:
    eng = Engine(CFG)
    run(eng, steady("d" * 16, 2, 0, 360), flush=False)
    ev = eng.tick(420 * BUCKET)
    assert kinds(ev)[0] == ("drop", "open")
    assert all(k == ("drop", "updated") for k in kinds(ev)[1:])
    assert ev[0].started_ns >= 365 * BUCKET  # several silent buckets, not the first one


def test_replay_sees_no_silence_beyond_its_last_event() -> None:
    eng = Engine(CFG)
    run(eng, steady("e" * 16, 20, 0, 360))
    assert eng.flush() == []
    assert eng.stats().watermark_ns < 360 * BUCKET


def test_drift_catches_a_sustained_small_shift() -> None:
    eng = Engine(CFG)
    bs = steady("f" * 16, 50, 0, 720) + steady("f" * 16, 62, 720, 900, seed=5)
    ev = run(eng, bs)
    assert ("drift", "open") in kinds(ev)
    assert "spike" not in {k for k, _ in kinds(ev)}
    first = next(e for e in ev if e.kind is AnomalyKind.DRIFT)
    assert 720 * BUCKET <= first.started_ns <= 780 * BUCKET
    assert "sustained shift up" in first.explanation


def test_cardinality_many_distinct_ids() -> None:
    eng = Engine(CFG)
    rh = "9" * 16
    bs = [
        batch([(rh, b * BUCKET + i, "ERROR", f"user{i % 3}") for i in range(30)])
        for b in range(720)
    ]
    bs.append(batch([(rh, 720 * BUCKET + i, "ERROR", f"user{i}") for i in range(30)]))
    bs += [
        batch([(rh, b * BUCKET + i, "ERROR", f"user{i % 3}") for i in range(30)])
        for b in range(721, 740)
    ]
    ev = run(eng, bs)
    assert kinds(ev) == [("cardinality", "open"), ("cardinality", "resolved")]
    assert ev[0].observed > 25 and ev[0].expected < 5


def test_an_id_whose_hash_is_the_empty_ids_is_still_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records without an id are told apart by their hash (the empty id's); an id that has
    that hash too is looked at and counted all the same (here "user1" is made to have it)."""
    empty = samples_module.EMPTY_ID_HASH
    assert int(empty) == xxhash.xxh64_intdigest(b"")
    real = engine_module._hash_ids

    def colliding(uids: list[str]) -> np.ndarray:
        hashes = real(uids).copy()
        hashes[np.array([u == "user1" for u in uids])] = empty
        return hashes

    monkeypatch.setattr(engine_module, "_hash_ids", colliding)
    eng = Engine(CFG)
    ids = ["user1", "", "user2", "user1"]
    eng.observe(batch([("a" * 16, i * S, "INFO", ids[i % 4]) for i in range(8)]))
    assert sum(float(acc.with_id.sum()) for acc in eng._open.values()) == 6.0


def test_cardinality_at_low_volume_adds_up_over_buckets() -> None:
    """Six mails a bucket to five users: fresh ids never reach min_distinct in one bucket, but
    more distinct ids than five users allow, bucket after bucket, is a cardinality anomaly."""
    rng = np.random.default_rng(3)
    rh = "8" * 16

    def mails(b: int, fresh: bool) -> LogBatch:
        k = int(rng.poisson(6))
        ids = [f"guest{b}-{i}" if fresh else f"user{rng.integers(5)}" for i in range(k)]
        return batch([(rh, b * BUCKET + i, "INFO", u) for i, u in enumerate(ids)])

    quiet = [mails(b, False) for b in range(720)]
    eng = Engine(CFG)
    assert [k for k in kinds(run(eng, quiet, flush=False)) if k[0] == "cardinality"] == []
    ev = run(
        eng, [mails(b, True) for b in range(720, 810)] + [mails(b, False) for b in range(810, 900)]
    )
    assert kinds(ev)[:1] == [("cardinality", "open")]
    assert 720 * BUCKET <= ev[0].started_ns <= 740 * BUCKET


def test_novelty_after_source_warmup_scored_by_severity() -> None:
    # threshold 0: every new pattern past the warm-up opens (evidence: tests/detect/test_novelty)
    eng = Engine(replace(CFG, novelty=NoveltyConfig(source_warmup=600, threshold=0)))
    bs = steady("1" * 16, 2, 0, 70)  # source warms up: the first patterns are not novel
    bs += [
        batch([("2" * 16, 70 * BUCKET + 5, "INFO")]),
        batch([("3" * 16, 70 * BUCKET + 6, "ERROR")]),
    ]
    bs += steady("1" * 16, 2, 71, 90)
    ev = run(eng, bs)
    opens = [e for e in ev if e.state is EpisodeState.OPEN]
    assert [(e.kind, e.rhythm_hash) for e in opens] == [
        (AnomalyKind.NOVELTY, "2" * 16),
        (AnomalyKind.NOVELTY, "3" * 16),
    ]
    assert opens[1].score > opens[0].score
    assert "new ERROR pattern" in opens[1].explanation
    assert [e.state for e in ev if e.rhythm_hash == "3" * 16] == [
        EpisodeState.OPEN,
        EpisodeState.RESOLVED,
    ]


def test_no_novelty_during_source_warmup() -> None:
    eng = Engine(CFG)
    bs = [*steady("1" * 16, 2, 0, 5), batch([("4" * 16, 5 * BUCKET + 1, "ERROR")])]
    assert run(eng, bs) == []


def test_late_records_are_counted_and_folded() -> None:
    eng = Engine(CFG)
    eng.observe(batch([("a" * 16, 100 * BUCKET)]))
    eng.observe(batch([("a" * 16, 200 * BUCKET)]))
    eng.observe(batch([("a" * 16, 50 * BUCKET)]))
    st = eng.stats()
    assert st.late_records == 1 and st.records == 3
    eng.flush()
    prof = eng.profile("a" * 16)
    assert prof is not None and prof.total_count == 3


def test_idle_ttl_and_max_profiles_evict_and_count() -> None:
    eng = Engine(replace(CFG, max_profiles=3, idle_ttl=600))
    eng.observe(batch([(f"{i:016x}", i * S) for i in range(5)]))  # 5 patterns, room for 3
    st = eng.stats()
    assert st.profiles == 3 and st.dropped_records == 2
    eng.observe(batch([("f" * 16, 200 * BUCKET)]))
    eng.flush()
    st = eng.stats()
    assert st.profiles == 1 and st.evictions_idle >= 1


def test_accessors_and_stats() -> None:
    eng = Engine(CFG)
    run(eng, steady("a" * 16, 4, 0, 100))
    (p,) = list(eng.profiles())
    assert (
        p.rhythm_hash == "a" * 16
        and p.source_key == "checkout@prod"
        and p.state is ProfileState.ACTIVE
    )
    assert 3 < p.baseline_mean < 5 and p.baseline_std > 0 and p.total_count > 300
    assert eng.profile("nope") is None
    assert eng.stats().buckets_closed == 100


def mixed_stream() -> list[LogBatch]:
    bs = steady("a" * 16, 3, 0, 400)
    bs.append(
        batch([("a" * 16, 400 * BUCKET + i, "ERROR", f"u{i}", f"{i:032x}") for i in range(50)])
    )
    bs += [batch([("2" * 16, 401 * BUCKET + 3, "ERROR")])]
    bs += steady("a" * 16, 3, 402, 500, seed=9)
    return bs


SPLITS = (1, 200, 400, 401, 408, 450)  # 408: an episode open (403-414)


Copies = dict[int, tuple[Engine, list[AnomalyEvent]]]


def run_copied(batches: list[LogBatch], at: tuple[int, ...]) -> tuple[list[AnomalyEvent], Copies]:
    """`batches` through one engine, flushed at the end: its events, and before each batch index
    of `at` a deep copy of the engine with the events it had given (the engine as a test that
    ran the batches before that index itself would have it)."""
    eng = Engine(CFG)
    ev: list[AnomalyEvent] = []
    copies: Copies = {}
    for i, b in enumerate(batches):
        if i in at:
            copies[i] = (copy.deepcopy(eng), list(ev))
        ev += eng.observe(b)
    return ev + eng.flush(), copies


@functools.cache
def one_run() -> tuple[str, Copies]:
    """`mixed_stream` through one engine, run once for the module (`run_copied`): its events as
    text, and the engine at each of `SPLITS`, which a split test snapshots."""
    events, copies = run_copied(mixed_stream(), SPLITS)
    return repr(events), copies


def uninterrupted() -> str:
    """The events of `mixed_stream` through one engine, as text (`one_run`)."""
    return one_run()[0]


def test_same_input_same_events_byte_for_byte() -> None:
    """Another engine given the same input gives the very events of `one_run`'s."""
    again = repr(run(Engine(CFG), mixed_stream()))
    assert again != repr([]) and again == uninterrupted()


@pytest.mark.parametrize("split", SPLITS)
def test_replay_split_by_snapshot_restore_equals_uninterrupted(split: int) -> None:
    bs = mixed_stream()
    first, ev = copy.deepcopy(one_run()[1][split])  # as if it had run bs[:split] (flush=False)
    state = roundtrip(first.snapshot())
    second = Engine(CFG)
    second.restore(state)
    assert dumps(second.snapshot()) == dumps(first.snapshot())
    ev += run(second, bs[split:])
    assert repr(ev) == uninterrupted()


def test_restore_rejects_other_versions_and_buckets() -> None:
    state = Engine(CFG).snapshot()
    with pytest.raises(ValueError, match="version"):
        Engine(CFG).restore({**state, "version": 0})
    with pytest.raises(ValueError, match="bucket"):
        Engine(replace(CFG, bucket=5.0)).restore(state)


def test_config_keys_and_errors() -> None:
    cfg = parse_config(
        '{detect: {bucket: "5s", cusum_typo: 1}}'.replace("cusum_typo: 1", "drift: {threshold: 8}")
    )
    assert cfg.detect.bucket == 5.0 and cfg.detect.drift.threshold == 8
    with pytest.raises(ConfigError, match=r"detect\.drift\.threshold: must be > 0"):
        parse_config("{detect: {drift: {threshold: -1}}}")
    with pytest.raises(ConfigError, match=r"detect\.typo: unknown key"):
        parse_config("{detect: {typo: 1}}")


def test_baseline_memories_are_checked_in_buckets() -> None:
    """Durations are clock times: 5-minute buckets with the 30-minute default half-life would
    be a six-bucket memory that a slow burst drags up, so the config names the key and the fix."""
    with pytest.raises(
        ConfigError, match=r"detect\.half_life: must be at least 20 buckets \(6000s"
    ):
        parse_config('{detect: {bucket: "5m"}}')
    with pytest.raises(ConfigError, match=r"detect\.dispersion_half_life: must be at least 20"):
        parse_config('{detect: {bucket: "20m", half_life: "8h"}}')
    cfg = parse_config('{detect: {bucket: "5m", half_life: "15h", dispersion_half_life: "7d"}}')
    assert cfg.detect.buckets(cfg.detect.half_life) == 180


def test_a_bogus_timestamp_in_the_first_batch_does_not_rewind_the_clock() -> None:
    """A record stamped 1970 among current ones must not make the engine close fifty years
    of buckets (minutes of a blocked server): it counts as late."""
    eng = Engine(CFG)
    now = 1_790_000_000 * S
    eng.observe(batch([("a" * 16, 1), ("a" * 16, now), ("a" * 16, now + S)]))
    stats = eng.stats()
    assert stats.late_records == 1
    assert stats.buckets_closed <= CFG.buckets(CFG.idle_ttl) + 1


def test_a_tick_after_a_long_silence_closes_a_bounded_number_of_buckets() -> None:
    eng = Engine(CFG)
    run(eng, steady("d" * 16, 5, 0, 100), flush=False)
    before = eng.stats().buckets_closed
    later = 100 * BUCKET + 30 * 86400 * S  # a month without records or ticks
    eng.tick(later, max_buckets=50)
    assert eng.stats().buckets_closed - before <= 50
    for _ in range(5):
        eng.tick(later, max_buckets=50)
    assert eng.stats().buckets_closed - before <= 300  # it carries on, a bounded step at a time


def test_an_escalating_spike_sends_updates_and_resolves_no_more_severe_than_it_opened() -> None:
    """A spike that opens mild and grows far beyond: each band its score rises into is one
    update event (scores still rank, none at 100), and the resolution carries the opening's
    score, so an alert never fires on recovery."""
    eng = Engine(CFG)
    bs = steady("e" * 16, 3, 0, 720)
    for i, k in enumerate((18, 40, 90, 200, 400)):
        bs.append(batch([("e" * 16, (720 + i) * BUCKET + 1 + j) for j in range(k)]))
    bs += steady("e" * 16, 3, 725, 760, seed=2)
    ev = run(eng, bs)
    states = [e.state for e in ev]
    assert states[0] is EpisodeState.OPEN and states[-1] is EpisodeState.RESOLVED
    ups = [e for e in ev if e.state is EpisodeState.UPDATED]
    assert ups and all(e.episode_id == ev[0].episode_id for e in ev)
    scores = [e.score for e in ev[:-1]]
    assert scores == sorted(scores) and len(set(scores)) == len(scores) and max(scores) < 100
    assert all(b // 10 > a // 10 for a, b in itertools.pairwise(scores))
    assert ev[-1].score == ev[0].score < ups[-1].score
