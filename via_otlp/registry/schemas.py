"""Schema inference per source: which attribute keys its records carry, with which types.

Pure, no I/O. The intake samples one record in N into `LogBatch.attribute_samples`; `observe`
counts those per source (and a strided sample of templates, for the behavioural profile).
`check(now_ns)` closes a window every `window` seconds: each source with enough samples is
compared with its learned baseline (presence ratio and type shares per key, EWMA with
`learn_rate`), then the baseline learns the window. A change with real weight opens a
`schema` episode; it resolves when the change no longer stands out (the baseline has accepted
it, or it went away):

- *appeared*: presence rose by at least `min_weight` from below `min_weight / 2`;
- *vanished*: presence fell by at least `min_weight` and to under half its baseline;
- *type change*: a type the key did not have (baseline share < 5%) carries it in at least
  `min_weight` of the source's sampled records.

>>> from via_otlp.model import AttributeSample, LogBatch, Source
>>> t = SchemaTracker(SchemaDriftConfig(window=60, min_samples=10, warmup_windows=1))
>>> def batch(attrs):
...     return LogBatch(sources=[Source.from_attributes((("service.name", "api"),))],
...                     attribute_samples=[AttributeSample(0, attrs, ())] * 20)
>>> t.observe(batch((("user", "string"),))); t.check(0)
[]
>>> t.check(60 * 10**9)  # the first window only teaches
[]
>>> t.observe(batch((("user", "string"), ("tenant", "int"))))
>>> [(e.template, e.state.value) for e in t.check(120 * 10**9)]
[('log attribute tenant', 'open')]
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import xxhash

from via_otlp.model import (
    AnomalyEvent,
    AnomalyKind,
    EpisodeState,
    LogBatch,
    Source,
    source_from_json,
    source_to_json,
)
from via_otlp.patterns.rhythm import rhythm_hash
from via_otlp.registry.config import SchemaDriftConfig
from via_otlp.registry.records import SchemaRow

SNAPSHOT_VERSION = 1
_NEW_TYPE_SHARE = 0.05
_FORGET_PRESENCE = 0.001
TEMPLATE_SAMPLE_EVERY = 16
_SEVERITY = "WARN"


class AttributeScope(enum.StrEnum):
    """Where an attribute sits: on the log record or on its resource."""

    LOG = "log"
    RESOURCE = "resource"


class SchemaChange(enum.StrEnum):
    """What changed about one attribute key."""

    APPEARED = "appeared"
    VANISHED = "vanished"
    TYPE_CHANGED = "type_changed"


@dataclass(frozen=True, slots=True)
class AttributeStat:
    """A key's learned presence ratio and value-type shares (both 0..1)."""

    scope: AttributeScope
    key: str
    presence: float
    types: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class TemplateRate:
    """A template's share of a source's records and its rate, from the last closed window."""

    template_id: str
    template: str
    rate_per_s: float
    share: float


@dataclass(frozen=True, slots=True)
class SourceSchema:
    """What the tracker learned about one source (a typed view of its snapshot)."""

    source: Source
    attributes: tuple[AttributeStat, ...]
    top_templates: tuple[TemplateRate, ...]
    samples: int
    windows: int


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """A stored source schema: the learned schema, the behavioural profile, and when."""

    schema: SourceSchema
    profile: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class _KeyStats:
    presence: float = 0.0
    types: dict[str, float] = field(default_factory=dict)
    win_count: int = 0
    win_types: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Open:
    episode_id: str
    started_ns: int


_KeyId = tuple[AttributeScope, str]
_OpenId = tuple[SchemaChange, AttributeScope, str]


@dataclass(slots=True)
class _SourceState:
    source: Source
    keys: dict[_KeyId, _KeyStats] = field(default_factory=dict)
    windows: int = 0
    samples: int = 0
    win_samples: int = 0
    win_started_ns: int | None = None
    templates: Counter[tuple[str, str]] = field(default_factory=Counter)
    top_templates: tuple[TemplateRate, ...] = ()
    open: dict[_OpenId, _Open] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Finding:
    change: SchemaChange
    scope: AttributeScope
    key: str
    expected: float
    observed: float
    type_name: str = ""


class SchemaTracker:
    """Learns each source's attribute schema and reports drift as `schema` anomaly events."""

    def __init__(self, config: SchemaDriftConfig | None = None) -> None:
        self.config = config or SchemaDriftConfig()
        self._sources: dict[str, _SourceState] = {}
        self._window_start_ns: int | None = None
        self._dirty: set[str] = set()
        self.overflow_sources = 0
        self.overflow_keys = 0

    # -- hot path -----------------------------------------------------------------------------

    def observe(self, batch: LogBatch) -> None:
        """Count the batch's attribute samples (and a strided sample of its templates)."""
        states: dict[int, _SourceState | None] = {}
        for sample in batch.attribute_samples:
            st = states.get(sample.source_index, _MISSING)
            if st is _MISSING:
                st = states[sample.source_index] = self._state_for(batch, sample.source_index)
            if st is None:
                continue
            st.win_samples += 1
            self._count(st, AttributeScope.LOG, sample.log_attributes)
            self._count(st, AttributeScope.RESOURCE, sample.resource_attributes)
        if batch.template_id and batch.template:
            self._count_templates(batch, states)

    def _state_for(self, batch: LogBatch, index: int) -> _SourceState | None:
        if not 0 <= index < len(batch.sources):
            return None
        source = batch.sources[index]
        st = self._sources.get(source.key)
        if st is None:
            if len(self._sources) >= self.config.max_sources:
                self.overflow_sources += 1
                return None
            st = self._sources[source.key] = _SourceState(source)
            st.win_started_ns = self._window_start_ns
        return st

    def _count(
        self, st: _SourceState, scope: AttributeScope, attrs: Iterable[tuple[str, str]]
    ) -> None:
        keys = st.keys
        for key, type_name in attrs:
            ks = keys.get((scope, key))
            if ks is None:
                if len(keys) >= self.config.max_keys_per_source:
                    self.overflow_keys += 1
                    continue
                ks = keys[(scope, key)] = _KeyStats()
            ks.win_count += 1
            ks.win_types[type_name] = ks.win_types.get(type_name, 0) + 1

    def _count_templates(self, batch: LogBatch, states: dict[int, _SourceState | None]) -> None:
        step = TEMPLATE_SAMPLE_EVERY
        triples = zip(
            batch.source_index[::step],
            batch.template_id[::step],
            batch.template[::step],
            strict=False,
        )
        for (index, tid, text), n in Counter(triples).items():
            st = states.get(index, _MISSING)
            if st is _MISSING:
                st = states[index] = self._state_for(batch, index)
            if st is not None and (
                len(st.templates) < 8 * self.config.top_templates or (tid, text) in st.templates
            ):
                st.templates[(tid, text)] += n

    # -- windows ------------------------------------------------------------------------------

    def window_open_at(self, now_ns: int) -> bool:
        """Whether `check(now_ns)` would close nothing and start nothing (a shard coalescing
        batches checks it for the watermarks between them)."""
        start = self._window_start_ns
        return start is not None and now_ns - start < self.config.window * 1e9

    def check(self, now_ns: int) -> list[AnomalyEvent]:
        """Close the window if `window` seconds passed since it opened; return drift events."""
        if self._window_start_ns is None:
            self._window_start_ns = now_ns
            return []
        if now_ns - self._window_start_ns < self.config.window * 1e9:
            return []
        window_start, self._window_start_ns = self._window_start_ns, now_ns
        events: list[AnomalyEvent] = []
        for st in self._sources.values():
            if st.win_started_ns is None:
                st.win_started_ns = window_start
            if st.win_samples >= self.config.min_samples:
                events.extend(self._close_window(st, now_ns))
        return events

    def _close_window(self, st: _SourceState, now_ns: int) -> list[AnomalyEvent]:
        findings = self._findings(st) if st.windows >= self.config.warmup_windows else []
        events = self._episodes(st, findings, now_ns)
        self._learn(st, now_ns)
        self._dirty.add(st.source.key)
        return events

    def _findings(self, st: _SourceState) -> list[_Finding]:
        w = self.config.min_weight
        n = st.win_samples
        out = []
        for (scope, key), ks in st.keys.items():
            cur, base = ks.win_count / n, ks.presence
            if base < w / 2 and cur - base >= w:
                out.append(_Finding(SchemaChange.APPEARED, scope, key, base, cur))
            elif base - cur >= w and cur < base / 2:
                out.append(_Finding(SchemaChange.VANISHED, scope, key, base, cur))
            if base >= w / 2 and ks.types:
                for type_name, count in ks.win_types.items():
                    share = count / n
                    if share >= w and ks.types.get(type_name, 0.0) < _NEW_TYPE_SHARE:
                        expected = ks.types.get(type_name, 0.0) * base
                        out.append(
                            _Finding(
                                SchemaChange.TYPE_CHANGED, scope, key, expected, share, type_name
                            )
                        )
                        break
        return out

    def _episodes(
        self, st: _SourceState, findings: list[_Finding], now_ns: int
    ) -> list[AnomalyEvent]:
        events = []
        seen: set[_OpenId] = set()
        for f in findings:
            oid = (f.change, f.scope, f.key)
            seen.add(oid)
            if oid not in st.open:
                episode_id = _episode_id(st.source.key, oid, now_ns)
                st.open[oid] = _Open(episode_id, now_ns)
                events.append(self._event(st, f, st.open[oid], EpisodeState.OPEN, now_ns))
        for oid in [o for o in st.open if o not in seen]:
            opened = st.open.pop(oid)
            ks = st.keys.get((oid[1], oid[2]))
            cur = ks.win_count / st.win_samples if ks else 0.0
            f = _Finding(oid[0], oid[1], oid[2], ks.presence if ks else 0.0, cur)
            events.append(self._event(st, f, opened, EpisodeState.RESOLVED, now_ns))
        return events

    def _learn(self, st: _SourceState, now_ns: int) -> None:
        a = 1.0 if st.windows == 0 else self.config.learn_rate
        n = st.win_samples
        for kid in list(st.keys):
            ks = st.keys[kid]
            ks.presence += a * (ks.win_count / n - ks.presence)
            if ks.win_count:
                for t in set(ks.types) | set(ks.win_types):
                    old = ks.types.get(t, 0.0)
                    ks.types[t] = old + a * (ks.win_types.get(t, 0) / ks.win_count - old)
                ks.types = {t: s for t, s in ks.types.items() if s >= _FORGET_PRESENCE}
            ks.win_count, ks.win_types = 0, {}
            if ks.presence < _FORGET_PRESENCE and not any(o[1:] == kid for o in st.open):
                del st.keys[kid]
        st.top_templates = self._top_templates(st, now_ns)
        st.templates = Counter()
        st.samples += n
        st.win_samples = 0
        st.win_started_ns = now_ns
        st.windows += 1

    def _top_templates(self, st: _SourceState, now_ns: int) -> tuple[TemplateRate, ...]:
        total = sum(st.templates.values())
        started = now_ns if st.win_started_ns is None else st.win_started_ns
        seconds = max((now_ns - started) / 1e9, 1e-9)
        if not total:
            return st.top_templates
        top = st.templates.most_common(self.config.top_templates)
        return tuple(
            TemplateRate(tid, text, n * TEMPLATE_SAMPLE_EVERY / seconds, n / total)
            for (tid, text), n in top
        )

    def _event(
        self, st: _SourceState, f: _Finding, opened: _Open, state: EpisodeState, now_ns: int
    ) -> AnomalyEvent:
        scope_word = f"{f.scope.value} attribute"
        template_id = f"schema:{f.scope.value}:{f.key}"
        n = max(st.win_samples, 1)
        return AnomalyEvent(
            episode_id=opened.episode_id,
            kind=AnomalyKind.SCHEMA,
            state=state,
            time_ns=now_ns,
            started_ns=opened.started_ns,
            ended_ns=now_ns if state is EpisodeState.RESOLVED else 0,
            score=abs(f.observed - f.expected),
            source=st.source,
            rhythm_hash=rhythm_hash(st.source.key, _SEVERITY, template_id),
            template_id=template_id,
            template=f"{scope_word} {f.key}",
            severity=_SEVERITY,
            expected=f.expected,
            observed=f.observed,
            baseline_mean=f.expected,
            baseline_std=math.sqrt(max(f.expected * (1 - f.expected), 0.0) / n),
            bucket_seconds=self.config.window,
            explanation=_explain(st.source, f, scope_word, state),
        )

    # -- views and snapshots ------------------------------------------------------------------

    def sources(self) -> list[str]:
        return sorted(self._sources)

    def schema(self, source_key: str) -> SourceSchema | None:
        """The learned schema of one source, or None if it was never seen."""
        st = self._sources.get(source_key)
        return None if st is None else schema_from_snapshot(_source_snapshot(st))

    def export_source(self, source_key: str) -> dict[str, Any] | None:
        """One source's snapshot (what `restore_source` takes), or None if it was never seen."""
        st = self._sources.get(source_key)
        return None if st is None else _source_snapshot(st)

    def forget_sources(self, keys: Iterable[str]) -> None:
        """Drop what was learnt of `keys` (another instance owns those sources now)."""
        for key in keys:
            self._sources.pop(key, None)
            self._dirty.discard(key)

    def take_dirty(self) -> list[SchemaRow]:
        """Rows for the sources whose schema changed since the last call (for saving)."""
        rows = []
        for key in sorted(self._dirty):
            st = self._sources.get(key)
            if st is not None:
                snap = _source_snapshot(st)
                rows.append(SchemaRow(st.source, snap, _profile(st)))
        self._dirty.clear()
        return rows

    def snapshot(self) -> dict[str, Any]:
        """The whole tracker as versioned JSON (learned baselines and open episodes)."""
        return {
            "version": SNAPSHOT_VERSION,
            "window_start_ns": self._window_start_ns,
            "sources": [_source_snapshot(st) for st in self._sources.values()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a `snapshot`; sources beyond `max_sources` are left out (and counted)."""
        _check_version(data)
        start = data.get("window_start_ns")
        self._window_start_ns = None if start is None else int(start)
        for item in data.get("sources", ()):
            self.restore_source(item)

    def restore_source(self, data: Mapping[str, Any]) -> None:
        """Load one source's snapshot (a `schemas.attributes` value), replacing what is known."""
        _check_version(data)
        source = source_from_json(data["source"])
        if source.key not in self._sources and len(self._sources) >= self.config.max_sources:
            self.overflow_sources += 1
            return
        st = _SourceState(source, windows=int(data["windows"]), samples=int(data["samples"]))
        for item in data.get("keys", ())[: self.config.max_keys_per_source]:
            kid = (AttributeScope(item["scope"]), str(item["key"]))
            st.keys[kid] = _KeyStats(
                float(item["presence"]), {str(t): float(s) for t, s in item["types"].items()}
            )
        for item in data.get("open", ()):
            oid = (SchemaChange(item["change"]), AttributeScope(item["scope"]), str(item["key"]))
            st.open[oid] = _Open(str(item["episode_id"]), int(item["started_ns"]))
        st.top_templates = tuple(TemplateRate(**t) for t in data.get("templates", ()))
        self._sources[source.key] = st


_MISSING: Any = object()


def _check_version(data: Mapping[str, Any]) -> None:
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported schema snapshot version {data.get('version')!r}")


def _source_snapshot(st: _SourceState) -> dict[str, Any]:
    return {
        "version": SNAPSHOT_VERSION,
        "source": source_to_json(st.source),
        "windows": st.windows,
        "samples": st.samples,
        "keys": [
            {"scope": scope.value, "key": key, "presence": ks.presence, "types": dict(ks.types)}
            for (scope, key), ks in sorted(st.keys.items())
        ],
        "open": [
            {
                "change": c.value,
                "scope": s.value,
                "key": k,
                "episode_id": o.episode_id,
                "started_ns": o.started_ns,
            }
            for (c, s, k), o in st.open.items()
        ],
        "templates": [_template_json(t) for t in st.top_templates],
    }


def _template_json(t: TemplateRate) -> dict[str, Any]:
    return {
        "template_id": t.template_id,
        "template": t.template,
        "rate_per_s": t.rate_per_s,
        "share": t.share,
    }


def _profile(st: _SourceState) -> dict[str, Any]:
    return {
        "version": SNAPSHOT_VERSION,
        "top_templates": [_template_json(t) for t in st.top_templates],
    }


def schema_from_snapshot(data: Mapping[str, Any]) -> SourceSchema:
    """The typed view of one source's snapshot (as stored in `schemas.attributes`)."""
    _check_version(data)
    attributes = tuple(
        AttributeStat(AttributeScope(k["scope"]), k["key"], float(k["presence"]), dict(k["types"]))
        for k in data.get("keys", ())
    )
    templates = tuple(TemplateRate(**t) for t in data.get("templates", ()))
    return SourceSchema(
        source=source_from_json(data["source"]),
        attributes=attributes,
        top_templates=templates,
        samples=int(data.get("samples", 0)),
        windows=int(data.get("windows", 0)),
    )


def _episode_id(source_key: str, oid: _OpenId, now_ns: int) -> str:
    change, scope, key = oid
    return _hash(source_key, "schema", change.value, scope.value, key, str(now_ns))


def _hash(*parts: str) -> str:
    return xxhash.xxh64_hexdigest("\x1f".join(parts).encode("utf-8"))


def _explain(source: Source, f: _Finding, scope_word: str, state: EpisodeState) -> str:
    who = f"{scope_word} {f.key!r} of {source.key or source.service_name}"
    pct = f"{f.observed:.0%} of sampled records (baseline {f.expected:.0%})"
    if state is EpisodeState.RESOLVED:
        return f"{who}: schema change over, now in {f.observed:.0%} of sampled records"
    if f.change is SchemaChange.APPEARED:
        return f"{who} appeared: in {pct}"
    if f.change is SchemaChange.VANISHED:
        return f"{who} vanished: in {pct}"
    return f"{who} changed type: {f.type_name} in {pct}"
