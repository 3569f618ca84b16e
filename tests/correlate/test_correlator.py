"""The correlation rules one by one: temporal with relatedness, trace, semantic; merges,
resolution with cool-down, bounds, determinism and the snapshot round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.correlate.conftest import T0, S, ev, src, tid
from via_otlp.correlate.config import CorrelateConfig, RelatednessConfig
from via_otlp.correlate.correlator import Correlator, incident_id
from via_otlp.correlate.embeddings import HashingEmbedder
from via_otlp.errors import ConfigError
from via_otlp.model import EpisodeState, IncidentEventKind, IncidentState, LinkType

R = EpisodeState.RESOLVED
EMB = HashingEmbedder(256)


def cfg(**kw: object) -> CorrelateConfig:
    kw.setdefault("resolve_cooldown", 0.0)
    return CorrelateConfig(enabled=True, **kw)  # type: ignore[arg-type]


def kinds(events: list) -> list[str]:
    return [e.kind.value for e in events]


def test_first_episode_opens_an_incident_with_a_deterministic_id() -> None:
    c = Correlator(cfg())
    out = c.observe(ev("a", src("db")))
    assert kinds(out) == ["opened"]
    inc = out[0].incident
    assert inc.id == incident_id("a") and inc.root_episode_id == "a"
    assert inc.state is IncidentState.OPEN and inc.sources == ("db@prod",)
    assert inc.title.startswith("spike in db: ")


def test_temporal_same_source_links() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("db"), template="pool exhausted"))
    out = c.observe(ev("b", src("db"), t=30, template="slow query on <*>"))
    assert kinds(out) == ["updated"]
    links = out[0].incident.links
    assert [(x.type, x.linked_episode_id) for x in links] == [(LinkType.TEMPORAL, "a")]
    window = c.config.window
    assert links[0].confidence == pytest.approx(0.5 + 0.5 * (1 - 30 / window))  # 30 s apart


def test_temporal_unrelated_services_do_not_link() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("db", "data")))
    out = c.observe(ev("b", src("mailer", "comms")))
    assert kinds(out) == ["opened"]
    assert c.stats().open_incidents == 2


def test_temporal_configured_dependency_links_both_ways_and_decays_with_the_gap() -> None:
    c = Correlator(cfg(relatedness=RelatednessConfig(dependencies=("checkout -> db",))))
    c.observe(ev("a", src("db", "data"), template="pool exhausted"))
    out = c.observe(ev("b", src("checkout", "shop"), t=10, template="payment failed"))
    (link,) = out[0].incident.links
    assert link.type is LinkType.TEMPORAL
    assert link.confidence == pytest.approx(0.9 * (0.5 + 0.5 * (1 - 10 / c.config.window)))
    # Past the window (400 s after db's episode ended, the window is 300 s): no link.
    far = Correlator(
        cfg(resolve_cooldown=600.0, relatedness=RelatednessConfig(dependencies=("checkout -> db",)))
    )
    far.observe(ev("a", src("db", "data"), state=R, t=0))
    assert kinds(far.observe(ev("b", src("checkout", "shop"), t=400))) == ["opened"]


def test_temporal_same_namespace_links_only_when_close() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("cart", "shop"), template="cart failed"))
    out = c.observe(ev("b", src("checkout", "shop"), t=10, template="payment failed"))
    assert kinds(out) == ["updated"]
    c2 = Correlator(cfg())
    c2.observe(ev("a", src("cart", "shop"), state=R, template="cart failed"))
    c2.observe(ev("x", src("cart", "shop"), template="keep it open"))
    # 90 s after cart's episode ended: 0.6 * (0.5 + 0.5 * 0.25) < 0.5
    out2 = c2.observe(ev("b", src("checkout", "shop"), t=90, started=90, template="payment failed"))
    assert all(link.linked_episode_id != "a" for link in out2[-1].incident.links)


def test_a_long_open_episode_does_not_pull_in_what_begins_much_later() -> None:
    deps = RelatednessConfig(dependencies=("checkout -> db",))
    c = Correlator(cfg(relatedness=deps, resolve_cooldown=600.0))
    c.observe(ev("drift", src("checkout", "shop"), template="order placed"))  # open for hours
    out = c.observe(ev("disk", src("db", "data"), t=3 * 3600, template="disk full on <*>"))
    assert kinds(out) == ["opened"]
    # ...but what begins right after an episode ended follows it (a drop, then the catch-up).
    c.observe(ev("drop", src("db", "data"), t=4 * 3600, template="query <*>"))
    c.observe(ev("drop", src("db", "data"), t=4 * 3600 + 300, state=R, started=4 * 3600))
    out = c.observe(ev("spike", src("db", "data"), t=4 * 3600 + 330, template="query <*>"))
    assert [x.linked_episode_id for x in out[-1].incident.links if x.episode_id == "spike"] == [
        "drop"
    ]


def test_trace_link_joins_unrelated_services() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("index", "data"), traces=(tid(1), tid(2))))
    out = c.observe(ev("b", src("search", "discovery"), t=10, traces=(tid(2), tid(9))))
    assert kinds(out) == ["updated"]
    (link,) = out[0].incident.links
    assert link.type is LinkType.TRACE and link.confidence == pytest.approx(0.95)
    # The pair is now learned as related: a later episode of theirs links in time alone.
    assert c.relatedness(src("index", "data"), src("search", "discovery")) == pytest.approx(0.8)


def test_semantic_link_to_an_open_incident_member() -> None:
    c = Correlator(cfg())
    t1 = "connection refused to <*> on port <*>"
    t2 = "connection refused to <*> on port <*> (retrying)"
    c.observe(ev("a", src("billing", "b")), EMB.embed_one(t1))
    out = c.observe(ev("b", src("ledger", "l"), t=3600, template=t2), EMB.embed_one(t2))
    assert kinds(out) == ["updated"]
    (link,) = out[0].incident.links
    assert link.type is LinkType.SEMANTIC and link.confidence >= 0.85
    # Dissimilar templates do not link; nor does an episode without a vector.
    assert kinds(c.observe(ev("c", src("x", "x"), t=3600), EMB.embed_one("user logged in"))) == [
        "opened"
    ]
    assert kinds(c.observe(ev("d", src("y", "y"), t=3600, template=t1), None)) == ["opened"]
    assert c.stats().episodes_without_vector == 1


def test_resolves_when_every_episode_has_and_after_the_cooldown() -> None:
    c = Correlator(cfg(resolve_cooldown=60.0))
    c.observe(ev("a", src("db")))
    c.observe(ev("b", src("db"), t=10))
    assert kinds(c.observe(ev("a", src("db"), t=50, state=R, started=0))) == ["updated"]
    assert kinds(c.observe(ev("b", src("db"), t=70, state=R, started=10))) == ["updated"]
    assert c.advance(T0 + 100 * S) == []
    out = c.advance(T0 + 130 * S)
    assert kinds(out) == ["resolved"]
    inc = out[0].incident
    assert inc.state is IncidentState.RESOLVED and inc.ended_ns == T0 + 70 * S
    assert c.get(inc.id) is None and c.incident_of("b") == inc.id


def test_an_episode_during_the_cooldown_keeps_the_incident_open() -> None:
    c = Correlator(cfg(resolve_cooldown=60.0))
    c.observe(ev("a", src("db")))
    c.observe(ev("a", src("db"), t=20, state=R, started=0))
    c.observe(ev("b", src("db"), t=40))
    assert c.advance(T0 + 200 * S) == []
    assert kinds(c.observe(ev("b", src("db"), t=250, state=R, started=40))) == ["updated"]
    assert kinds(c.advance(T0 + 310 * S)) == ["resolved"]


def test_a_bridging_episode_merges_incidents_into_the_oldest() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("checkout", "shop"), traces=(tid(1),)))
    c.observe(ev("b", src("cart", "shop2"), t=5, traces=(tid(2),)))
    assert c.stats().open_incidents == 2
    out = c.observe(ev("c", src("db", "data"), t=10, traces=(tid(1), tid(2))))
    assert kinds(out) == ["merged", "updated"]
    merged, kept = out[0].incident, out[1].incident
    assert merged.id == incident_id("b") and merged.merged_into == incident_id("a")
    assert set(kept.episode_ids) == {"a", "b", "c"}
    assert c.incident_of("b") == incident_id("a")


def test_trace_ids_arriving_with_a_resolution_merge_incidents() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("index", "data")))
    c.observe(ev("b", src("search", "disc"), t=5, traces=(tid(7),)))
    out = c.observe(ev("a", src("index", "data"), t=30, state=R, started=0, traces=(tid(7),)))
    assert "merged" in kinds(out)
    assert c.incident_of("b") == c.incident_of("a") == incident_id("a")


def test_bounds_evict_the_least_recent_incident() -> None:
    c = Correlator(cfg(max_open_incidents=2))
    c.observe(ev("a", src("s1", "1")))
    c.observe(ev("b", src("s2", "2"), t=1))
    out = c.observe(ev("c", src("s3", "3"), t=2))
    assert kinds(out) == ["resolved", "opened"] and out[0].incident.id == incident_id("a")
    assert c.stats().incidents_evicted == 1 and c.stats().open_incidents == 2


def test_max_members_bounds_what_is_stored_but_not_resolution() -> None:
    c = Correlator(cfg(max_members=2))
    for i in range(4):
        c.observe(ev(f"e{i}", src("db"), t=i))
    inc = c.get(incident_id("e0"))
    assert inc is not None and len(inc.members) == 2 and c.stats().members_overflow == 2
    for i in range(3):
        c.observe(ev(f"e{i}", src("db"), t=10 + i, state=R, started=i))
    assert c.get(incident_id("e0")) is not None  # e3 still open
    assert kinds(c.observe(ev("e3", src("db"), t=20, state=R, started=3))) == [
        "updated",
        "resolved",
    ]


def test_bad_parameters_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"correlate.merge_confidence"):
        Correlator(CorrelateConfig(min_link_confidence=0.9, merge_confidence=0.5))
    with pytest.raises(ConfigError, match=r"correlate.relatedness.dependencies\[0\]"):
        Correlator(CorrelateConfig(relatedness=RelatednessConfig(dependencies=("a - b",))))


def _script(c: Correlator, events: list, vectors: bool = True) -> list:
    out = []
    for e in events:
        out += c.observe(e, EMB.embed_one(e.template) if vectors else None)
    return out


SCRIPT = [
    ev("a", src("db", "data"), traces=(tid(1),), template="pool exhausted"),
    ev("b", src("checkout", "shop"), t=10, traces=(tid(1),), template="payment failed"),
    ev("m", src("mailer", "comms"), t=12, template="smtp rejected"),
    ev("a", src("db", "data"), t=60, state=R, started=0, traces=(tid(1), tid(3))),
    ev("b", src("checkout", "shop"), t=70, state=R, started=10),
    ev("m", src("mailer", "comms"), t=80, state=R, started=12),
]


def test_deterministic_and_the_snapshot_round_trips() -> None:
    a, b = Correlator(cfg()), Correlator(cfg())
    assert [e.incident for e in _script(a, SCRIPT)] == [e.incident for e in _script(b, SCRIPT)]
    c = Correlator(cfg(resolve_cooldown=1000.0))
    _script(c, SCRIPT[:3])
    snap = json.loads(json.dumps(c.snapshot()))
    d = Correlator(cfg(resolve_cooldown=1000.0))
    d.restore(snap)
    assert d.open_incidents() == c.open_incidents()
    assert d.snapshot() == c.snapshot()
    rest_c, rest_d = _script(c, SCRIPT[3:]), _script(d, SCRIPT[3:])
    assert [e.incident for e in rest_c] == [e.incident for e in rest_d]
    # Vectors survive (as float16): a semantic link still forms after restore.
    out = d.observe(
        ev("z", src("other", "o"), t=90, template="pool exhausted"), EMB.embed_one("pool exhausted")
    )
    assert any(x.type is LinkType.SEMANTIC for x in out[-1].incident.links)
    with pytest.raises(ValueError, match="version"):
        d.restore({"v": 99})


def test_late_events_of_forgotten_incidents_are_counted() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("db")))
    c.observe(ev("a", src("db"), t=10, state=R, started=0))
    assert c.observe(ev("a", src("db"), t=20, state=R, started=0)) == []
    assert c.stats().late_events == 1


def test_attach_vector_late_enables_semantic_links() -> None:
    c = Correlator(cfg())
    c.observe(ev("a", src("billing", "b"), template="disk full on <*>"), None)
    assert c.attach_vector("a", EMB.embed_one("disk full on <*>"))
    out = c.observe(
        ev("b", src("x", "x"), t=3000, template="disk full on <*>"),
        EMB.embed_one("disk full on <*>"),
    )
    assert out[-1].kind is IncidentEventKind.UPDATED
    assert np.isclose(out[-1].incident.links[0].confidence, 1.0, atol=1e-3)
