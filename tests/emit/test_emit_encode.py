"""The pure translation of anomaly events into OTLP requests and JSON objects."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from via_otlp.emit import VIA_SCOPE_NAME, event_to_json, events_to_logs_request
from via_otlp.emit.encode import (
    count_items,
    episode_span_id,
    episode_trace_id,
    events_to_spans_request,
)
from via_otlp.model import AnomalyKind, EpisodeState
from via_otlp.times import format_rfc3339

from .conftest import SAMPLE_TRACE, T0, make_event


def test_logs_grouped_by_source_in_order_of_first_appearance() -> None:
    events = [make_event("a"), make_event("b", service="cart"), make_event("c")]
    request = events_to_logs_request(events)
    services = [
        {kv.key: kv.value.string_value for kv in rl.resource.attributes}["service.name"]
        for rl in request.resource_logs
    ]
    assert services == ["checkout", "cart"]
    assert count_items(request) == 3
    assert all(rl.scope_logs[0].scope.name == VIA_SCOPE_NAME for rl in request.resource_logs)


def test_severity_follows_the_score_threshold() -> None:
    request = events_to_logs_request(
        [make_event(score=79.9), make_event(score=80.0)], error_score=80.0
    )
    records = request.resource_logs[0].scope_logs[0].log_records
    assert [(r.severity_text, r.severity_number) for r in records] == [("WARN", 13), ("ERROR", 17)]


def test_span_context_only_when_asked() -> None:
    plain = events_to_logs_request([make_event("ep")]).resource_logs[0].scope_logs[0].log_records[0]
    linked = (
        events_to_logs_request([make_event("ep")], with_span_context=True)
        .resource_logs[0]
        .scope_logs[0]
        .log_records[0]
    )
    assert plain.trace_id == b""
    assert (linked.trace_id, linked.span_id) == (episode_trace_id("ep"), episode_span_id("ep"))


def test_spans_only_for_resolved_episodes_with_stable_ids() -> None:
    events = [make_event("ep"), make_event("ep", state=EpisodeState.RESOLVED, score=95.0)]
    first = events_to_spans_request(events)
    again = events_to_spans_request(events)
    assert first.SerializeToString() == again.SerializeToString()
    assert count_items(first) == 1
    span = first.resource_spans[0].scope_spans[0].spans[0]
    assert len(span.trace_id) == 16 and len(span.span_id) == 8
    assert span.name == "via.anomaly spike"
    assert span.start_time_unix_nano == T0
    assert span.end_time_unix_nano == T0 + 60_000_000_000
    assert span.status.code == Status.StatusCode.STATUS_CODE_ERROR
    assert span.status.message == events[1].explanation


def test_links_skip_invalid_and_duplicate_trace_ids() -> None:
    event = make_event(
        state=EpisodeState.RESOLVED,
        sample_trace_ids=(SAMPLE_TRACE, "nothex", "00" * 16, "abcd", SAMPLE_TRACE),
    )
    span = events_to_spans_request([event]).resource_spans[0].scope_spans[0].spans[0]
    assert [link.trace_id.hex() for link in span.links] == [SAMPLE_TRACE]


def test_different_episodes_get_different_ids() -> None:
    assert episode_trace_id("a") != episode_trace_id("b")
    assert episode_span_id("a") != episode_span_id("b")


def test_event_to_json_fields() -> None:
    event = make_event(state=EpisodeState.RESOLVED, kind=AnomalyKind.DROP)
    obj = event_to_json(event)
    assert obj["time"] == format_rfc3339(event.time_ns)
    assert obj["kind"] == "drop" and obj["state"] == "resolved"
    assert obj["source"] == {
        "key": "shop/checkout",
        "attributes": {"service.namespace": "shop", "service.name": "checkout"},
    }
    for key in ("score", "rhythm_hash", "template", "expected", "observed", "explanation"):
        assert key in obj
    assert obj["sample_trace_ids"] == [SAMPLE_TRACE]


def test_event_to_json_has_no_non_finite_numbers() -> None:
    obj = event_to_json(make_event(expected=math.nan, baseline_std=math.inf))
    assert obj["expected"] is None and obj["baseline_std"] is None
    json.dumps(obj, allow_nan=False)


_text = st.text(max_size=20)
_float = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=100, deadline=None)
@given(
    episode=_text,
    service=_text,
    score=st.floats(0, 100),
    expected=_float,
    observed=_float,
    template=_text,
    explanation=_text,
    state=st.sampled_from(EpisodeState),
    kind=st.sampled_from(AnomalyKind),
    traces=st.lists(st.text(max_size=40), max_size=3),
)
def test_any_event_encodes_and_round_trips(
    episode, service, score, expected, observed, template, explanation, state, kind, traces
) -> None:
    event = make_event(
        episode,
        service=service,
        score=score,
        state=state,
        kind=kind,
        expected=expected,
        observed=observed,
        template=template,
        explanation=explanation,
        sample_trace_ids=tuple(traces),
    )
    request = events_to_logs_request([event], with_span_context=True)
    decoded = ExportLogsServiceRequest.FromString(request.SerializeToString())
    assert count_items(decoded) == 1
    assert decoded.resource_logs[0].scope_logs[0].log_records[0].body.string_value == explanation
    spans = events_to_spans_request([event])
    assert count_items(spans) == (1 if state is EpisodeState.RESOLVED else 0)
    json.dumps(event_to_json(event), allow_nan=False)
