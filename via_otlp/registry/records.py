"""The typed rows the registry stores and returns, and their JSON forms.

Kept apart from the SQL so the control API can use them without touching asyncpg.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from via_otlp.errors import InputError
from via_otlp.model import (
    AnomalyEvent,
    AnomalyKind,
    EpisodeState,
    Incident,
    Source,
    source_from_json,
    source_to_json,
)

EVENT_JSON_VERSION = 1


class RegistryState(enum.StrEnum):
    """`ok`: writes land; `degraded`: PostgreSQL unreachable, writes wait; `restarting`: the
    embedded PostgreSQL died and is being started again, writes wait; `disabled`: off."""

    OK = "ok"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the write-behind buffer: `dropped` counts rows lost to a full buffer."""

    state: RegistryState
    buffered: int
    written: int
    dropped: int
    failed: int
    last_error: str


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """What `status` shows about the registry."""

    state: RegistryState
    embedded: bool
    database: str
    migrations_applied: tuple[str, ...]
    writer: WriterStats
    patches_active: int
    patches_listening: bool
    records_dropped_by_patch: int
    events_muted: int
    events_below_threshold: int = 0
    embedded_restarts: int = 0  # times the embedded PostgreSQL was found dead and restarted
    embedded_last_restart_seconds: float = 0.0  # from found dead to accepting connections


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    """One stored anomaly episode: its latest state and all its events, oldest first."""

    episode_id: str
    kind: AnomalyKind
    state: EpisodeState
    source: Source
    rhythm_hash: str
    template_id: str
    template: str
    severity: str
    started_ns: int
    ended_ns: int
    time_ns: int
    max_score: float
    muted: bool
    explanation: str
    events: tuple[AnomalyEvent, ...]


@dataclass(frozen=True, slots=True)
class AnomalyPage:
    """A page of episodes, newest first; pass `next_page_token` back for the next ("" = end)."""

    items: tuple[AnomalyRecord, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """A page of incidents, newest first; pass `next_page_token` back for the next ("" = end)."""

    items: tuple[Incident, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class EvaluationRow:
    """One evaluation result of a simulate/ run for one scenario."""

    run: str
    scenario: str
    precision: float
    recall: float
    f1: float
    detection_delay_s: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    recorded_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("precision", "recall", "f1"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"evaluation {name} must be within [0, 1], got {value!r}")
        if not self.run or not self.scenario:
            raise InputError("evaluation run and scenario must not be empty")


@dataclass(frozen=True, slots=True)
class KnownTemplate:
    """A template the registry saw on an episode: enough to teach it again after a crash."""

    source_key: str
    template_id: str
    template: str
    rhythm_hash: str


@dataclass(frozen=True, slots=True)
class SchemaRow:
    """A source's schema snapshot and behavioural profile, as saved to `schemas`."""

    source: Source
    attributes: Mapping[str, Any]
    profile: Mapping[str, Any]


def event_to_json(event: AnomalyEvent) -> dict[str, Any]:
    """An anomaly event as plain JSON (exact integers for nanosecond times)."""
    return {
        "v": EVENT_JSON_VERSION,
        "episode_id": event.episode_id,
        "kind": event.kind.value,
        "state": event.state.value,
        "time_ns": event.time_ns,
        "started_ns": event.started_ns,
        "ended_ns": event.ended_ns,
        "score": event.score,
        "source": source_to_json(event.source),
        "rhythm_hash": event.rhythm_hash,
        "template_id": event.template_id,
        "template": event.template,
        "severity": event.severity,
        "expected": event.expected,
        "observed": event.observed,
        "baseline_mean": event.baseline_mean,
        "baseline_std": event.baseline_std,
        "bucket_seconds": event.bucket_seconds,
        "explanation": event.explanation,
        "sample_trace_ids": list(event.sample_trace_ids),
    }


def event_from_json(data: Mapping[str, Any]) -> AnomalyEvent:
    """The inverse of `event_to_json`."""
    if data.get("v") != EVENT_JSON_VERSION:
        raise ValueError(f"unsupported anomaly event JSON version {data.get('v')!r}")
    return AnomalyEvent(
        episode_id=data["episode_id"],
        kind=AnomalyKind(data["kind"]),
        state=EpisodeState(data["state"]),
        time_ns=int(data["time_ns"]),
        started_ns=int(data["started_ns"]),
        ended_ns=int(data["ended_ns"]),
        score=float(data["score"]),
        source=source_from_json(data["source"]),
        rhythm_hash=data["rhythm_hash"],
        template_id=data["template_id"],
        template=data["template"],
        severity=data["severity"],
        expected=float(data["expected"]),
        observed=float(data["observed"]),
        baseline_mean=float(data["baseline_mean"]),
        baseline_std=float(data["baseline_std"]),
        bucket_seconds=float(data["bucket_seconds"]),
        explanation=data["explanation"],
        sample_trace_ids=tuple(data.get("sample_trace_ids", ())),
    )
