"""Schema inference: appear, vanish and type change with real weight; snapshots; bounds."""

from __future__ import annotations

import json

from via_otlp.model import AnomalyKind, AttributeSample, EpisodeState, LogBatch, Source
from via_otlp.registry.config import SchemaDriftConfig
from via_otlp.registry.schemas import AttributeScope, SchemaTracker

S = 1_000_000_000
WINDOW = 60
CFG = SchemaDriftConfig(
    window=WINDOW, min_samples=20, warmup_windows=2, min_weight=0.1, learn_rate=0.2
)
API = Source.from_attributes((("service.name", "api"),))
RES = (("service.name", "string"), ("host.name", "string"))


def batch(samples: list[tuple[tuple[str, str], ...]], source: Source = API) -> LogBatch:
    return LogBatch(
        sources=[source], attribute_samples=[AttributeSample(0, a, RES) for a in samples]
    )


def mixed(
    n: int, base: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...], share: float
):
    k = int(n * share)
    return [base + extra] * k + [base] * (n - k)


class Clock:
    def __init__(self, tracker: SchemaTracker) -> None:
        self.t = tracker
        self.now = 1_000 * S
        tracker.check(self.now)

    def window(self, samples) -> list:
        self.t.observe(batch(samples))
        self.now += WINDOW * S
        return self.t.check(self.now)


BASE = (("user.id", "string"), ("http.status", "int"))


def learned() -> tuple[SchemaTracker, Clock]:
    t = SchemaTracker(CFG)
    c = Clock(t)
    for _ in range(3):
        assert c.window([BASE] * 100) == []
    return t, c


def test_stable_schema_raises_nothing() -> None:
    _, c = learned()
    for _ in range(5):
        assert c.window([BASE] * 100) == []


def test_new_key_with_weight_opens_then_resolves() -> None:
    _, c = learned()
    events = c.window(mixed(100, BASE, (("tenant", "string"),), 0.4))
    assert len(events) == 1
    e = events[0]
    assert (e.kind, e.state, e.template) == (
        AnomalyKind.SCHEMA,
        EpisodeState.OPEN,
        "log attribute tenant",
    )
    assert e.observed == 0.4 and e.expected == 0.0
    assert "appeared" in e.explanation
    later = c.window(mixed(100, BASE, (("tenant", "string"),), 0.4))
    assert [(x.episode_id, x.state) for x in later] == [(e.episode_id, EpisodeState.RESOLVED)]


def test_rare_new_key_is_not_an_anomaly() -> None:
    _, c = learned()
    assert c.window(mixed(100, BASE, (("debug.flag", "bool"),), 0.05)) == []


def test_vanished_key() -> None:
    _, c = learned()
    events = c.window([(("http.status", "int"),)] * 100)
    assert [(e.template, e.state) for e in events] == [("log attribute user.id", EpisodeState.OPEN)]
    assert "vanished" in events[0].explanation


def test_type_change() -> None:
    _, c = learned()
    events = c.window([(("user.id", "int"), ("http.status", "int"))] * 100)
    assert [e.template for e in events] == ["log attribute user.id"]
    assert "changed type: int" in events[0].explanation


def test_warmup_and_min_samples_hold_alerts_back() -> None:
    t = SchemaTracker(CFG)
    c = Clock(t)
    assert c.window([BASE] * 100) == []
    assert c.window([(*BASE, ("new", "int"))] * 100) == []  # second window: still warming up
    _t2, c2 = learned()
    assert c2.window([(*BASE, ("new", "int"))] * 5) == []  # too few samples: window carries on


def test_events_are_deterministic_and_replayable() -> None:
    runs = []
    for _ in range(2):
        _, c = learned()
        runs.append(c.window(mixed(100, BASE, (("tenant", "string"),), 0.5)))
    assert runs[0] == runs[1]


def test_snapshot_round_trip_keeps_baseline_and_open_episodes() -> None:
    t, c = learned()
    opened = c.window(mixed(100, BASE, (("tenant", "string"),), 0.5))
    snap = json.loads(json.dumps(t.snapshot()))
    t2 = SchemaTracker(CFG)
    t2.restore(snap)
    assert t2.snapshot() == snap
    t2.observe(batch(mixed(100, BASE, (("tenant", "string"),), 0.5)))
    resolved = t2.check(c.now + WINDOW * S)
    assert [(e.episode_id, e.state) for e in resolved] == [
        (opened[0].episode_id, EpisodeState.RESOLVED)
    ]


def test_schema_view_and_dirty_rows() -> None:
    t, _ = learned()
    view = t.schema(API.key)
    assert view is not None and view.windows == 3
    stats = {(a.scope, a.key): a for a in view.attributes}
    assert stats[(AttributeScope.LOG, "user.id")].presence == 1.0
    assert stats[(AttributeScope.LOG, "user.id")].types == {"string": 1.0}
    assert stats[(AttributeScope.RESOURCE, "host.name")].presence == 1.0
    rows = t.take_dirty()
    assert [r.source.key for r in rows] == [API.key]
    assert t.take_dirty() == []


def test_bounds_are_counted() -> None:
    t = SchemaTracker(SchemaDriftConfig(max_sources=1, max_keys_per_source=3))
    t.observe(batch([BASE]))
    t.observe(batch([BASE], Source.from_attributes((("service.name", "other"),))))
    assert t.sources() == [API.key]
    assert t.overflow_sources == 1
    assert t.overflow_keys == 1  # BASE + RES hold 4 keys, the bound is 3


def test_top_templates_profile() -> None:
    t = SchemaTracker(SchemaDriftConfig(window=10, min_samples=1))
    t.check(0)
    n = 1600
    b = LogBatch(
        sources=[API],
        source_index=[0] * n,
        template_id=["a"] * (n * 3 // 4) + ["b"] * (n // 4),
        template=["GET <*>"] * (n * 3 // 4) + ["POST <*>"] * (n // 4),
        attribute_samples=[AttributeSample(0, BASE, RES)],
    )
    t.observe(b)
    t.check(10 * S)
    view = t.schema(API.key)
    assert view is not None
    top = {r.template_id: r for r in view.top_templates}
    assert abs(top["a"].share - 0.75) < 0.05
    assert abs(top["a"].rate_per_s - 120.0) < 10  # 1200 records in 10 s
