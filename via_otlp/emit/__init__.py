"""The emit stage: anomaly events out as OTLP logs and/or spans, to stdout, or to a JSON-lines file.

- `Emitter`: bounded queue, batching, OTLP/gRPC or OTLP/HTTP with retries (`exporter.py`);
- `encode.py`: the pure translation of events into OTLP requests and JSON objects;
- `JsonLinesSink`: the ``--anomalies-out`` file of a replay;
- `VIA_SCOPE_NAME`: the instrumentation scope on everything VIA emits; the intake ignores (and
  counts) records carrying it, so a looped pipeline cannot feed on itself.
"""

from via_otlp.emit.config import EmitConfig
from via_otlp.emit.encode import (
    VIA_EVENT_NAME,
    VIA_INCIDENT_EVENT_NAME,
    VIA_SCOPE_NAME,
    event_to_json,
    events_to_logs_request,
    events_to_spans_request,
    incidents_to_logs_request,
    incidents_to_spans_request,
)
from via_otlp.emit.exporter import EmitStats, Emitter, EmitterState
from via_otlp.emit.jsonl import JsonLinesSink

__all__ = [
    "VIA_EVENT_NAME",
    "VIA_INCIDENT_EVENT_NAME",
    "VIA_SCOPE_NAME",
    "EmitConfig",
    "EmitStats",
    "Emitter",
    "EmitterState",
    "JsonLinesSink",
    "event_to_json",
    "events_to_logs_request",
    "events_to_spans_request",
    "incidents_to_logs_request",
    "incidents_to_spans_request",
]
