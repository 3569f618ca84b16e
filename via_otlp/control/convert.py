"""Translation between via.v1 protobuf messages and VIA's own dataclasses. Pure: no I/O.

Also the pure parts of the List calls: filtering, ordering and keyset paging of in-memory
profiles and templates (page tokens from `via_otlp.paging`, shared with the registry's lists).
A malformed argument is an `InputError`, which the server answers with INVALID_ARGUMENT.

>>> from via_otlp.registry.patches import Patch, PatchRule
>>> pb = patch_to_proto(Patch(PatchRule.MUTE, source="shop/*", id="p1"), now_ns=0)
>>> (pb.rule == pb2.PATCH_RULE_MUTE, pb.source, pb.in_force)
(True, 'shop/*', True)
>>> patch_from_proto(pb, now_ns=0) == Patch(PatchRule.MUTE, source="shop/*", id="p1")
True
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.correlate.model import SimilarResult
from via_otlp.detect.engine import EngineStats
from via_otlp.detect.profile import ProfileState, ProfileSummary, RecentBucket
from via_otlp.emit.exporter import EmitStats
from via_otlp.errors import InputError
from via_otlp.model import (
    AnomalyEvent,
    AnomalyKind,
    EpisodeState,
    Incident,
    IncidentLink,
    IncidentMember,
    IncidentState,
    LinkType,
    Source,
)
from via_otlp.paging import decode_token, encode_token, malformed_token
from via_otlp.patterns.stage import PatternStats, TemplateInfo
from via_otlp.receive.intake import IntakeStats
from via_otlp.registry.patches import Patch, PatchRule
from via_otlp.registry.records import AnomalyRecord, RegistryStatus
from via_otlp.registry.schemas import SchemaRecord
from via_otlp.status import ServiceStatus
from via_otlp.times import ns_from_datetime

T = TypeVar("T")

_NS = 1_000_000_000

KIND_TO_PROTO = {
    AnomalyKind.NOVELTY: pb2.ANOMALY_KIND_NOVELTY,
    AnomalyKind.SPIKE: pb2.ANOMALY_KIND_SPIKE,
    AnomalyKind.DROP: pb2.ANOMALY_KIND_DROP,
    AnomalyKind.DRIFT: pb2.ANOMALY_KIND_DRIFT,
    AnomalyKind.CARDINALITY: pb2.ANOMALY_KIND_CARDINALITY,
    AnomalyKind.SCHEMA: pb2.ANOMALY_KIND_SCHEMA,
}
KIND_FROM_PROTO: dict[int, AnomalyKind] = {v: k for k, v in KIND_TO_PROTO.items()}
STATE_TO_PROTO = {
    EpisodeState.OPEN: pb2.EPISODE_STATE_OPEN,
    EpisodeState.RESOLVED: pb2.EPISODE_STATE_RESOLVED,
}
STATE_FROM_PROTO: dict[int, EpisodeState] = {v: k for k, v in STATE_TO_PROTO.items()}
RULE_TO_PROTO = {
    PatchRule.MUTE: pb2.PATCH_RULE_MUTE,
    PatchRule.DROP: pb2.PATCH_RULE_DROP,
    PatchRule.THRESHOLD: pb2.PATCH_RULE_THRESHOLD,
    PatchRule.ALLOW: pb2.PATCH_RULE_ALLOW,
    PatchRule.BLOCK: pb2.PATCH_RULE_BLOCK,
}
RULE_FROM_PROTO: dict[int, PatchRule] = {v: k for k, v in RULE_TO_PROTO.items()}
INCIDENT_STATE_TO_PROTO = {
    IncidentState.OPEN: pb2.INCIDENT_STATE_OPEN,
    IncidentState.RESOLVED: pb2.INCIDENT_STATE_RESOLVED,
}
INCIDENT_STATE_FROM_PROTO: dict[int, IncidentState] = {
    v: k for k, v in INCIDENT_STATE_TO_PROTO.items()
}
LINK_TO_PROTO = {
    LinkType.TEMPORAL: pb2.LINK_TYPE_TEMPORAL,
    LinkType.TRACE: pb2.LINK_TYPE_TRACE,
    LinkType.SEMANTIC: pb2.LINK_TYPE_SEMANTIC,
}
_PROFILE_STATE = {
    ProfileState.LEARNING: pb2.PROFILE_STATE_LEARNING,
    ProfileState.ACTIVE: pb2.PROFILE_STATE_ACTIVE,
}


# -- paging ----------------------------------------------------------------------------------


def page_size(requested: int, default: int, maximum: int) -> int:
    """The page size to use: `default` for 0, never above `maximum`."""
    return min(requested or default, maximum)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of an in-memory list."""

    items: list[T]
    next_page_token: str
    total: int


def paginate(
    items: Iterable[T],
    sort_key: Callable[[T], tuple[Any, ...]],
    kind: str,
    size: int,
    token: str,
) -> Page[T]:
    """Sort `items` by `sort_key` (unique per item) and return the page after `token`'s key."""
    ordered = sorted(items, key=sort_key)
    start = 0
    if token:
        after = tuple(decode_token(token, kind))
        try:
            start = next((i for i, x in enumerate(ordered) if sort_key(x) > after), len(ordered))
        except TypeError:  # a token of the same list kind but another shape
            raise malformed_token(token) from None
    page = ordered[start : start + size]
    more = start + size < len(ordered)
    next_token = encode_token(kind, sort_key(page[-1])) if more and page else ""
    return Page(page, next_token, len(ordered))


def source_matches(pattern: str, key: str) -> bool:
    """A source filter: "" matches all; a glob ("shop/*") or an exact key."""
    if not pattern:
        return True
    return fnmatch.fnmatchcase(key, pattern)


# -- status ----------------------------------------------------------------------------------


def status_to_proto(s: ServiceStatus, bucket_seconds: float) -> pb2.GetStatusResponse:
    """GetStatus: the same `ServiceStatus` that `/status` shows as JSON."""
    out = pb2.GetStatusResponse(
        version=s.version,
        state=s.state.value,
        uptime_seconds=s.uptime_seconds,
        queue=pb2.QueueStatus(depth=s.queue_depth, capacity=s.queue_capacity),
        rhythm_hashes=s.rhythm_hashes,
        events=pb2.EventsStatus(emitted=s.events_emitted, suppressed=s.events_suppressed),
    )
    out.intake.CopyFrom(intake_to_proto(s.intake))
    out.profiles.CopyFrom(engine_to_proto(s.engine, bucket_seconds))
    out.templates.CopyFrom(patterns_to_proto(s.patterns))
    out.registry.CopyFrom(registry_to_proto(s.registry))
    out.emitter.CopyFrom(emitter_to_proto(s.emitter))
    return out


def intake_to_proto(s: IntakeStats) -> pb2.IntakeStatus:
    out = pb2.IntakeStatus(
        records_accepted=s.records_accepted,
        records_dropped_by_patch=s.records_dropped_by_patch,
        records_consumed=s.records_consumed,
        invalid_utf8_requests=s.invalid_utf8_requests,
    )
    for (transport, outcome), n in sorted(s.requests.items()):
        out.requests.add(transport=transport.value, outcome=outcome.value, count=n)
    fixed = s.normalised
    out.records_normalised.update(
        future_clamped=fixed.future_clamped,
        missing_timestamp=fixed.missing_timestamp,
        missing_service_name=fixed.missing_service_name,
        loopback_ignored=fixed.loopback_ignored,
    )
    return out


def engine_to_proto(s: EngineStats, bucket_seconds: float) -> pb2.ProfilesStatus:
    return pb2.ProfilesStatus(
        tracked=s.profiles,
        learning=s.profiles_learning,
        evictions_idle=s.evictions_idle,
        evictions_capacity=s.evictions_capacity,
        records=s.records,
        late_records=s.late_records,
        dropped_records=s.dropped_records,
        buckets_closed=s.buckets_closed,
        open_buckets=s.open_buckets,
        open_episodes=s.open_episodes,
        episodes_opened=s.episodes_opened,
        episodes_resolved=s.episodes_resolved,
        watermark_unix_nano=s.watermark_ns,
        max_event_unix_nano=s.max_event_ns,
        bucket_seconds=bucket_seconds,
    )


def patterns_to_proto(s: PatternStats) -> pb2.TemplatesStatus:
    return pb2.TemplatesStatus(
        sources=s.sources,
        templates=s.templates,
        lines=s.lines,
        created=s.created,
        merges=s.merges,
        evictions=s.evictions,
        flooding_sources=s.flooding_sources,
        flooded_lines=s.flooded_lines,
        hinted=s.hinted,
    )


def registry_to_proto(s: RegistryStatus | None) -> pb2.RegistryStatus:
    if s is None:
        return pb2.RegistryStatus(state="disabled")
    w = s.writer
    return pb2.RegistryStatus(
        state=s.state.value,
        embedded=s.embedded,
        database=s.database,
        migrations_applied=list(s.migrations_applied),
        patches_active=s.patches_active,
        patches_listening=s.patches_listening,
        records_dropped_by_patch=s.records_dropped_by_patch,
        events_muted=s.events_muted,
        writer_buffered=w.buffered,
        writer_written=w.written,
        writer_dropped=w.dropped,
        writer_failed=w.failed,
        last_error=w.last_error,
    )


def emitter_to_proto(s: EmitStats) -> pb2.EmitterStatus:
    return pb2.EmitterStatus(
        state=s.state.value,
        queued=s.queued,
        sent=s.sent,
        retries=s.retries,
        rejected=s.rejected,
        dropped_queue_full=s.dropped_queue_full,
        dropped_shutdown=s.dropped_shutdown,
        failed_permanent=s.failed_permanent,
        failed_retries_exhausted=s.failed_retries_exhausted,
        last_error=s.last_error,
    )


# -- profiles and templates ------------------------------------------------------------------


def source_to_proto(source: Source) -> pb2.Source:
    return pb2.Source(
        key=source.key, attributes=[pb2.Attribute(key=k, value=v) for k, v in source.attributes]
    )


def profile_to_proto(p: ProfileSummary) -> pb2.Profile:
    rate = p.baseline_mean * 60.0 / p.bucket_seconds if p.bucket_seconds > 0 else 0.0
    return pb2.Profile(
        rhythm_hash=p.rhythm_hash,
        source=source_to_proto(p.source),
        template_id=p.template_id,
        template=p.template,
        severity=p.severity,
        first_seen_unix_nano=p.first_seen_ns,
        last_seen_unix_nano=p.last_seen_ns,
        total_count=p.total_count,
        buckets_seen=p.buckets_seen,
        baseline_mean=p.baseline_mean,
        baseline_std=p.baseline_std,
        distinct_mean=p.distinct_mean,
        bucket_seconds=p.bucket_seconds,
        rate_per_minute=rate,
        state=_PROFILE_STATE.get(p.state, pb2.PROFILE_STATE_UNSPECIFIED),
    )


def recent_to_proto(buckets: Iterable[RecentBucket]) -> list[pb2.BucketCount]:
    """A profile's recent buckets (oldest first) as GetProfile shows them."""
    return [
        pb2.BucketCount(
            start_unix_nano=b.start_ns,
            count=float(b.count),
            distinct=float(b.distinct),
            expected=b.expected,
        )
        for b in buckets
    ]


def profile_sort_key(order: int) -> Callable[[ProfileSummary], tuple[Any, ...]]:
    """The sort key of a ListProfiles order (always ending in the rhythm hash: unique)."""
    if order == pb2.PROFILE_ORDER_RATE:
        return lambda p: (-p.baseline_mean, p.rhythm_hash)
    if order == pb2.PROFILE_ORDER_RECENCY:
        return lambda p: (-p.last_seen_ns, p.rhythm_hash)
    if order == pb2.PROFILE_ORDER_UNSPECIFIED:
        return lambda p: (p.rhythm_hash,)
    raise InputError(f"unknown order_by {order}")


def page_profiles(
    profiles: Iterable[ProfileSummary], source: str, order: int, size: int, token: str
) -> Page[ProfileSummary]:
    """Filter by source, order, and cut the page after `token`."""
    key = profile_sort_key(order)
    chosen = (p for p in profiles if source_matches(source, p.source_key))
    return paginate(chosen, key, f"profiles:{order}:{source}", size, token)


def page_templates(
    templates: Iterable[TemplateInfo], source: str, size: int, token: str
) -> Page[TemplateInfo]:
    """Filter by source; by source key, then most lines first."""
    chosen = (t for t in templates if source_matches(source, t.source_key))
    return paginate(
        chosen,
        lambda t: (t.source_key, -t.count, t.template_id),
        f"templates:{source}",
        size,
        token,
    )


def template_to_proto(t: TemplateInfo, rhythm_hashes: Sequence[str] = ()) -> pb2.Template:
    return pb2.Template(
        source_key=t.source_key,
        template_id=t.template_id,
        template=t.template,
        count=t.count,
        rhythm_hashes=sorted(rhythm_hashes),
    )


# -- anomalies -------------------------------------------------------------------------------


def kind_from_proto(value: int) -> AnomalyKind | None:
    """A kind filter (None for UNSPECIFIED)."""
    if value == pb2.ANOMALY_KIND_UNSPECIFIED:
        return None
    try:
        return KIND_FROM_PROTO[value]
    except KeyError:
        raise InputError(f"unknown anomaly kind {value}") from None


def state_from_proto(value: int) -> EpisodeState | None:
    """A state filter (None for UNSPECIFIED)."""
    if value == pb2.EPISODE_STATE_UNSPECIFIED:
        return None
    try:
        return STATE_FROM_PROTO[value]
    except KeyError:
        raise InputError(f"unknown episode state {value}") from None


def event_to_proto(e: AnomalyEvent) -> pb2.AnomalyEvent:
    return pb2.AnomalyEvent(
        state=STATE_TO_PROTO[e.state],
        time_unix_nano=e.time_ns,
        score=e.score,
        expected=e.expected,
        observed=e.observed,
        baseline_mean=e.baseline_mean,
        baseline_std=e.baseline_std,
        explanation=e.explanation,
        sample_trace_ids=list(e.sample_trace_ids),
    )


def anomaly_to_proto(a: AnomalyRecord) -> pb2.Anomaly:
    return pb2.Anomaly(
        episode_id=a.episode_id,
        kind=KIND_TO_PROTO[a.kind],
        state=STATE_TO_PROTO[a.state],
        source=source_to_proto(a.source),
        rhythm_hash=a.rhythm_hash,
        template_id=a.template_id,
        template=a.template,
        severity=a.severity,
        started_unix_nano=a.started_ns,
        ended_unix_nano=a.ended_ns,
        time_unix_nano=a.time_ns,
        max_score=a.max_score,
        muted=a.muted,
        explanation=a.explanation,
        bucket_seconds=a.events[-1].bucket_seconds if a.events else 0.0,
        events=[event_to_proto(e) for e in a.events],
    )


# -- patches ---------------------------------------------------------------------------------


def patch_to_proto(p: Patch, now_ns: int) -> pb2.Patch:
    out = pb2.Patch(
        id=p.id,
        rule=RULE_TO_PROTO[p.rule],
        rhythm_hash=p.rhythm_hash,
        source=p.source,
        template=p.template,
        reason=p.reason,
        author=p.author,
        created_unix_nano=p.created_ns,
        expires_unix_nano=p.expires_ns,
        active=p.active,
        in_force=p.applies_at(now_ns),
    )
    if p.threshold is not None:
        out.threshold = p.threshold
    return out


def patch_from_proto(pb: pb2.Patch, now_ns: int, ttl_seconds: float = 0.0) -> Patch:
    """A `Patch` to store; an empty id gets a new one. Bad fields raise `InputError`."""
    rule = RULE_FROM_PROTO.get(pb.rule)
    if rule is None:
        raise InputError(
            f"patch rule must be MUTE, DROP, THRESHOLD, ALLOW or BLOCK, got {pb2.PatchRule.Name(pb.rule) if pb.rule in pb2.PatchRule.values() else pb.rule}"
        )
    if ttl_seconds < 0 or ttl_seconds != ttl_seconds:
        raise InputError(f"ttl_seconds must be >= 0, got {ttl_seconds}")
    expires = pb.expires_unix_nano
    if not expires and ttl_seconds > 0:
        expires = now_ns + round(ttl_seconds * _NS)
    fields: dict[str, Any] = {
        "rule": rule,
        "rhythm_hash": pb.rhythm_hash.strip(),
        "source": pb.source,
        "template": pb.template,
        "threshold": pb.threshold if pb.HasField("threshold") else None,
        "reason": pb.reason,
        "author": pb.author,
        "expires_ns": expires,
        "active": pb.active if pb.HasField("active") else True,
    }
    if pb.id:
        fields["id"] = pb.id
    return Patch(**fields)


# -- schemas ---------------------------------------------------------------------------------


def schema_to_proto(r: SchemaRecord) -> pb2.Schema:
    s = r.schema
    return pb2.Schema(
        source=source_to_proto(s.source),
        attributes=[
            pb2.AttributeSchema(
                scope=a.scope.value, key=a.key, presence=a.presence, types=dict(a.types)
            )
            for a in s.attributes
        ],
        top_templates=[
            pb2.TemplateShare(
                template_id=t.template_id,
                template=t.template,
                rate_per_second=t.rate_per_s,
                share=t.share,
            )
            for t in s.top_templates
        ],
        samples=s.samples,
        windows=s.windows,
        created_unix_nano=ns_from_datetime(r.created_at),
        updated_unix_nano=ns_from_datetime(r.updated_at),
    )


# -- incidents -------------------------------------------------------------------------------


def incident_state_from_proto(value: int) -> IncidentState | None:
    """An incident state filter (None for UNSPECIFIED)."""
    if value == pb2.INCIDENT_STATE_UNSPECIFIED:
        return None
    try:
        return INCIDENT_STATE_FROM_PROTO[value]
    except KeyError:
        raise InputError(f"unknown incident state {value}") from None


def incident_member_to_proto(m: IncidentMember, root: bool = False) -> pb2.IncidentMember:
    return pb2.IncidentMember(
        episode_id=m.episode_id,
        kind=KIND_TO_PROTO.get(m.kind, pb2.ANOMALY_KIND_UNSPECIFIED),
        state=STATE_TO_PROTO[m.state],
        source=source_to_proto(m.source),
        rhythm_hash=m.rhythm_hash,
        template_id=m.template_id,
        template=m.template,
        severity=m.severity,
        started_unix_nano=m.started_ns,
        ended_unix_nano=m.ended_ns,
        score=m.score,
        sample_trace_ids=list(m.trace_ids),
        root=root,
    )


def incident_link_to_proto(link: IncidentLink) -> pb2.IncidentLink:
    return pb2.IncidentLink(
        episode_id=link.episode_id,
        linked_episode_id=link.linked_episode_id,
        type=LINK_TO_PROTO.get(link.type, pb2.LINK_TYPE_UNSPECIFIED),
        confidence=link.confidence,
        time_unix_nano=link.time_ns,
    )


def incident_to_proto(inc: Incident, *, graph: bool = True) -> pb2.Incident:
    """An incident; `graph` adds its members and links (the counts are always there).

    >>> from via_otlp.model import Incident, IncidentState
    >>> pb = incident_to_proto(Incident("i1", "t", IncidentState.OPEN, 5, 0, 6, 70.0, "e1",
    ...                                 ("shop",), (), ()), graph=False)
    >>> (pb.id, pb.state == pb2.INCIDENT_STATE_OPEN, pb.member_count, list(pb.sources))
    ('i1', True, 0, ['shop'])
    """
    counts = inc.link_counts()
    out = pb2.Incident(
        id=inc.id,
        title=inc.title,
        state=INCIDENT_STATE_TO_PROTO[inc.state],
        started_unix_nano=inc.started_ns,
        ended_unix_nano=inc.ended_ns,
        time_unix_nano=inc.time_ns,
        score=inc.score,
        root_episode_id=inc.root_episode_id,
        sources=list(inc.sources),
        merged_into=inc.merged_into,
        member_count=len(inc.members),
        temporal_links=counts[LinkType.TEMPORAL],
        trace_links=counts[LinkType.TRACE],
        semantic_links=counts[LinkType.SEMANTIC],
    )
    if graph:
        out.members.extend(
            incident_member_to_proto(m, m.episode_id == inc.root_episode_id) for m in inc.members
        )
        out.links.extend(incident_link_to_proto(link) for link in inc.links)
    return out


def search_limit(requested: int) -> int:
    """SearchSimilar's `limit`: 10 for 0; the service clamps it to its maximum."""
    return requested or 10


def similar_to_proto(result: SimilarResult) -> pb2.SearchSimilarResponse:
    """A `SimilarResult` as the SearchSimilar answer (an unknown kind is UNSPECIFIED)."""
    out = pb2.SearchSimilarResponse()
    for e in result.episodes:
        try:
            kind = KIND_TO_PROTO[AnomalyKind(e.kind)]
        except ValueError:
            kind = pb2.ANOMALY_KIND_UNSPECIFIED
        out.episodes.add(
            episode_id=e.episode_id,
            similarity=e.similarity,
            incident_id=e.incident_id,
            source=e.source,
            kind=kind,
            template=e.template,
            started_unix_nano=e.started_ns,
            score=e.score,
        )
    for i in result.incidents:
        out.incidents.add(
            incident_id=i.incident_id,
            similarity=i.similarity,
            best_episode_id=i.best_episode_id,
            title=i.title,
        )
    return out
