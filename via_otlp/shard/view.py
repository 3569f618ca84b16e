"""Reading the learned state, wherever it lives: the same questions of an in-process `Pipeline`
and of the shards (for `/status` and the control API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from via_otlp.detect.engine import EngineStats
from via_otlp.detect.profile import ProfileState, ProfileSummary, RecentBucket
from via_otlp.model import source_from_json
from via_otlp.patterns.stage import PatternStats, TemplateInfo
from via_otlp.registry.records import SchemaRow

T = TypeVar("T")
_MAX_FIELDS = frozenset({"watermark_ns", "max_event_ns"})


def merge_stats(cls: type[T], parts: Iterable[Mapping[str, Any]]) -> T:
    """Counters of several shards as one: sums, and the largest of the clocks."""
    totals: dict[str, Any] = {}
    for part in parts:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            v = part.get(f.name, 0) or 0
            if f.name in _MAX_FIELDS:
                totals[f.name] = max(totals.get(f.name, v), v)
            else:
                totals[f.name] = totals.get(f.name, 0) + v
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        totals.setdefault(f.name, 0)
    return cls(**totals)


def profile_from_plain(d: Mapping[str, Any]) -> ProfileSummary:
    return ProfileSummary(
        **{**d, "source": source_from_json(d["source"]), "state": ProfileState(d["state"])}
    )


def recent_from_plain(d: Mapping[str, Any]) -> RecentBucket:
    return RecentBucket(**d)


def template_from_plain(d: Mapping[str, Any]) -> TemplateInfo:
    return TemplateInfo(**d)


def empty_engine_stats() -> EngineStats:
    return merge_stats(EngineStats, [])


def empty_pattern_stats() -> PatternStats:
    return merge_stats(PatternStats, [])


def schema_row_from_plain(d: Mapping[str, Any]) -> SchemaRow:
    return SchemaRow(source_from_json(d["source"]), d["attributes"], d["profile"])
