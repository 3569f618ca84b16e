"""The emit stage: anomaly events out as OTLP logs and/or spans, to stdout, or to a JSON-lines file.

- `Emitter`: bounded queue, batching, OTLP/gRPC or OTLP/HTTP with retries (`exporter.py`);
- `encode.py`: the pure translation of events into OTLP requests and JSON objects;
- `JsonLinesSink`: the ``--anomalies-out`` file of a replay;
- `VIA_SCOPE_NAME`: the instrumentation scope on everything VIA emits; the intake ignores (and
  counts) records carrying it, so a looped pipeline cannot feed on itself.
"""

from typing import TYPE_CHECKING

from via_otlp.lazy import lazy_exports

if TYPE_CHECKING:
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

# Imported when first read: see via_otlp/lazy.py.
__getattr__ = lazy_exports(
    __name__,
    {
        "EmitConfig": "via_otlp.emit.config",
        "VIA_EVENT_NAME": "via_otlp.emit.encode",
        "VIA_INCIDENT_EVENT_NAME": "via_otlp.emit.encode",
        "VIA_SCOPE_NAME": "via_otlp.emit.encode",
        "event_to_json": "via_otlp.emit.encode",
        "events_to_logs_request": "via_otlp.emit.encode",
        "events_to_spans_request": "via_otlp.emit.encode",
        "incidents_to_logs_request": "via_otlp.emit.encode",
        "incidents_to_spans_request": "via_otlp.emit.encode",
        "EmitStats": "via_otlp.emit.exporter",
        "Emitter": "via_otlp.emit.exporter",
        "EmitterState": "via_otlp.emit.exporter",
        "JsonLinesSink": "via_otlp.emit.jsonl",
    },
)
