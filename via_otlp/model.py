"""The records that travel between stages: `Source`, `LogBatch`, `AnomalyEvent` and `Incident`.

A `LogBatch` is columnar (parallel lists, one entry per record): work is done per batch and per
group of equal values, never per record object, which is what makes Python fast enough here.

An incident is a small graph: its nodes are anomaly episodes (`IncidentMember`), its edges
(`IncidentLink`) say why two episodes belong together (`LinkType`) and how sure we are
(`confidence`, 0..1). The first episode of an incident is its root; every later member joined
through at least one link to an earlier member. The correlate stage makes incidents; emit,
the registry and control read them, so they live here rather than inside the correlator.
Incident records are immutable and have a versioned JSON form, used by the correlator's
snapshot and by the registry (`incidents.summary`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

UNKNOWN_SERVICE = "unknown_service"
# The instrumentation scope of everything via-otlp emits; intake ignores records that carry it,
# so a pipeline that loops VIA's output back in cannot feed on itself.
VIA_SCOPE_NAME = "via-otlp"
# The log attribute that carries a record's template (set by the Collector's drain processor,
# and by via-otlp on the anomalies it emits).
TEMPLATE_ATTRIBUTE = "log.record.template"


SERVICE_NAME = "service.name"
# The resource attributes that identify a source, by default (`receive.source_attributes`).
DEFAULT_SOURCE_ATTRIBUTES = ("service.namespace", SERVICE_NAME, "deployment.environment.name")
_KEY_ESCAPES = str.maketrans({"%": "%25", "/": "%2F", "@": "%40"})


def source_key(attributes: Sequence[tuple[str, str]], order: Sequence[str] | None = None) -> str:
    """The canonical text of a source identity: unambiguous, and short in the common cases.

    `order` is the configured identity attribute names (default: those of `attributes`, in
    their order). ``service.name`` is the anchor; attributes configured before it are written
    before it, each followed by ``/`` (the nearest one last), and attributes configured after it
    are written after it, each preceded by ``@``. A missing attribute keeps its place with an
    empty value, except at the outer ends; ``%``, ``/`` and ``@`` inside values are escaped.
    So two different identities never share a key (a key used to join the present values with
    ``/``, and ``{namespace=shop, name=checkout}`` met ``{name=shop, environment=checkout}``).

    >>> order = ("service.namespace", "service.name", "deployment.environment.name")
    >>> [source_key(a, order) for a in (
    ...     [("service.name", "checkout")],
    ...     [("service.namespace", "shop"), ("service.name", "checkout")],
    ...     [("service.name", "shop"), ("deployment.environment.name", "checkout")],
    ...     [("service.namespace", "a/b"), ("service.name", "x"), ("deployment.environment.name", "prod")],
    ... )]
    ['checkout', 'shop/checkout', 'shop@checkout', 'a%2Fb/x@prod']
    """
    values = dict(attributes)
    names = list(order) if order is not None else [name for name, _ in attributes]
    if SERVICE_NAME not in names:  # no anchor: every attribute is written after an empty one
        names = [SERVICE_NAME, *names]
    anchor = names.index(SERVICE_NAME)
    before = [values.get(n, "").translate(_KEY_ESCAPES) for n in names[:anchor]]
    after = [values.get(n, "").translate(_KEY_ESCAPES) for n in names[anchor + 1 :]]
    while before and not before[0]:
        before.pop(0)
    while after and not after[-1]:
        after.pop()
    name = values.get(SERVICE_NAME, "").translate(_KEY_ESCAPES)
    return "".join(f"{v}/" for v in before) + name + "".join(f"@{v}" for v in after)


@dataclass(frozen=True, slots=True)
class Source:
    """Who logged: the identity resource attributes (in configured order) that were present.

    `key` is the canonical text used in rhythm hashes and as the miner's model key (see
    `source_key`), e.g. ``"shop/checkout@prod"``.
    """

    key: str
    attributes: tuple[tuple[str, str], ...]

    @property
    def service_name(self) -> str:
        for name, value in self.attributes:
            if name == SERVICE_NAME:
                return value
        return UNKNOWN_SERVICE

    @classmethod
    def from_attributes(
        cls, attributes: tuple[tuple[str, str], ...], order: Sequence[str] | None = None
    ) -> Source:
        """The source of present identity `attributes`; `order`: every configured name."""
        return cls(source_key(attributes, order), attributes)


def source_to_json(source: Source) -> dict[str, Any]:
    """A source as plain JSON: ``{"key": ..., "attributes": [[name, value], ...]}``."""
    return {"key": source.key, "attributes": [list(a) for a in source.attributes]}


def source_from_json(data: Mapping[str, Any]) -> Source:
    """The inverse of `source_to_json`."""
    attrs = tuple((str(k), str(v)) for k, v in data.get("attributes", ()))
    return Source(str(data["key"]), attrs)


@dataclass(frozen=True, slots=True)
class AttributeSample:
    """Attribute keys and value types of one sampled record, for schema inference.

    `record_index` is the sampled record's position in its batch (-1 when unknown).
    """

    source_index: int
    log_attributes: tuple[tuple[str, str], ...]
    resource_attributes: tuple[tuple[str, str], ...]
    record_index: int = -1


@dataclass(slots=True)
class LogBatch:
    """Normalised log records in columns; `patterns` fills the last three columns.

    Columns (all the same length): `source_index` (into `sources`), `severity` (canonical text:
    TRACE, DEBUG, INFO, WARN, ERROR, FATAL, or the sender's own word upper-cased), `body`,
    `time_ns` (event time), `trace_id`/`span_id` (lower hex, "" when absent), `unique_id`
    ("" when absent), `event_name`, `template_hint` (the `log.record.template` attribute).
    """

    sources: list[Source] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    time_ns: list[int] = field(default_factory=list)
    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    unique_id: list[str] = field(default_factory=list)
    event_name: list[str] = field(default_factory=list)
    template_hint: list[str] = field(default_factory=list)
    attribute_samples: list[AttributeSample] = field(default_factory=list)
    # Filled by the patterns stage.
    template_id: list[str] = field(default_factory=list)
    template: list[str] = field(default_factory=list)
    rhythm_hash: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.body)

    def source_of(self, i: int) -> Source:
        return self.sources[self.source_index[i]]

    def select(self, keep: list[int]) -> LogBatch:
        """A new batch with only the records at the indices in `keep` (in that order)."""
        cols = {}
        for name in _RECORD_COLUMNS:
            col = getattr(self, name)
            cols[name] = [col[i] for i in keep] if col else []
        new_index = {old: new for new, old in enumerate(keep)}
        samples = [
            dataclasses.replace(s, record_index=new_index[s.record_index])
            for s in self.attribute_samples
            if s.record_index in new_index
        ]
        return LogBatch(sources=self.sources, attribute_samples=samples, **cols)


_RECORD_COLUMNS = (
    "source_index",
    "severity",
    "body",
    "time_ns",
    "trace_id",
    "span_id",
    "unique_id",
    "event_name",
    "template_hint",
    "template_id",
    "template",
    "rhythm_hash",
)


class AnomalyKind(enum.StrEnum):
    """What kind of rhythm break an episode is."""

    NOVELTY = "novelty"
    SPIKE = "spike"
    DROP = "drop"
    DRIFT = "drift"
    CARDINALITY = "cardinality"
    SCHEMA = "schema"


class EpisodeState(enum.StrEnum):
    """An episode is emitted when it opens, when its score rises a band, and when it resolves."""

    OPEN = "open"
    RESOLVED = "resolved"
    UPDATED = "updated"  # still open; its score rose a band (10 points) since the last event


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """One event of an anomaly episode (its opening or its resolution).

    `expected`, `observed`, `baseline_mean` and `baseline_std` are counts per bucket of
    `bucket_seconds` (or distinct ids per bucket for cardinality); `explanation` is one line a
    person understands.
    """

    episode_id: str
    kind: AnomalyKind
    state: EpisodeState
    time_ns: int
    started_ns: int
    ended_ns: int
    score: float
    source: Source
    rhythm_hash: str
    template_id: str
    template: str
    severity: str
    expected: float
    observed: float
    baseline_mean: float
    baseline_std: float
    bucket_seconds: float
    explanation: str
    sample_trace_ids: tuple[str, ...] = ()


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
