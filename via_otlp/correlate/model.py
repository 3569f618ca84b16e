"""The records of the correlate stage: incidents, their member episodes, and the links between them.

An incident is a small graph: its nodes are anomaly episodes (`IncidentMember`), its edges
(`IncidentLink`) say why two episodes belong together (`LinkType`) and how sure we are
(`confidence`, 0..1). The first episode of an incident is its root; every later member joined
through at least one link to an earlier member.

Everything here is immutable and has a versioned JSON form, used by the correlator's snapshot
and by the registry (`incidents.summary`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from via_otlp.model import AnomalyKind, EpisodeState, Source, source_from_json, source_to_json

INCIDENT_JSON_VERSION = 1


class LinkType(enum.StrEnum):
    """Why two episodes are in one incident."""

    TEMPORAL = "temporal"  # overlap in time, weighted by how related the sources are
    TRACE = "trace"  # a sample trace id in common
    SEMANTIC = "semantic"  # similar templates (cosine of their embeddings)


class IncidentState(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentEventKind(enum.StrEnum):
    """What happened to an incident. OPENED and RESOLVED are emitted as OTLP; all are stored."""

    OPENED = "opened"
    UPDATED = "updated"  # a member joined, resolved, or a link was added
    RESOLVED = "resolved"  # every member resolved (and the cool-down passed)
    MERGED = "merged"  # absorbed into `Incident.merged_into`: its last event


@dataclass(frozen=True, slots=True)
class IncidentMember:
    """One anomaly episode in an incident, as the correlator last saw it."""

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
    score: float
    trace_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "kind": self.kind.value,
            "state": self.state.value,
            "source": source_to_json(self.source),
            "rhythm_hash": self.rhythm_hash,
            "template_id": self.template_id,
            "template": self.template,
            "severity": self.severity,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "score": self.score,
            "trace_ids": list(self.trace_ids),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IncidentMember:
        return cls(
            episode_id=str(d["episode_id"]),
            kind=AnomalyKind(d["kind"]),
            state=EpisodeState(d["state"]),
            source=source_from_json(d["source"]),
            rhythm_hash=str(d["rhythm_hash"]),
            template_id=str(d["template_id"]),
            template=str(d["template"]),
            severity=str(d["severity"]),
            started_ns=int(d["started_ns"]),
            ended_ns=int(d["ended_ns"]),
            score=float(d["score"]),
            trace_ids=tuple(str(t) for t in d.get("trace_ids", ())),
        )


@dataclass(frozen=True, slots=True)
class IncidentLink:
    """An edge of the incident graph: `episode_id` joined because of `linked_episode_id`."""

    episode_id: str
    linked_episode_id: str
    type: LinkType
    confidence: float
    time_ns: int

    def to_json(self) -> list[Any]:
        return [
            self.episode_id,
            self.linked_episode_id,
            self.type.value,
            self.confidence,
            self.time_ns,
        ]

    @classmethod
    def from_json(cls, v: list[Any]) -> IncidentLink:
        return cls(str(v[0]), str(v[1]), LinkType(v[2]), float(v[3]), int(v[4]))


@dataclass(frozen=True, slots=True)
class Incident:
    """A group of anomaly episodes that tell one story.

    `title` describes the strongest episode; `sources` are the source keys involved (in order of
    first appearance); `started_ns`/`ended_ns` span the members (`ended_ns` is 0 while any member
    is open); `score` is the strongest member's; `time_ns` is the event time of the last change.
    """

    id: str
    title: str
    state: IncidentState
    started_ns: int
    ended_ns: int
    time_ns: int
    score: float
    root_episode_id: str
    sources: tuple[str, ...]
    members: tuple[IncidentMember, ...]
    links: tuple[IncidentLink, ...]
    merged_into: str = ""

    @property
    def episode_ids(self) -> tuple[str, ...]:
        return tuple(m.episode_id for m in self.members)

    def link_counts(self) -> dict[LinkType, int]:
        out = dict.fromkeys(LinkType, 0)
        for link in self.links:
            out[link.type] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "v": INCIDENT_JSON_VERSION,
            "id": self.id,
            "title": self.title,
            "state": self.state.value,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "time_ns": self.time_ns,
            "score": self.score,
            "root_episode_id": self.root_episode_id,
            "sources": list(self.sources),
            "members": [m.to_json() for m in self.members],
            "links": [link.to_json() for link in self.links],
            "merged_into": self.merged_into,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Incident:
        if d.get("v") != INCIDENT_JSON_VERSION:
            raise ValueError(f"unsupported incident JSON version {d.get('v')!r}")
        return cls(
            id=str(d["id"]),
            title=str(d["title"]),
            state=IncidentState(d["state"]),
            started_ns=int(d["started_ns"]),
            ended_ns=int(d["ended_ns"]),
            time_ns=int(d["time_ns"]),
            score=float(d["score"]),
            root_episode_id=str(d["root_episode_id"]),
            sources=tuple(str(s) for s in d["sources"]),
            members=tuple(IncidentMember.from_json(m) for m in d["members"]),
            links=tuple(IncidentLink.from_json(v) for v in d["links"]),
            merged_into=str(d.get("merged_into", "")),
        )


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A change of an incident, with the incident as it is after the change."""

    kind: IncidentEventKind
    incident: Incident
    time_ns: int


@dataclass(frozen=True, slots=True)
class SimilarEpisode:
    """A stored episode near a query vector (`similarity`: cosine, -1..1)."""

    episode_id: str
    similarity: float
    incident_id: str
    source: str
    kind: str
    template: str
    started_ns: int
    score: float


@dataclass(frozen=True, slots=True)
class SimilarIncident:
    """An incident near a query: its best member's similarity."""

    incident_id: str
    similarity: float
    best_episode_id: str
    title: str


@dataclass(frozen=True, slots=True)
class SimilarResult:
    """The answer to a similarity search: episodes and incidents, most similar first."""

    episodes: tuple[SimilarEpisode, ...]
    incidents: tuple[SimilarIncident, ...]
