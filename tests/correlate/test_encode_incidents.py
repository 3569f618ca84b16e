"""Incidents → OTLP: a `via.incident` log on open, as members join and on resolve, a span per resolved incident
linking its episodes' spans (pure encoders), and the emitter carrying them."""

from __future__ import annotations

import io

from tests.correlate.conftest import ev, src, tid
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.correlate.correlator import Correlator
from via_otlp.emit import EmitConfig, Emitter
from via_otlp.emit.encode import (
    VIA_INCIDENT_EVENT_NAME,
    episode_span_id,
    episode_trace_id,
    incident_trace_id,
    incidents_to_logs_request,
    incidents_to_spans_request,
)
from via_otlp.model import VIA_SCOPE_NAME, EpisodeState

R = EpisodeState.RESOLVED


def _events() -> list:
    c = Correlator(CorrelateConfig(enabled=True, resolve_cooldown=0))
    out = []
    for e in [
        ev("a", src("db", "data"), traces=(tid(1),), score=90),
        ev("b", src("checkout", "shop"), t=10, traces=(tid(1),)),
        ev("a", src("db", "data"), t=60, state=R, started=0),
        ev("b", src("checkout", "shop"), t=70, state=R, started=10),
    ]:
        out += c.observe(e)
    return out


def test_a_log_per_event_given_with_its_kind() -> None:
    events = _events()
    assert [e.kind.value for e in events] == ["opened", "updated", "updated", "updated", "resolved"]
    req = incidents_to_logs_request(events, with_span_context=True)
    (rl,) = req.resource_logs
    assert {kv.value.string_value for kv in rl.resource.attributes} >= {"db"}
    assert rl.scope_logs[0].scope.name == VIA_SCOPE_NAME
    records = rl.scope_logs[0].log_records
    assert len(records) == 5 and all(r.event_name == VIA_INCIDENT_EVENT_NAME for r in records)
    kinds = [{kv.key: kv.value for kv in r.attributes}["via.incident.event"].string_value
             for r in records]  # fmt: skip
    assert kinds == ["opened", "updated", "updated", "updated", "resolved"]
    assert "Incident growing:" in records[1].body.string_value
    assert "2 anomalies in 2 sources" in records[1].body.string_value
    attrs = {kv.key: kv.value for kv in records[-1].attributes}
    assert attrs["via.incident.state"].string_value == "resolved"
    assert attrs["via.incident.links.trace"].int_value == 1
    assert [v.string_value for v in attrs["via.incident.sources"].array_value.values] == [
        "data/db@prod",
        "shop/checkout@prod",
    ]
    assert (
        records[-1].severity_text == "ERROR"
        and "Incident resolved:" in records[-1].body.string_value
        and "2 anomalies in 2 sources" in records[-1].body.string_value
    )
    assert records[-1].trace_id == incident_trace_id(events[-1].incident.id)


def test_updates_go_out_when_members_join_not_on_every_change(tmp_path) -> None:
    """The correlate stage passes on: opened, the update where `b` joined, resolved — not the
    updates where a member's state or score changed."""
    from via_otlp.correlate.service import Correlation

    class Sink:
        def __init__(self) -> None:
            self.got: list = []

        def submit_incidents(self, events) -> None:
            self.got += events

    sink = Sink()
    stage = Correlation(CorrelateConfig(enabled=True, resolve_cooldown=0), tmp_path, sink=sink)
    events = _events()
    stage._handle(events)
    assert [e.kind.value for e in sink.got] == ["opened", "updated", "resolved"]
    assert len(sink.got[1].incident.episode_ids) == 2
    assert stage.stats().events_by_kind == {"opened": 1, "updated": 1, "resolved": 1}


def test_a_span_per_resolved_incident_links_its_episodes() -> None:
    events = _events()
    req = incidents_to_spans_request(events)
    (span,) = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    inc = events[-1].incident
    assert span.trace_id == incident_trace_id(inc.id)
    assert span.start_time_unix_nano == inc.started_ns and span.end_time_unix_nano == inc.ended_ns
    got = {
        (link.trace_id, link.span_id): {kv.key: kv.value for kv in link.attributes}
        for link in span.links
    }
    a = got[(episode_trace_id("a"), episode_span_id("a"))]
    b = got[(episode_trace_id("b"), episode_span_id("b"))]
    assert a["via.link.reason"].string_value == "root"
    assert (
        b["via.link.reason"].string_value == "trace" and b["via.link.confidence"].double_value > 0.9
    )
    assert incidents_to_spans_request(events) == req  # pure: same bytes every time


async def test_emitter_carries_incidents_to_the_console() -> None:
    out = io.StringIO()
    emitter = Emitter(EmitConfig(), console_stream=out)
    await emitter.start()
    emitter.submit_incidents(_events())
    await emitter.shutdown(5)
    text = out.getvalue()
    assert text.count("via.incident id=") == 2 and "Incident resolved" in text
