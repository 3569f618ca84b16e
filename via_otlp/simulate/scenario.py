"""Scenarios: labelled synthetic traffic, described in one JSON5 file each.

A scenario names its sources and their templates (text with ``{variable}`` placeholders, a
severity, a base rate per bucket and attributes), the shape of the traffic (daily and weekly
seasonality, Poisson or overdispersed noise), how long it runs, and the anomalies injected into
it, each with its kind, window and parameters. Loading validates every key with its path, as
`via.json5` does; the same file and seed always give the same traffic.

Placeholders: ``{id}`` (a number), ``{hex}``, ``{ip}``, ``{user}`` (from the template's user
population), ``{ms}`` (a duration), ``{word}`` (one word of free text), ``{int}`` (a small
integer). Attribute values use the same placeholders; an attribute whose value is exactly
``{ms}``, ``{id}`` or ``{int}`` is sent as an integer.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import json5

from via_otlp.configload import load_dataclass, spec
from via_otlp.correlate.config import RelatednessConfig
from via_otlp.errors import ConfigError
from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES, source_key
from via_otlp.times import parse_rfc3339

VARIABLES = ("id", "hex", "ip", "user", "ms", "word", "int")
_PLACEHOLDER = re.compile(r"\{([a-z]+)\}")


class InjectedKind(enum.StrEnum):
    """What a labelled anomaly does to the traffic."""

    SPIKE = "spike"  # rate × factor for the window
    DROP = "drop"  # rate ÷ factor for the window
    SILENCE = "silence"  # no records at all for the window
    NEW_TEMPLATE = "new_template"  # a template never seen before, for the window
    CARDINALITY = "cardinality"  # every record a fresh unique id, at volume × the rate
    DRIFT = "drift"  # rate + percent_per_hour of the base per hour, and it stays there
    SCHEMA = "schema"  # a new attribute key, or an attribute whose type changes


class SchemaChangeKind(enum.StrEnum):
    NEW_KEY = "new_key"
    TYPE_CHANGE = "type_change"


@dataclass(frozen=True)
class TemplateSpec:
    """One message shape of a source, with its base rate in records per bucket."""

    name: str = field(metadata=spec(nonempty=True))
    text: str = field(metadata=spec(nonempty=True))
    rate: float = field(metadata=spec(ge=0))
    severity: str = "INFO"
    attributes: dict[str, str] = field(default_factory=dict)
    users: int = field(default=1000, metadata=spec(ge=1))  # the unique-id population
    dispersion: float = field(default=0.0, metadata=spec(ge=0))  # 0: the scenario's noise
    # No records before this time from the scenario start (a word's second value, a new release).
    starts: float = field(default=0.0, metadata=spec(unit="duration", ge=0))

    def check(self) -> None:
        for where, text in [("text", self.text), *self.attributes.items()]:
            for var in _PLACEHOLDER.findall(text):
                if var not in VARIABLES:
                    raise ConfigError(
                        where, f"unknown placeholder {{{var}}}; known: {', '.join(VARIABLES)}"
                    )


@dataclass(frozen=True)
class SourceSpec:
    """A service (resource) and its templates."""

    service: str = field(metadata=spec(nonempty=True))
    namespace: str = ""
    environment: str = "prod"
    templates: tuple[TemplateSpec, ...] = ()

    @property
    def key(self) -> str:
        """The source key via-otlp derives with the default identity attributes."""
        names = DEFAULT_SOURCE_ATTRIBUTES
        values = (self.namespace, self.service, self.environment)
        return source_key([(n, v) for n, v in zip(names, values, strict=True) if v], names)


class DailyShape(enum.StrEnum):
    COSINE = "cosine"  # 1 + daily·cos(2π(hour - peak_hour)/24)
    BUSINESS = "business"  # a working day: night, a steep morning rise, a plateau, an evening fall


@dataclass(frozen=True)
class SeasonalitySpec:
    """Multiplicative shape: a daily curve (mean 1 over the day), smooth weekday factors.

    `shape` cosine: ``1 + daily·cos(...)`` peaking at `peak_hour`. `shape` business: the night at
    ``1 - daily`` (the cosine's trough), a logistic rise centred on `rise_hour` that goes from
    10 % to 90 % of the way to the plateau in `rise_hours`, a lunch dip of `lunch_dip` of the
    plateau's height over the night at `lunch_hour` (a Gaussian, sd 45 min), a logistic evening
    decline centred on `fall_hour` over `fall_hours`; the plateau is set so that the day's mean
    is 1 (`generate.business_day`). Hours are of the scenario's clock (UTC)."""

    daily: float = field(default=0.0, metadata=spec(ge=0, lt=1))
    peak_hour: float = field(default=14.0, metadata=spec(ge=0, lt=24))
    weekly: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # Monday first
    shape: DailyShape = DailyShape.COSINE
    rise_hour: float = field(default=8.5, metadata=spec(ge=0, lt=24))
    rise_hours: float = field(default=1.5, metadata=spec(gt=0, le=6))
    lunch_hour: float = field(default=12.5, metadata=spec(ge=0, lt=24))
    lunch_dip: float = field(default=0.1, metadata=spec(ge=0, lt=1))
    fall_hour: float = field(default=18.5, metadata=spec(ge=0, lt=24))
    fall_hours: float = field(default=3.0, metadata=spec(gt=0, le=6))

    def check(self) -> None:
        if len(self.weekly) != 7 or min(self.weekly) <= 0:
            raise ConfigError("weekly", "must be 7 positive factors, Monday first")
        if self.shape is DailyShape.BUSINESS and not self.rise_hour < self.fall_hour:
            raise ConfigError("fall_hour", "a business day falls after it rises (rise_hour)")


class NoiseKind(enum.StrEnum):
    POISSON = "poisson"
    NEGBIN = "negbin"
    GAMMA = "gamma"  # gamma-Poisson with a rate that wanders per `period`, not per bucket
    WALK = "walk"  # Poisson around a rate whose log is a slow, mean-reverting walk


@dataclass(frozen=True)
class NoiseSpec:
    """Count noise per bucket: Poisson; negative binomial with variance = dispersion × mean;
    gamma: the rate × a Gamma(shape, 1/shape) factor drawn per `period` and per template, then
    Poisson, so every bucket of a noisy minute is high together (as real rates wander); or
    walk: the rate × exp(x - v/2), x a stationary Ornstein-Uhlenbeck process sampled per
    `period` (held between), variance v = log(1 + 1/shape) (a period's factor has the gamma's
    mean 1 and variance 1/shape) and correlation time `correlation`, the sum of a part per
    service (`shared` of v) and one per template, then Poisson: rates drift and come back."""

    kind: NoiseKind = NoiseKind.POISSON
    dispersion: float = field(default=2.0, metadata=spec(ge=1))
    shape: float = field(default=10.0, metadata=spec(gt=0))
    period: float = field(default=60.0, metadata=spec(unit="duration", gt=0))
    correlation: float = field(default=2400.0, metadata=spec(unit="duration", gt=0))  # walk
    shared: float = field(default=0.0, metadata=spec(ge=0, le=1))  # walk

    @property
    def walk_var(self) -> float:
        """The walk's stationary variance of the log-rate (`kind` walk)."""
        return math.log1p(1.0 / self.shape)

    @property
    def walk_phi(self) -> float:
        """The walk's correlation from one `period` to the next."""
        return math.exp(-self.period / self.correlation)


@dataclass(frozen=True)
class AnomalySpec:
    """One injected, labelled anomaly: what, where, when and how strong."""

    kind: InjectedKind
    source: str = field(metadata=spec(nonempty=True))  # the service
    at: float = field(metadata=spec(unit="duration", ge=0))  # from the scenario start
    duration: float = field(metadata=spec(unit="duration", gt=0))
    template: str = ""  # a template name; "" means every template of the source
    factor: float = field(default=10.0, metadata=spec(gt=1))
    volume: float = field(default=1.0, metadata=spec(gt=0))  # cardinality: rate × volume
    percent_per_hour: float = 20.0
    text: str = ""  # new_template
    severity: str = "ERROR"  # new_template
    rate: float = field(default=2.0, metadata=spec(gt=0))  # new_template
    change: SchemaChangeKind = SchemaChangeKind.NEW_KEY  # schema
    attribute: str = ""  # schema
    type: str = "int"  # schema: new key's type, or the changed type
    incident: str = ""  # the true incident it belongs to ("": one of its own); see incidents.py
    traces: str = ""  # a trace group: its records share trace ids with the group's other anomalies

    def check(self) -> None:
        if self.kind is InjectedKind.NEW_TEMPLATE and not self.text:
            raise ConfigError("text", "a new_template anomaly needs its text")
        if self.kind is InjectedKind.SCHEMA and not self.attribute:
            raise ConfigError("attribute", "a schema anomaly needs the attribute it changes")
        if self.kind is InjectedKind.SCHEMA and self.type not in (
            "int",
            "string",
            "double",
            "bool",
        ):
            raise ConfigError("type", f"must be int, string, double or bool, got {self.type!r}")
        if self.kind in (InjectedKind.CARDINALITY, InjectedKind.SCHEMA) and not self.template:
            raise ConfigError("template", f"a {self.kind.value} anomaly names its template")


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file."""

    name: str = field(metadata=spec(nonempty=True))
    duration: float = field(metadata=spec(unit="duration", gt=0))
    sources: tuple[SourceSpec, ...]
    description: str = ""
    seed: int = 1
    start: str = "2024-03-04T00:00:00Z"  # a Monday
    bucket: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    seasonality: SeasonalitySpec = field(default_factory=SeasonalitySpec)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    anomalies: tuple[AnomalySpec, ...] = ()
    tolerance: float = field(default=300.0, metadata=spec(unit="duration", ge=0))
    relatedness: RelatednessConfig = field(default_factory=RelatednessConfig)  # for correlation

    def check(self) -> None:
        try:
            self.start_ns  # noqa: B018
        except ValueError as exc:
            raise ConfigError("start", f"must be an ISO 8601 time, got {self.start!r}") from exc
        names = {s.service for s in self.sources}
        if len(names) != len(self.sources):
            raise ConfigError("sources", "service names must be unique")
        for i, a in enumerate(self.anomalies):
            src = next((s for s in self.sources if s.service == a.source), None)
            if src is None:
                raise ConfigError(f"anomalies[{i}].source", f"no source {a.source!r}")
            named = a.template and a.kind is not InjectedKind.NEW_TEMPLATE
            if named and a.template not in {t.name for t in src.templates}:
                raise ConfigError(
                    f"anomalies[{i}].template", f"{a.source} has no template {a.template!r}"
                )
            if a.at + a.duration > self.duration:
                raise ConfigError(f"anomalies[{i}]", "ends after the scenario does")

    @property
    def start_ns(self) -> int:
        return parse_rfc3339(self.start, naive_is_utc=True)

    @property
    def bucket_ns(self) -> int:
        return round(self.bucket * 1e9)

    @property
    def buckets(self) -> int:
        return int(self.duration // self.bucket)

    def source(self, service: str) -> SourceSpec:
        return next(s for s in self.sources if s.service == service)


def parse_scenario(text: str, origin: str = "<scenario>") -> Scenario:
    """A `Scenario` from JSON5 text (errors carry the key path)."""
    try:
        data = json5.loads(text)
    except ValueError as exc:
        raise ConfigError("", f"{origin} is not valid JSON5: {exc}") from None
    try:
        return load_dataclass(Scenario, data, "")
    except ConfigError as exc:
        raise ConfigError("", f"{origin}: {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read scenario {p}: {exc.strerror}") from None
    return parse_scenario(text, str(p))
