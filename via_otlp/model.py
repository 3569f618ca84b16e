"""The records that travel between stages: `Source`, `LogBatch` and `AnomalyEvent`.

A `LogBatch` is columnar (parallel lists, one entry per record): work is done per batch and per
group of equal values, never per record object, which is what makes Python fast enough here.
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
    """An episode is emitted when it opens and when it resolves."""

    OPEN = "open"
    RESOLVED = "resolved"


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
