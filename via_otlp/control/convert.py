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

import enum
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message

from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.correlate.model import SimilarResult
from via_otlp.detect.engine import EngineStats
from via_otlp.detect.profile import ProfileSummary, RecentBucket
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

M = TypeVar("M", bound=Message)
E = TypeVar("E", bound=enum.Enum)


# -- generic conversion -----------------------------------------------------------------------


def _enum_prefix(desc: EnumDescriptor) -> str:
    """``ANOMALY_KIND_`` of ``AnomalyKind``: its zero value is always ``<PREFIX>UNSPECIFIED``."""
    return str(desc.values_by_number[0].name).removesuffix("UNSPECIFIED")


def enum_to_proto(member: enum.Enum, desc: EnumDescriptor) -> int:
    """The proto value named like `member` (``AnomalyKind.SPIKE`` → ``ANOMALY_KIND_SPIKE``);
    UNSPECIFIED (0) for a member the proto does not know yet.

    >>> enum_to_proto(AnomalyKind.SPIKE, pb2.AnomalyKind.DESCRIPTOR) == pb2.ANOMALY_KIND_SPIKE
    True
    """
    value = desc.values_by_name.get(_enum_prefix(desc) + member.name)
    return int(value.number) if value is not None else 0


def enum_from_proto(cls: type[E], proto: Any, value: int, what: str) -> E | None:
    """The member of `cls` named like proto enum `value`, None for UNSPECIFIED; a value
    `cls` does not have is an `InputError` naming `what`.

    >>> enum_from_proto(PatchRule, pb2.PatchRule, pb2.PATCH_RULE_BLOCK, "patch rule")
    <PatchRule.BLOCK: 'BLOCK'>
    """
    if value == 0:
        return None
    desc = proto.DESCRIPTOR
    known = desc.values_by_number.get(value)
    try:
        return cls[str(known.name).removeprefix(_enum_prefix(desc))]
    except (AttributeError, KeyError):
        raise InputError(f"unknown {what} {value}") from None


def fill(message: type[M], obj: object, **values: Any) -> M:
    """A `message` whose fields take the attributes of `obj` of the same name.

    A field ``x_unix_nano`` takes ``x_ns``; an enum member becomes the proto enum value of
    its name (or, for a string field, its value); None leaves a field unset. `values` give the
    fields `obj` names otherwise, or override. A field found nowhere is an error, so renaming
    an attribute cannot quietly turn a field into 0.

    >>> fill(pb2.QueueStatus, object(), depth=3, capacity=5).capacity
    5
    >>> fill(pb2.QueueStatus, object())
    Traceback (most recent call last):
    ...
    TypeError: QueueStatus.depth: object has no 'depth'; pass it
    """
    fields: dict[str, Any] = {}
    for f in message.DESCRIPTOR.fields:
        if f.name in values:
            continue
        name = f.name
        if not hasattr(obj, name) and name.endswith("_unix_nano"):
            name = name.removesuffix("_unix_nano") + "_ns"
        try:
            value = getattr(obj, name)
        except AttributeError:
            raise TypeError(
                f"{message.DESCRIPTOR.name}.{f.name}: {type(obj).__name__} has no {f.name!r}; pass it"
            ) from None
        if value is None:
            continue
        if f.enum_type is not None and isinstance(value, enum.Enum):
            value = enum_to_proto(value, f.enum_type)
        elif isinstance(value, enum.Enum):
            value = value.value
        fields[f.name] = value
    return message(**fields, **values)


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
    out = fill(pb2.IntakeStatus, s, requests=[], records_normalised={})
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
    return fill(
        pb2.ProfilesStatus,
        s,
        tracked=s.profiles,
        learning=s.profiles_learning,
        bucket_seconds=bucket_seconds,
    )


def patterns_to_proto(s: PatternStats) -> pb2.TemplatesStatus:
    return fill(pb2.TemplatesStatus, s)


def registry_to_proto(s: RegistryStatus | None) -> pb2.RegistryStatus:
    if s is None:
        return pb2.RegistryStatus(state="disabled")
    w = s.writer
    return fill(
        pb2.RegistryStatus,
        s,
        migrations_applied=list(s.migrations_applied),
        writer_buffered=w.buffered,
        writer_written=w.written,
        writer_dropped=w.dropped,
        writer_failed=w.failed,
        last_error=w.last_error,
    )


def emitter_to_proto(s: EmitStats) -> pb2.EmitterStatus:
    return fill(pb2.EmitterStatus, s)


# -- profiles and templates ------------------------------------------------------------------


def source_to_proto(source: Source) -> pb2.Source:
    return pb2.Source(
        key=source.key, attributes=[pb2.Attribute(key=k, value=v) for k, v in source.attributes]
    )


def profile_to_proto(p: ProfileSummary) -> pb2.Profile:
    rate = p.baseline_mean * 60.0 / p.bucket_seconds if p.bucket_seconds > 0 else 0.0
    return fill(pb2.Profile, p, source=source_to_proto(p.source), rate_per_minute=rate)


def recent_to_proto(buckets: Iterable[RecentBucket]) -> list[pb2.BucketCount]:
    """A profile's recent buckets (oldest first) as GetProfile shows them."""
    return [
        fill(pb2.BucketCount, b, count=float(b.count), distinct=float(b.distinct)) for b in buckets
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
    return fill(pb2.Template, t, rhythm_hashes=sorted(rhythm_hashes))


# -- anomalies -------------------------------------------------------------------------------


def kind_from_proto(value: int) -> AnomalyKind | None:
    """A kind filter (None for UNSPECIFIED)."""
    return enum_from_proto(AnomalyKind, pb2.AnomalyKind, value, "anomaly kind")


def state_from_proto(value: int) -> EpisodeState | None:
    """A state filter (None for UNSPECIFIED)."""
    return enum_from_proto(EpisodeState, pb2.EpisodeState, value, "episode state")


def event_to_proto(e: AnomalyEvent) -> pb2.AnomalyEvent:
    return fill(pb2.AnomalyEvent, e)


def anomaly_to_proto(a: AnomalyRecord) -> pb2.Anomaly:
    return fill(
        pb2.Anomaly,
        a,
        source=source_to_proto(a.source),
        bucket_seconds=a.events[-1].bucket_seconds if a.events else 0.0,
        events=[event_to_proto(e) for e in a.events],
    )


# -- patches ---------------------------------------------------------------------------------


def patch_to_proto(p: Patch, now_ns: int) -> pb2.Patch:
    return fill(pb2.Patch, p, in_force=p.applies_at(now_ns))


def patch_from_proto(pb: pb2.Patch, now_ns: int, ttl_seconds: float = 0.0) -> Patch:
    """A `Patch` to store; an empty id gets a new one. Bad fields raise `InputError`."""
    try:
        rule = enum_from_proto(PatchRule, pb2.PatchRule, pb.rule, "patch rule")
    except InputError:
        rule = None
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
    return enum_from_proto(IncidentState, pb2.IncidentState, value, "incident state")


def incident_member_to_proto(m: IncidentMember, root: bool = False) -> pb2.IncidentMember:
    return fill(
        pb2.IncidentMember,
        m,
        source=source_to_proto(m.source),
        sample_trace_ids=list(m.trace_ids),
        root=root,
    )


def incident_link_to_proto(link: IncidentLink) -> pb2.IncidentLink:
    return fill(pb2.IncidentLink, link)


def incident_to_proto(inc: Incident, *, graph: bool = True) -> pb2.Incident:
    """An incident; `graph` adds its members and links (the counts are always there).

    >>> from via_otlp.model import Incident, IncidentState
    >>> pb = incident_to_proto(Incident("i1", "t", IncidentState.OPEN, 5, 0, 6, 70.0, "e1",
    ...                                 ("shop",), (), ()), graph=False)
    >>> (pb.id, pb.state == pb2.INCIDENT_STATE_OPEN, pb.member_count, list(pb.sources))
    ('i1', True, 0, ['shop'])
    """
    counts = inc.link_counts()
    out = fill(
        pb2.Incident,
        inc,
        members=[],
        links=[],
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
            kind = enum_to_proto(AnomalyKind(e.kind), pb2.AnomalyKind.DESCRIPTOR)
        except ValueError:
            kind = pb2.ANOMALY_KIND_UNSPECIFIED
        out.episodes.append(fill(pb2.SimilarEpisode, e, kind=kind))
    out.incidents.extend(fill(pb2.SimilarIncident, i) for i in result.incidents)
    return out
