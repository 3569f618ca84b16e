"""Anomaly events → OTLP export requests and JSON objects. Pure: no I/O, no clock, no randomness.

Everything here is a function of the events alone, so a retried request is byte-identical to the
first attempt and a span keeps its ids however often it is sent (ids derive from the episode id).

Every record carries VIA's own instrumentation scope (`VIA_SCOPE_NAME`); the intake ignores
records with that scope, so a pipeline that loops VIA's output back into VIA cannot feed on itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import xxhash
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from via_otlp import __version__
from via_otlp.model import (
    TEMPLATE_ATTRIBUTE,
    VIA_SCOPE_NAME,
    AnomalyEvent,
    EpisodeState,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    Source,
)
from via_otlp.times import format_rfc3339

T = TypeVar("T")

VIA_EVENT_NAME = "via.anomaly"
"""The LogRecord `event_name` of an anomaly event."""

VIA_INCIDENT_EVENT_NAME = "via.incident"
"""The LogRecord `event_name` of an incident event (opened, resolved)."""

DEFAULT_ERROR_SCORE = 80.0
"""Scores at or above this are reported at ERROR severity, below it at WARN."""

_Attr = str | int | float | bool | Sequence[str]


def events_to_logs_request(
    events: Sequence[AnomalyEvent],
    *,
    error_score: float = DEFAULT_ERROR_SCORE,
    with_span_context: bool = False,
) -> ExportLogsServiceRequest:
    """One LogRecord per event, one ResourceLogs per source (in order of first appearance).

    With `with_span_context`, each record carries the trace and span id of its episode's span,
    so a backend can jump from the log to the span (use it when spans are emitted too).
    """
    return _logs_request(
        events, lambda e: e.source, lambda e: _log_record(e, error_score, with_span_context)
    )


def events_to_spans_request(
    events: Sequence[AnomalyEvent], *, error_score: float = DEFAULT_ERROR_SCORE
) -> ExportTraceServiceRequest:
    """One span per resolved episode (open events are skipped), grouped by source.

    The span runs from `started_ns` to `ended_ns` and links to the episode's sample traces.
    """
    resolved = [e for e in events if e.state is EpisodeState.RESOLVED]
    return _spans_request(resolved, lambda e: e.source, lambda e: _span(e, error_score))


def incidents_to_logs_request(
    events: Sequence[IncidentEvent],
    *,
    error_score: float = DEFAULT_ERROR_SCORE,
    with_span_context: bool = False,
) -> ExportLogsServiceRequest:
    """One `via.incident` LogRecord per incident event given, merges left out: opened, updated
    (the correlate stage passes the updates where members joined) and resolved.

    A record sits under the resource of the incident's strongest episode's source, so it shows
    up with the service that hurts most; ``via.incident.sources`` lists all of them.
    """
    shown = [e for e in events if e.kind is not IncidentEventKind.MERGED]
    return _logs_request(
        shown,
        lambda e: _incident_source(e.incident),
        lambda e: _incident_log_record(e, error_score, with_span_context),
    )


def incidents_to_spans_request(
    events: Sequence[IncidentEvent], *, error_score: float = DEFAULT_ERROR_SCORE
) -> ExportTraceServiceRequest:
    """One span per resolved incident, linking to the spans of its episodes.

    The links carry the link type and confidence by which each episode joined (``root`` for
    the first); the span ids match `events_to_spans_request`'s, so a backend joins them.
    """
    resolved = [e for e in events if e.kind is IncidentEventKind.RESOLVED]
    return _spans_request(
        resolved,
        lambda e: _incident_source(e.incident),
        lambda e: _incident_span(e.incident, error_score),
    )


def incident_trace_id(incident_id: str) -> bytes:
    """The 16-byte trace id of an incident's span (a hash of its id, never all zeros)."""
    return _nonzero(xxhash.xxh3_128_digest(b"incident:" + incident_id.encode()))


def incident_span_id(incident_id: str) -> bytes:
    """The 8-byte span id of an incident's span."""
    return _nonzero(xxhash.xxh3_64_digest(b"incident:" + incident_id.encode()))


def incident_attributes(incident: Incident) -> dict[str, _Attr]:
    """The ``via.incident.*`` attributes of an incident's log record and span."""
    counts = incident.link_counts()
    attrs: dict[str, _Attr] = {
        "via.incident.id": incident.id,
        "via.incident.state": incident.state.value,
        "via.incident.title": incident.title,
        "via.incident.score": float(incident.score),
        "via.incident.sources": list(incident.sources),
        "via.incident.episode_ids": list(incident.episode_ids),
        "via.incident.episode_count": len(incident.members),
        "via.incident.root_episode_id": incident.root_episode_id,
        "via.incident.start_time_unix_nano": int(incident.started_ns),
    }
    for link_type, n in counts.items():
        attrs[f"via.incident.links.{link_type.value}"] = n
    if incident.ended_ns:
        attrs["via.incident.end_time_unix_nano"] = int(incident.ended_ns)
    return attrs


def incident_story(incident: Incident, kind: IncidentEventKind | None = None) -> str:
    """One line a person understands: what, how many, where, and why they belong together."""
    n = len(incident.members)
    services = ", ".join(incident.sources[:5]) + (" ..." if len(incident.sources) > 5 else "")
    linked = ", ".join(f"{t.value} {c}" for t, c in incident.link_counts().items() if c)
    state = "resolved" if incident.state is IncidentState.RESOLVED else "open"
    if kind is IncidentEventKind.UPDATED and state == "open":
        state = "growing"
    return (
        f"Incident {state}: {incident.title} — {n} anomal{'y' if n == 1 else 'ies'} in "
        f"{len(incident.sources)} source{'' if len(incident.sources) == 1 else 's'} ({services})"
        f"{f'; linked by {linked}' if linked else ''}"
    )


def count_items(request: ExportLogsServiceRequest | ExportTraceServiceRequest) -> int:
    """Number of log records or spans in a request."""
    if isinstance(request, ExportLogsServiceRequest):
        return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def episode_trace_id(episode_id: str) -> bytes:
    """The 16-byte trace id of an episode's span: a hash of the episode id, never all zeros."""
    return _nonzero(xxhash.xxh3_128_digest(episode_id.encode()))


def episode_span_id(episode_id: str) -> bytes:
    """The 8-byte span id of an episode's span: a hash of the episode id, never all zeros."""
    return _nonzero(xxhash.xxh3_64_digest(episode_id.encode()))


def severity_of(event: AnomalyEvent, error_score: float = DEFAULT_ERROR_SCORE) -> str:
    """``"ERROR"`` when the score reaches `error_score`, else ``"WARN"``."""
    return "ERROR" if event.score >= error_score else "WARN"


def event_attributes(event: AnomalyEvent) -> dict[str, _Attr]:
    """The ``via.*`` attributes shared by the log record and the span of an event."""
    attrs: dict[str, _Attr] = {
        "via.anomaly.kind": event.kind.value,
        "via.anomaly.score": float(event.score),
        "via.anomaly.state": event.state.value,
        "via.episode.id": event.episode_id,
        "via.rhythm_hash": event.rhythm_hash,
        TEMPLATE_ATTRIBUTE: event.template,
        "via.expected": float(event.expected),
        "via.observed": float(event.observed),
        "via.template.id": event.template_id,
        "via.log.severity": event.severity,
        "via.baseline.mean": float(event.baseline_mean),
        "via.baseline.std": float(event.baseline_std),
        "via.bucket.seconds": float(event.bucket_seconds),
        "via.episode.start_time_unix_nano": int(event.started_ns),
    }
    if event.ended_ns:
        attrs["via.episode.end_time_unix_nano"] = int(event.ended_ns)
    if event.sample_trace_ids:
        attrs["via.sample_trace_ids"] = list(event.sample_trace_ids)
    return attrs


def event_to_json(event: AnomalyEvent) -> dict[str, Any]:
    """One anomaly event as a JSON-ready dict (one line of ``--anomalies-out``).

    Non-finite numbers become null so the result always passes ``json.dumps(allow_nan=False)``.
    """
    return {
        "time": format_rfc3339(event.time_ns),
        "time_unix_nano": event.time_ns,
        "episode_id": event.episode_id,
        "kind": event.kind.value,
        "state": event.state.value,
        "score": _finite(event.score),
        "source": {"key": event.source.key, "attributes": dict(event.source.attributes)},
        "rhythm_hash": event.rhythm_hash,
        "template_id": event.template_id,
        "template": event.template,
        "severity": event.severity,
        "expected": _finite(event.expected),
        "observed": _finite(event.observed),
        "baseline_mean": _finite(event.baseline_mean),
        "baseline_std": _finite(event.baseline_std),
        "bucket_seconds": _finite(event.bucket_seconds),
        "started_unix_nano": event.started_ns,
        "ended_unix_nano": event.ended_ns,
        "explanation": event.explanation,
        "sample_trace_ids": list(event.sample_trace_ids),
    }


def _log_record(event: AnomalyEvent, error_score: float, with_span_context: bool) -> LogRecord:
    severity = severity_of(event, error_score)
    record = LogRecord(
        time_unix_nano=event.time_ns,
        observed_time_unix_nano=event.time_ns,
        severity_number=_SEVERITY_NUMBERS[severity],
        severity_text=severity,
        body=AnyValue(string_value=event.explanation),
        attributes=_key_values(event_attributes(event)),
        event_name=VIA_EVENT_NAME,
    )
    if with_span_context:
        record.trace_id = episode_trace_id(event.episode_id)
        record.span_id = episode_span_id(event.episode_id)
    return record


def _span(event: AnomalyEvent, error_score: float) -> Span:
    end_ns = event.ended_ns or event.time_ns
    is_error = severity_of(event, error_score) == "ERROR"
    return Span(
        trace_id=episode_trace_id(event.episode_id),
        span_id=episode_span_id(event.episode_id),
        name=f"{VIA_EVENT_NAME} {event.kind.value}",
        kind=Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=event.started_ns,
        end_time_unix_nano=max(end_ns, event.started_ns),
        attributes=_key_values(event_attributes(event)),
        links=list(_links(event.sample_trace_ids)),
        status=Status(
            code=Status.StatusCode.STATUS_CODE_ERROR
            if is_error
            else Status.StatusCode.STATUS_CODE_UNSET,
            message=event.explanation if is_error else "",
        ),
    )


def _incident_log_record(
    event: IncidentEvent, error_score: float, with_span_context: bool
) -> LogRecord:
    inc = event.incident
    severity = "ERROR" if inc.score >= error_score else "WARN"
    record = LogRecord(
        time_unix_nano=event.time_ns,
        observed_time_unix_nano=event.time_ns,
        severity_number=_SEVERITY_NUMBERS[severity],
        severity_text=severity,
        body=AnyValue(string_value=incident_story(inc, event.kind)),
        attributes=_key_values(
            {**incident_attributes(inc), "via.incident.event": event.kind.value}
        ),
        event_name=VIA_INCIDENT_EVENT_NAME,
    )
    if with_span_context:
        record.trace_id = incident_trace_id(inc.id)
        record.span_id = incident_span_id(inc.id)
    return record


def _incident_span(inc: Incident, error_score: float) -> Span:
    joined: dict[str, tuple[str, float]] = {inc.root_episode_id: ("root", 1.0)}
    for link in inc.links:
        best = joined.get(link.episode_id)
        if best is None or link.confidence > best[1]:
            joined[link.episode_id] = (link.type.value, link.confidence)
    links = []
    for eid in inc.episode_ids:
        reason, confidence = joined.get(eid, ("member", 0.0))
        links.append(
            Span.Link(
                trace_id=episode_trace_id(eid),
                span_id=episode_span_id(eid),
                attributes=_key_values(
                    {
                        "via.link.reason": reason,
                        "via.link.confidence": float(confidence),
                        "via.episode.id": eid,
                    }
                ),
            )
        )
    is_error = inc.score >= error_score
    return Span(
        trace_id=incident_trace_id(inc.id),
        span_id=incident_span_id(inc.id),
        name=f"{VIA_INCIDENT_EVENT_NAME} {inc.title[:80]}",
        kind=Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=inc.started_ns,
        end_time_unix_nano=max(inc.ended_ns or inc.time_ns, inc.started_ns),
        attributes=_key_values(incident_attributes(inc)),
        links=links,
        status=Status(
            code=Status.StatusCode.STATUS_CODE_ERROR
            if is_error
            else Status.StatusCode.STATUS_CODE_UNSET,
            message=incident_story(inc) if is_error else "",
        ),
    )


def _incident_source(inc: Incident) -> Source:
    if not inc.members:
        return Source("via-otlp", (("service.name", "via-otlp"),))
    strongest = max(inc.members, key=lambda m: (m.score, -m.started_ns))
    return strongest.source


def _links(trace_ids: Iterable[str]) -> Iterable[Span.Link]:
    """Links to sample traces; ids that are not 32 hex digits (or are all zeros) are skipped.

    The span id of a linked trace is not known, so it is left empty.
    """
    seen: set[bytes] = set()
    for text in trace_ids:
        raw = _trace_id_bytes(text)
        if raw is None or raw in seen:
            continue
        seen.add(raw)
        yield Span.Link(trace_id=raw, attributes=_key_values({"via.link.reason": "sample"}))


def _trace_id_bytes(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == 16 and any(raw) else None


def _group_by_source(
    items: Iterable[T], source_of: Callable[[T], Source]
) -> list[tuple[Source, list[T]]]:
    """`items` grouped by source, sources in order of first appearance."""
    groups: dict[Source, list[T]] = {}
    for item in items:
        groups.setdefault(source_of(item), []).append(item)
    return list(groups.items())


def _logs_request(
    items: Iterable[T], source_of: Callable[[T], Source], record: Callable[[T], LogRecord]
) -> ExportLogsServiceRequest:
    """One ResourceLogs per source (VIA's scope), one record per item."""
    request = ExportLogsServiceRequest()
    for source, group in _group_by_source(items, source_of):
        scope_logs = ScopeLogs(scope=_scope(), log_records=[record(x) for x in group])
        request.resource_logs.append(
            ResourceLogs(resource=_resource(source), scope_logs=[scope_logs])
        )
    return request


def _spans_request(
    items: Iterable[T], source_of: Callable[[T], Source], span: Callable[[T], Span]
) -> ExportTraceServiceRequest:
    """One ResourceSpans per source (VIA's scope), one span per item."""
    request = ExportTraceServiceRequest()
    for source, group in _group_by_source(items, source_of):
        scope_spans = ScopeSpans(scope=_scope(), spans=[span(x) for x in group])
        request.resource_spans.append(
            ResourceSpans(resource=_resource(source), scope_spans=[scope_spans])
        )
    return request


def _resource(source: Source) -> Resource:
    return Resource(attributes=_key_values(dict(source.attributes)))


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name=VIA_SCOPE_NAME, version=__version__)


def _key_values(attrs: dict[str, _Attr]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()]


def _any_value(value: _Attr) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _nonzero(raw: bytes) -> bytes:
    return raw if any(raw) else raw[:-1] + b"\x01"


_SEVERITY_NUMBERS = {
    "WARN": SeverityNumber.SEVERITY_NUMBER_WARN,
    "ERROR": SeverityNumber.SEVERITY_NUMBER_ERROR,
}
