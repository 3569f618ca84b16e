"""via-otlp's own metrics, read from a status snapshot at collection time.

The counters already exist (intake, queue, engine, patterns, emitter, registry, correlation);
instrumenting the hot path a second time would only cost. So a metric is a view of the status
dict that `App.status()` builds (the JSON of `/status`): `families(status)` turns one snapshot
into metric families, pure and cheap (a few hundred series, never one per profile), and the two
exporters render them — Prometheus text at `GET /metrics` (`prometheus.py`) and OTLP metrics
pushed to the emit endpoint (`otlp.py`). Because it takes a snapshot and not the objects behind
it, the same code serves a pipeline whose counters live in worker processes, once their status
is gathered into the same shape.

Names follow the OpenTelemetry semantic-convention style and the Collector's own telemetry
(`otelcol_receiver_accepted_log_records` → `via_otlp.receiver.accepted_log_records`): dotted in
OTLP, and in Prometheus translated as the Collector's Prometheus exporter does (dots become
underscores, the unit `s` adds `_seconds`, `By` adds `_bytes`, counters end in `_total`). A
Collector that receives the OTLP push and exports Prometheus thus shows the same names as a
scrape of `/metrics`.

>>> [f.prometheus_name for f in families({"queue": {"depth": 3, "capacity": 10}})][:2]
['via_otlp_queue_size', 'via_otlp_queue_capacity']
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from via_otlp.emit.exporter import EmitterState
from via_otlp.lifecycle import AppState
from via_otlp.registry.records import RegistryState

Labels = tuple[tuple[str, str], ...]


class Kind(enum.Enum):
    """The instrument a family comes from."""

    COUNTER = "counter"  # monotonic cumulative sum
    GAUGE = "gauge"
    HISTOGRAM = "histogram"  # explicit bucket bounds, cumulative


@dataclass(frozen=True, slots=True)
class Histogram:
    """One histogram point: cumulative bucket counts for `bounds` (without +Inf)."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    sum: float


@dataclass(slots=True)
class Family:
    """One metric: OTLP name, unit (UCUM, as in OTLP), description, kind, and its points."""

    name: str
    unit: str
    description: str
    kind: Kind
    points: list[tuple[Labels, float | Histogram]] = field(default_factory=list)

    @property
    def prometheus_name(self) -> str:
        """The name without the `_total` of counters (prometheus_client adds it)."""
        base = self.name.replace(".", "_")
        suffix = _UNIT_SUFFIX.get(self.unit, "")
        return f"{base}_{suffix}" if suffix and not base.endswith(f"_{suffix}") else base

    def add(self, value: float | Histogram, **labels: str) -> None:
        self.points.append((tuple(sorted(labels.items())), value))


_UNIT_SUFFIX = {"s": "seconds", "By": "bytes", "1": ""}

# The states of enumerations shown as one gauge per state (1 for the current one), so an alert
# can say `via_otlp_registry_state{state="degraded"} == 1`.
# Every state is shown (0 or 1), so the lists come from the enums the stages report.
REGISTRY_STATES = tuple(s.value for s in RegistryState)
EMITTER_STATES = tuple(s.value for s in EmitterState)
TRANSPORTS = ("grpc", "http", "ndjson")
SERVICE_STATES = tuple(s.value for s in AppState)


class _Builder:
    """Collects families in order; a family with no point is left out."""

    def __init__(self) -> None:
        self.out: list[Family] = []

    def family(self, name: str, unit: str, description: str, kind: Kind) -> Family:
        f = Family(name, unit, description, kind)
        self.out.append(f)
        return f

    def one(
        self, name: str, unit: str, description: str, kind: Kind, value: Any, **labels: str
    ) -> None:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            self.family(name, unit, description, kind).add(float(value), **labels)


def _section(status: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = status.get(key)
    return value if isinstance(value, Mapping) else {}


def _state_gauge(
    b: _Builder, name: str, description: str, current: Any, states: Iterable[str]
) -> None:
    if not isinstance(current, str):
        return
    f = b.family(name, "1", description, Kind.GAUGE)
    known = list(states)
    for state in [*known, *([current] if current not in known else [])]:
        f.add(1.0 if state == current else 0.0, state=state)


def families(status: Mapping[str, Any]) -> list[Family]:
    """The metric families of one status snapshot (see the module docstring for the names)."""
    b = _Builder()
    C, G = Kind.COUNTER, Kind.GAUGE

    # --- the service ---------------------------------------------------------------------
    if "version" in status:
        b.family("via_otlp.build.info", "1", "Version of via-otlp (always 1).", G).add(
            1.0, version=str(status["version"])
        )
    b.one(
        "via_otlp.uptime",
        "s",
        "Seconds since the service started.",
        G,
        status.get("uptime_seconds"),
    )
    _state_gauge(b, "via_otlp.state", "Life cycle state of the service (1 = current).",
                 status.get("state"), SERVICE_STATES)  # fmt: skip

    # --- receivers -----------------------------------------------------------------------
    intake = _section(status, "intake")
    requests = _section(intake, "requests")
    if requests:
        f = b.family("via_otlp.receiver.requests", "{requests}",
                     "Export requests (and NDJSON streams) answered, by transport and outcome.", C)  # fmt: skip
        for transport, outcomes in sorted(requests.items()):
            for outcome, n in sorted(outcomes.items()):
                f.add(float(n), transport=transport, outcome=outcome)
    records = _section(intake, "records")
    accepted = b.family("via_otlp.receiver.accepted_log_records", "{records}",
                        "Log records accepted into the pipeline, by transport.", C)  # fmt: skip
    refused = b.family("via_otlp.receiver.refused_log_records", "{records}",
                       "Log records refused, by transport and reason (queue_full: the sender "
                       "retries; invalid, too_large: it does not).", C)  # fmt: skip
    if intake:
        # Every network transport has an accepted series from the start (at 0), so that an
        # alert on its rate sees "stopped accepting", not "no data".
        seen = {t: dict(o) for t, o in records.items()}
        for transport in TRANSPORTS:
            seen.setdefault(transport, {}).setdefault("accepted", 0)
        for transport, outcomes in sorted(seen.items()):
            for outcome, n in sorted(outcomes.items()):
                if outcome == "accepted":
                    accepted.add(float(n), transport=transport)
                else:
                    refused.add(float(n), transport=transport, reason=outcome)
    repaired = b.family("via_otlp.receiver.repaired_log_records", "{records}",
                        "Accepted log records whose content was repaired or ignored, by reason.", C)  # fmt: skip
    for key in ("future_clamped", "missing_service_name", "missing_timestamp", "loopback_ignored"):
        if f"records_{key}" in intake:
            repaired.add(float(intake[f"records_{key}"]), reason=key)
    b.one("via_otlp.receiver.invalid_utf8_requests", "{requests}",
          "Requests whose invalid UTF-8 was replaced.", C, intake.get("invalid_utf8_requests"))  # fmt: skip
    dropped = b.family("via_otlp.processor.dropped_log_records", "{records}",
                       "Log records dropped before detection, by reason (patch: DROP or BLOCK patches).", C)  # fmt: skip
    if "records_dropped_by_patch" in intake:
        dropped.add(float(intake["records_dropped_by_patch"]), reason="patch")
    b.one("via_otlp.pipeline.consumed_log_records", "{records}",
          "Log records taken off the queue by detection.", C, intake.get("records_consumed"))  # fmt: skip

    # --- queue and stage latency ---------------------------------------------------------
    queue = _section(status, "queue")
    b.one(
        "via_otlp.queue.size",
        "{records}",
        "Records queued or being consumed.",
        G,
        queue.get("depth"),
    )
    b.one("via_otlp.queue.capacity", "{records}", "Records the intake queue holds at most.", G,
          queue.get("capacity"))  # fmt: skip
    b.one("via_otlp.queue.body_size", "By",
          "Characters of the log bodies queued or being consumed (about their bytes).", G,
          queue.get("body_bytes"))  # fmt: skip
    latency = _section(status, "latency")
    if latency.get("stages"):
        bounds = tuple(float(x) for x in latency.get("bounds", ()))
        f = b.family("via_otlp.stage.duration", "s",
                     "Time one batch spends in a pipeline stage (normalise, patterns, queue, "
                     "detect, dispatch).", Kind.HISTOGRAM)  # fmt: skip
        for stage, h in latency["stages"].items():
            f.add(Histogram(bounds, tuple(int(x) for x in h["buckets"]), int(h["count"]),
                            float(h["sum"])), stage=stage)  # fmt: skip

    # --- patterns ------------------------------------------------------------------------
    patterns = _section(status, "patterns")
    b.one(
        "via_otlp.patterns.templates",
        "{templates}",
        "Templates kept, all sources.",
        G,
        patterns.get("templates"),
    )
    b.one(
        "via_otlp.patterns.sources", "{sources}", "Source models kept.", G, patterns.get("sources")
    )
    b.one("via_otlp.patterns.flooding_sources", "{sources}",
          "Sources whose lines mostly fit no template now.", G, patterns.get("flooding_sources"))  # fmt: skip
    b.one("via_otlp.patterns.lines", "{lines}", "Lines mined.", C, patterns.get("lines"))
    b.one("via_otlp.patterns.cache.size", "By",
          "Bytes the miners' fast-path caches hold, all sources (bounded by fast_path_bytes).",
          G, patterns.get("cache_bytes"))  # fmt: skip
    b.one(
        "via_otlp.patterns.created_templates",
        "{templates}",
        "Templates created.",
        C,
        patterns.get("created"),
    )
    ev = b.family("via_otlp.patterns.evictions", "{evictions}",
                  "Templates and source models evicted at their bound, by what.", C)  # fmt: skip
    for key, what in (("evictions", "template"), ("source_evictions", "source")):
        if key in patterns:
            ev.add(float(patterns[key]), what=what)

    # --- detection -----------------------------------------------------------------------
    detect = _section(status, "detect")
    b.one(
        "via_otlp.detect.profiles",
        "{profiles}",
        "Profiles (rhythm hashes) tracked.",
        G,
        detect.get("profiles"),
    )
    b.one("via_otlp.detect.learning_profiles", "{profiles}",
          "Profiles still learning their baseline.", G, detect.get("profiles_learning"))  # fmt: skip
    b.one(
        "via_otlp.detect.open_episodes",
        "{episodes}",
        "Anomaly episodes open now.",
        G,
        detect.get("open_episodes"),
    )
    ep = b.family("via_otlp.detect.episodes", "{episodes}", "Anomaly episodes, by transition.", C)
    for key, event in (("episodes_opened", "opened"), ("episodes_resolved", "resolved")):
        if key in detect:
            ep.add(float(detect[key]), event=event)
    evp = b.family(
        "via_otlp.detect.evicted_profiles", "{profiles}", "Profiles evicted, by reason.", C
    )
    for key, reason in (("evictions_idle", "idle"), ("evictions_capacity", "capacity")):
        if key in detect:
            evp.add(float(detect[key]), reason=reason)
    b.one("via_otlp.detect.late_log_records", "{records}",
          "Records older than the watermark allows (counted, not bucketed).", C, detect.get("late_records"))  # fmt: skip
    b.one("via_otlp.detect.buckets_closed", "{buckets}", "Profile buckets closed and judged.", C,
          detect.get("buckets_closed"))  # fmt: skip
    b.one("via_otlp.detect.buckets_skipped", "{buckets}",
          "Buckets of event-time gaps skipped unjudged (detect.max_gap).", C,
          detect.get("buckets_skipped"))  # fmt: skip
    if detect.get("watermark_ns"):
        b.one("via_otlp.detect.watermark", "s", "Event time up to which buckets are closed (Unix seconds).",
              G, int(detect["watermark_ns"]) / 1e9)  # fmt: skip

    # --- anomalies and incidents out -----------------------------------------------------
    events = _section(status, "events")
    anomalies = b.family("via_otlp.anomalies.emitted", "{events}",
                         "Anomaly events emitted, by kind and episode state.", C)  # fmt: skip
    for key, n in sorted(_section(events, "by_kind").items()):
        kind, _, state = key.partition("/")
        anomalies.add(float(n), kind=kind, state=state)
    b.one("via_otlp.anomalies.suppressed", "{events}", "Anomaly events held back by MUTE or THRESHOLD patches.",
          C, events.get("suppressed"))  # fmt: skip
    correlate = _section(status, "correlate")
    correlator = _section(correlate, "correlator")
    incidents = b.family(
        "via_otlp.incidents.emitted", "{events}", "Incident events emitted, by kind.", C
    )
    for key, n in sorted(_section(correlate, "events_by_kind").items()):
        incidents.add(float(n), kind=key)
    b.one(
        "via_otlp.incidents.open",
        "{incidents}",
        "Incidents open now.",
        G,
        correlator.get("open_incidents"),
    )
    tr = b.family("via_otlp.incidents.transitions", "{incidents}", "Incidents, by transition.", C)
    for key in ("opened", "resolved", "merged", "evicted"):
        if f"incidents_{key}" in correlator:
            tr.add(float(correlator[f"incidents_{key}"]), event=key)
    b.one("via_otlp.correlate.queue_size", "{events}", "Anomaly events waiting to be correlated.", G,
          correlate.get("queued"))  # fmt: skip
    b.one("via_otlp.correlate.dropped_events", "{events}", "Anomaly events dropped by a full correlation queue.",
          C, correlate.get("dropped_queue_full"))  # fmt: skip

    # --- exporter ------------------------------------------------------------------------
    emit = _section(status, "emit")
    b.one(
        "via_otlp.exporter.queue_size",
        "{events}",
        "Events waiting to be exported.",
        G,
        emit.get("queued"),
    )
    b.one(
        "via_otlp.exporter.sent_events",
        "{events}",
        "Events exported (accepted downstream).",
        C,
        emit.get("sent"),
    )
    b.one(
        "via_otlp.exporter.retries",
        "{attempts}",
        "Export attempts retried.",
        C,
        emit.get("retries"),
    )
    b.one("via_otlp.exporter.rejected_events", "{events}", "Events the downstream rejected in a partial success.",
          C, emit.get("rejected"))  # fmt: skip
    drops = b.family(
        "via_otlp.exporter.dropped_events", "{events}", "Events given up, by reason.", C
    )
    for key in (
        "dropped_queue_full",
        "dropped_shutdown",
        "failed_permanent",
        "failed_retries_exhausted",
    ):
        if key in emit:
            drops.add(float(emit[key]), reason=key.removeprefix("dropped_").removeprefix("failed_"))
    _state_gauge(b, "via_otlp.exporter.state", "State of the anomaly exporter (1 = current).",
                 emit.get("state"), EMITTER_STATES)  # fmt: skip

    # --- registry ------------------------------------------------------------------------
    registry = _section(status, "registry")
    _state_gauge(b, "via_otlp.registry.state", "State of the PostgreSQL registry (1 = current).",
                 registry.get("state"), REGISTRY_STATES)  # fmt: skip
    writer = _section(registry, "writer")
    b.one(
        "via_otlp.registry.buffered_rows",
        "{rows}",
        "Rows waiting to be written.",
        G,
        writer.get("buffered"),
    )
    b.one("via_otlp.registry.written_rows", "{rows}", "Rows written.", C, writer.get("written"))
    b.one(
        "via_otlp.registry.dropped_rows",
        "{rows}",
        "Rows dropped by a full write buffer.",
        C,
        writer.get("dropped"),
    )
    b.one(
        "via_otlp.registry.embedded_restarts",
        "{restarts}",
        "Times the embedded PostgreSQL was found dead and started again.",
        C,
        registry.get("embedded_restarts"),
    )
    b.one(
        "via_otlp.registry.active_patches",
        "{patches}",
        "Patches in force.",
        G,
        registry.get("patches_active"),
    )
    b.one("via_otlp.registry.listening", "1", "1 while patch changes arrive through LISTEN/NOTIFY.", G,
          registry.get("patches_listening"))  # fmt: skip
    return [f for f in b.out if f.points]
