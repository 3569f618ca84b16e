from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnomalyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANOMALY_KIND_UNSPECIFIED: _ClassVar[AnomalyKind]
    ANOMALY_KIND_NOVELTY: _ClassVar[AnomalyKind]
    ANOMALY_KIND_SPIKE: _ClassVar[AnomalyKind]
    ANOMALY_KIND_DROP: _ClassVar[AnomalyKind]
    ANOMALY_KIND_DRIFT: _ClassVar[AnomalyKind]
    ANOMALY_KIND_CARDINALITY: _ClassVar[AnomalyKind]
    ANOMALY_KIND_SCHEMA: _ClassVar[AnomalyKind]

class EpisodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EPISODE_STATE_UNSPECIFIED: _ClassVar[EpisodeState]
    EPISODE_STATE_OPEN: _ClassVar[EpisodeState]
    EPISODE_STATE_RESOLVED: _ClassVar[EpisodeState]
    EPISODE_STATE_UPDATED: _ClassVar[EpisodeState]

class PatchRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATCH_RULE_UNSPECIFIED: _ClassVar[PatchRule]
    PATCH_RULE_MUTE: _ClassVar[PatchRule]
    PATCH_RULE_DROP: _ClassVar[PatchRule]
    PATCH_RULE_THRESHOLD: _ClassVar[PatchRule]
    PATCH_RULE_ALLOW: _ClassVar[PatchRule]
    PATCH_RULE_BLOCK: _ClassVar[PatchRule]

class ProfileState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROFILE_STATE_UNSPECIFIED: _ClassVar[ProfileState]
    PROFILE_STATE_LEARNING: _ClassVar[ProfileState]
    PROFILE_STATE_ACTIVE: _ClassVar[ProfileState]

class ProfileOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROFILE_ORDER_UNSPECIFIED: _ClassVar[ProfileOrder]
    PROFILE_ORDER_RATE: _ClassVar[ProfileOrder]
    PROFILE_ORDER_RECENCY: _ClassVar[ProfileOrder]

class IncidentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_STATE_UNSPECIFIED: _ClassVar[IncidentState]
    INCIDENT_STATE_OPEN: _ClassVar[IncidentState]
    INCIDENT_STATE_RESOLVED: _ClassVar[IncidentState]

class LinkType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_TYPE_UNSPECIFIED: _ClassVar[LinkType]
    LINK_TYPE_TEMPORAL: _ClassVar[LinkType]
    LINK_TYPE_TRACE: _ClassVar[LinkType]
    LINK_TYPE_SEMANTIC: _ClassVar[LinkType]
ANOMALY_KIND_UNSPECIFIED: AnomalyKind
ANOMALY_KIND_NOVELTY: AnomalyKind
ANOMALY_KIND_SPIKE: AnomalyKind
ANOMALY_KIND_DROP: AnomalyKind
ANOMALY_KIND_DRIFT: AnomalyKind
ANOMALY_KIND_CARDINALITY: AnomalyKind
ANOMALY_KIND_SCHEMA: AnomalyKind
EPISODE_STATE_UNSPECIFIED: EpisodeState
EPISODE_STATE_OPEN: EpisodeState
EPISODE_STATE_RESOLVED: EpisodeState
EPISODE_STATE_UPDATED: EpisodeState
PATCH_RULE_UNSPECIFIED: PatchRule
PATCH_RULE_MUTE: PatchRule
PATCH_RULE_DROP: PatchRule
PATCH_RULE_THRESHOLD: PatchRule
PATCH_RULE_ALLOW: PatchRule
PATCH_RULE_BLOCK: PatchRule
PROFILE_STATE_UNSPECIFIED: ProfileState
PROFILE_STATE_LEARNING: ProfileState
PROFILE_STATE_ACTIVE: ProfileState
PROFILE_ORDER_UNSPECIFIED: ProfileOrder
PROFILE_ORDER_RATE: ProfileOrder
PROFILE_ORDER_RECENCY: ProfileOrder
INCIDENT_STATE_UNSPECIFIED: IncidentState
INCIDENT_STATE_OPEN: IncidentState
INCIDENT_STATE_RESOLVED: IncidentState
LINK_TYPE_UNSPECIFIED: LinkType
LINK_TYPE_TEMPORAL: LinkType
LINK_TYPE_TRACE: LinkType
LINK_TYPE_SEMANTIC: LinkType

class Source(_message.Message):
    __slots__ = ("key", "attributes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    key: str
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    def __init__(self, key: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "state", "uptime_seconds", "queue", "intake", "profiles", "templates", "registry", "emitter", "events", "rhythm_hashes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    INTAKE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    EMITTER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    RHYTHM_HASHES_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: str
    uptime_seconds: float
    queue: QueueStatus
    intake: IntakeStatus
    profiles: ProfilesStatus
    templates: TemplatesStatus
    registry: RegistryStatus
    emitter: EmitterStatus
    events: EventsStatus
    rhythm_hashes: int
    def __init__(self, version: _Optional[str] = ..., state: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., queue: _Optional[_Union[QueueStatus, _Mapping]] = ..., intake: _Optional[_Union[IntakeStatus, _Mapping]] = ..., profiles: _Optional[_Union[ProfilesStatus, _Mapping]] = ..., templates: _Optional[_Union[TemplatesStatus, _Mapping]] = ..., registry: _Optional[_Union[RegistryStatus, _Mapping]] = ..., emitter: _Optional[_Union[EmitterStatus, _Mapping]] = ..., events: _Optional[_Union[EventsStatus, _Mapping]] = ..., rhythm_hashes: _Optional[int] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("depth", "capacity")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    depth: int
    capacity: int
    def __init__(self, depth: _Optional[int] = ..., capacity: _Optional[int] = ...) -> None: ...

class RequestCount(_message.Message):
    __slots__ = ("transport", "outcome", "count")
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    transport: str
    outcome: str
    count: int
    def __init__(self, transport: _Optional[str] = ..., outcome: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class IntakeStatus(_message.Message):
    __slots__ = ("requests", "records_accepted", "records_dropped_by_patch", "records_consumed", "invalid_utf8_requests", "records_normalised")
    class RecordsNormalisedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DROPPED_BY_PATCH_FIELD_NUMBER: _ClassVar[int]
    RECORDS_CONSUMED_FIELD_NUMBER: _ClassVar[int]
    INVALID_UTF8_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_NORMALISED_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RequestCount]
    records_accepted: int
    records_dropped_by_patch: int
    records_consumed: int
    invalid_utf8_requests: int
    records_normalised: _containers.ScalarMap[str, int]
    def __init__(self, requests: _Optional[_Iterable[_Union[RequestCount, _Mapping]]] = ..., records_accepted: _Optional[int] = ..., records_dropped_by_patch: _Optional[int] = ..., records_consumed: _Optional[int] = ..., invalid_utf8_requests: _Optional[int] = ..., records_normalised: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ProfilesStatus(_message.Message):
    __slots__ = ("tracked", "learning", "evictions_idle", "evictions_capacity", "records", "late_records", "dropped_records", "buckets_closed", "open_buckets", "open_episodes", "episodes_opened", "episodes_resolved", "watermark_unix_nano", "max_event_unix_nano", "bucket_seconds")
    TRACKED_FIELD_NUMBER: _ClassVar[int]
    LEARNING_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_IDLE_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LATE_RECORDS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_CLOSED_FIELD_NUMBER: _ClassVar[int]
    OPEN_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    OPEN_EPISODES_FIELD_NUMBER: _ClassVar[int]
    EPISODES_OPENED_FIELD_NUMBER: _ClassVar[int]
    EPISODES_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    tracked: int
    learning: int
    evictions_idle: int
    evictions_capacity: int
    records: int
    late_records: int
    dropped_records: int
    buckets_closed: int
    open_buckets: int
    open_episodes: int
    episodes_opened: int
    episodes_resolved: int
    watermark_unix_nano: int
    max_event_unix_nano: int
    bucket_seconds: float
    def __init__(self, tracked: _Optional[int] = ..., learning: _Optional[int] = ..., evictions_idle: _Optional[int] = ..., evictions_capacity: _Optional[int] = ..., records: _Optional[int] = ..., late_records: _Optional[int] = ..., dropped_records: _Optional[int] = ..., buckets_closed: _Optional[int] = ..., open_buckets: _Optional[int] = ..., open_episodes: _Optional[int] = ..., episodes_opened: _Optional[int] = ..., episodes_resolved: _Optional[int] = ..., watermark_unix_nano: _Optional[int] = ..., max_event_unix_nano: _Optional[int] = ..., bucket_seconds: _Optional[float] = ...) -> None: ...

class TemplatesStatus(_message.Message):
    __slots__ = ("sources", "templates", "lines", "created", "merges", "evictions", "flooding_sources", "flooded_lines", "hinted")
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MERGES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    FLOODING_SOURCES_FIELD_NUMBER: _ClassVar[int]
    FLOODED_LINES_FIELD_NUMBER: _ClassVar[int]
    HINTED_FIELD_NUMBER: _ClassVar[int]
    sources: int
    templates: int
    lines: int
    created: int
    merges: int
    evictions: int
    flooding_sources: int
    flooded_lines: int
    hinted: int
    def __init__(self, sources: _Optional[int] = ..., templates: _Optional[int] = ..., lines: _Optional[int] = ..., created: _Optional[int] = ..., merges: _Optional[int] = ..., evictions: _Optional[int] = ..., flooding_sources: _Optional[int] = ..., flooded_lines: _Optional[int] = ..., hinted: _Optional[int] = ...) -> None: ...

class RegistryStatus(_message.Message):
    __slots__ = ("state", "embedded", "database", "migrations_applied", "patches_active", "patches_listening", "records_dropped_by_patch", "events_muted", "writer_buffered", "writer_written", "writer_dropped", "writer_failed", "last_error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    MIGRATIONS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PATCHES_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PATCHES_LISTENING_FIELD_NUMBER: _ClassVar[int]
    RECORDS_DROPPED_BY_PATCH_FIELD_NUMBER: _ClassVar[int]
    EVENTS_MUTED_FIELD_NUMBER: _ClassVar[int]
    WRITER_BUFFERED_FIELD_NUMBER: _ClassVar[int]
    WRITER_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    WRITER_DROPPED_FIELD_NUMBER: _ClassVar[int]
    WRITER_FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    state: str
    embedded: bool
    database: str
    migrations_applied: _containers.RepeatedScalarFieldContainer[str]
    patches_active: int
    patches_listening: bool
    records_dropped_by_patch: int
    events_muted: int
    writer_buffered: int
    writer_written: int
    writer_dropped: int
    writer_failed: int
    last_error: str
    def __init__(self, state: _Optional[str] = ..., embedded: _Optional[bool] = ..., database: _Optional[str] = ..., migrations_applied: _Optional[_Iterable[str]] = ..., patches_active: _Optional[int] = ..., patches_listening: _Optional[bool] = ..., records_dropped_by_patch: _Optional[int] = ..., events_muted: _Optional[int] = ..., writer_buffered: _Optional[int] = ..., writer_written: _Optional[int] = ..., writer_dropped: _Optional[int] = ..., writer_failed: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class EmitterStatus(_message.Message):
    __slots__ = ("state", "queued", "sent", "retries", "rejected", "dropped_queue_full", "dropped_shutdown", "failed_permanent", "failed_retries_exhausted", "last_error")
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_QUEUE_FULL_FIELD_NUMBER: _ClassVar[int]
    DROPPED_SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    FAILED_PERMANENT_FIELD_NUMBER: _ClassVar[int]
    FAILED_RETRIES_EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    state: str
    queued: int
    sent: int
    retries: int
    rejected: int
    dropped_queue_full: int
    dropped_shutdown: int
    failed_permanent: int
    failed_retries_exhausted: int
    last_error: str
    def __init__(self, state: _Optional[str] = ..., queued: _Optional[int] = ..., sent: _Optional[int] = ..., retries: _Optional[int] = ..., rejected: _Optional[int] = ..., dropped_queue_full: _Optional[int] = ..., dropped_shutdown: _Optional[int] = ..., failed_permanent: _Optional[int] = ..., failed_retries_exhausted: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class EventsStatus(_message.Message):
    __slots__ = ("emitted", "suppressed")
    EMITTED_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    emitted: int
    suppressed: int
    def __init__(self, emitted: _Optional[int] = ..., suppressed: _Optional[int] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("rhythm_hash", "source", "template_id", "template", "severity", "first_seen_unix_nano", "last_seen_unix_nano", "total_count", "buckets_seen", "baseline_mean", "baseline_std", "distinct_mean", "bucket_seconds", "rate_per_minute", "state")
    RHYTHM_HASH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_SEEN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MEAN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_STD_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_MEAN_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    rhythm_hash: str
    source: Source
    template_id: str
    template: str
    severity: str
    first_seen_unix_nano: int
    last_seen_unix_nano: int
    total_count: int
    buckets_seen: int
    baseline_mean: float
    baseline_std: float
    distinct_mean: float
    bucket_seconds: float
    rate_per_minute: float
    state: ProfileState
    def __init__(self, rhythm_hash: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., template_id: _Optional[str] = ..., template: _Optional[str] = ..., severity: _Optional[str] = ..., first_seen_unix_nano: _Optional[int] = ..., last_seen_unix_nano: _Optional[int] = ..., total_count: _Optional[int] = ..., buckets_seen: _Optional[int] = ..., baseline_mean: _Optional[float] = ..., baseline_std: _Optional[float] = ..., distinct_mean: _Optional[float] = ..., bucket_seconds: _Optional[float] = ..., rate_per_minute: _Optional[float] = ..., state: _Optional[_Union[ProfileState, str]] = ...) -> None: ...

class ListProfilesRequest(_message.Message):
    __slots__ = ("source", "order_by", "page_size", "page_token")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    source: str
    order_by: ProfileOrder
    page_size: int
    page_token: str
    def __init__(self, source: _Optional[str] = ..., order_by: _Optional[_Union[ProfileOrder, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token", "total_size")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[Profile]
    next_page_token: str
    total_size: int
    def __init__(self, profiles: _Optional[_Iterable[_Union[Profile, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("rhythm_hash",)
    RHYTHM_HASH_FIELD_NUMBER: _ClassVar[int]
    rhythm_hash: str
    def __init__(self, rhythm_hash: _Optional[str] = ...) -> None: ...

class BucketCount(_message.Message):
    __slots__ = ("start_unix_nano", "count", "distinct", "expected")
    START_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    start_unix_nano: int
    count: float
    distinct: float
    expected: float
    def __init__(self, start_unix_nano: _Optional[int] = ..., count: _Optional[float] = ..., distinct: _Optional[float] = ..., expected: _Optional[float] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile", "recent_buckets")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    RECENT_BUCKETS_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    recent_buckets: _containers.RepeatedCompositeFieldContainer[BucketCount]
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ..., recent_buckets: _Optional[_Iterable[_Union[BucketCount, _Mapping]]] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("source_key", "template_id", "template", "count", "rhythm_hashes")
    SOURCE_KEY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RHYTHM_HASHES_FIELD_NUMBER: _ClassVar[int]
    source_key: str
    template_id: str
    template: str
    count: int
    rhythm_hashes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source_key: _Optional[str] = ..., template_id: _Optional[str] = ..., template: _Optional[str] = ..., count: _Optional[int] = ..., rhythm_hashes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("source", "page_size", "page_token")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    source: str
    page_size: int
    page_token: str
    def __init__(self, source: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token", "total_size")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    next_page_token: str
    total_size: int
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class AnomalyEvent(_message.Message):
    __slots__ = ("state", "time_unix_nano", "score", "expected", "observed", "baseline_mean", "baseline_std", "explanation", "sample_trace_ids")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MEAN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_STD_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_TRACE_IDS_FIELD_NUMBER: _ClassVar[int]
    state: EpisodeState
    time_unix_nano: int
    score: float
    expected: float
    observed: float
    baseline_mean: float
    baseline_std: float
    explanation: str
    sample_trace_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[EpisodeState, str]] = ..., time_unix_nano: _Optional[int] = ..., score: _Optional[float] = ..., expected: _Optional[float] = ..., observed: _Optional[float] = ..., baseline_mean: _Optional[float] = ..., baseline_std: _Optional[float] = ..., explanation: _Optional[str] = ..., sample_trace_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("episode_id", "kind", "state", "source", "rhythm_hash", "template_id", "template", "severity", "started_unix_nano", "ended_unix_nano", "time_unix_nano", "max_score", "muted", "explanation", "bucket_seconds", "events")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RHYTHM_HASH_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    MUTED_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    kind: AnomalyKind
    state: EpisodeState
    source: Source
    rhythm_hash: str
    template_id: str
    template: str
    severity: str
    started_unix_nano: int
    ended_unix_nano: int
    time_unix_nano: int
    max_score: float
    muted: bool
    explanation: str
    bucket_seconds: float
    events: _containers.RepeatedCompositeFieldContainer[AnomalyEvent]
    def __init__(self, episode_id: _Optional[str] = ..., kind: _Optional[_Union[AnomalyKind, str]] = ..., state: _Optional[_Union[EpisodeState, str]] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., rhythm_hash: _Optional[str] = ..., template_id: _Optional[str] = ..., template: _Optional[str] = ..., severity: _Optional[str] = ..., started_unix_nano: _Optional[int] = ..., ended_unix_nano: _Optional[int] = ..., time_unix_nano: _Optional[int] = ..., max_score: _Optional[float] = ..., muted: _Optional[bool] = ..., explanation: _Optional[str] = ..., bucket_seconds: _Optional[float] = ..., events: _Optional[_Iterable[_Union[AnomalyEvent, _Mapping]]] = ...) -> None: ...

class ListAnomaliesRequest(_message.Message):
    __slots__ = ("since_unix_nano", "kind", "source", "state", "page_size", "page_token")
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since_unix_nano: int
    kind: AnomalyKind
    source: str
    state: EpisodeState
    page_size: int
    page_token: str
    def __init__(self, since_unix_nano: _Optional[int] = ..., kind: _Optional[_Union[AnomalyKind, str]] = ..., source: _Optional[str] = ..., state: _Optional[_Union[EpisodeState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAnomaliesResponse(_message.Message):
    __slots__ = ("anomalies", "next_page_token")
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    anomalies: _containers.RepeatedCompositeFieldContainer[Anomaly]
    next_page_token: str
    def __init__(self, anomalies: _Optional[_Iterable[_Union[Anomaly, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Patch(_message.Message):
    __slots__ = ("id", "rule", "rhythm_hash", "source", "template", "threshold", "reason", "author", "created_unix_nano", "expires_unix_nano", "active", "in_force")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RHYTHM_HASH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule: PatchRule
    rhythm_hash: str
    source: str
    template: str
    threshold: float
    reason: str
    author: str
    created_unix_nano: int
    expires_unix_nano: int
    active: bool
    in_force: bool
    def __init__(self, id: _Optional[str] = ..., rule: _Optional[_Union[PatchRule, str]] = ..., rhythm_hash: _Optional[str] = ..., source: _Optional[str] = ..., template: _Optional[str] = ..., threshold: _Optional[float] = ..., reason: _Optional[str] = ..., author: _Optional[str] = ..., created_unix_nano: _Optional[int] = ..., expires_unix_nano: _Optional[int] = ..., active: _Optional[bool] = ..., in_force: _Optional[bool] = ...) -> None: ...

class ListPatchesRequest(_message.Message):
    __slots__ = ("include_inactive",)
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    include_inactive: bool
    def __init__(self, include_inactive: _Optional[bool] = ...) -> None: ...

class ListPatchesResponse(_message.Message):
    __slots__ = ("patches",)
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    patches: _containers.RepeatedCompositeFieldContainer[Patch]
    def __init__(self, patches: _Optional[_Iterable[_Union[Patch, _Mapping]]] = ...) -> None: ...

class UpsertPatchRequest(_message.Message):
    __slots__ = ("patch", "ttl_seconds")
    PATCH_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    patch: Patch
    ttl_seconds: float
    def __init__(self, patch: _Optional[_Union[Patch, _Mapping]] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class UpsertPatchResponse(_message.Message):
    __slots__ = ("patch",)
    PATCH_FIELD_NUMBER: _ClassVar[int]
    patch: Patch
    def __init__(self, patch: _Optional[_Union[Patch, _Mapping]] = ...) -> None: ...

class DeletePatchRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeletePatchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttributeSchema(_message.Message):
    __slots__ = ("scope", "key", "presence", "types")
    class TypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    scope: str
    key: str
    presence: float
    types: _containers.ScalarMap[str, float]
    def __init__(self, scope: _Optional[str] = ..., key: _Optional[str] = ..., presence: _Optional[float] = ..., types: _Optional[_Mapping[str, float]] = ...) -> None: ...

class TemplateShare(_message.Message):
    __slots__ = ("template_id", "template", "rate_per_second", "share")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    template: str
    rate_per_second: float
    share: float
    def __init__(self, template_id: _Optional[str] = ..., template: _Optional[str] = ..., rate_per_second: _Optional[float] = ..., share: _Optional[float] = ...) -> None: ...

class Schema(_message.Message):
    __slots__ = ("source", "attributes", "top_templates", "samples", "windows", "created_unix_nano", "updated_unix_nano")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TOP_TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    source: Source
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeSchema]
    top_templates: _containers.RepeatedCompositeFieldContainer[TemplateShare]
    samples: int
    windows: int
    created_unix_nano: int
    updated_unix_nano: int
    def __init__(self, source: _Optional[_Union[Source, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[AttributeSchema, _Mapping]]] = ..., top_templates: _Optional[_Iterable[_Union[TemplateShare, _Mapping]]] = ..., samples: _Optional[int] = ..., windows: _Optional[int] = ..., created_unix_nano: _Optional[int] = ..., updated_unix_nano: _Optional[int] = ...) -> None: ...

class GetSchemaRequest(_message.Message):
    __slots__ = ("source",)
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    source: str
    def __init__(self, source: _Optional[str] = ...) -> None: ...

class GetSchemaResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: Schema
    def __init__(self, schema: _Optional[_Union[Schema, _Mapping]] = ...) -> None: ...

class ListSchemasRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchemasResponse(_message.Message):
    __slots__ = ("schemas", "next_page_token")
    SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schemas: _containers.RepeatedCompositeFieldContainer[Schema]
    next_page_token: str
    def __init__(self, schemas: _Optional[_Iterable[_Union[Schema, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IncidentMember(_message.Message):
    __slots__ = ("episode_id", "kind", "state", "source", "rhythm_hash", "template_id", "template", "severity", "started_unix_nano", "ended_unix_nano", "score", "sample_trace_ids", "root")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RHYTHM_HASH_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_TRACE_IDS_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    kind: AnomalyKind
    state: EpisodeState
    source: Source
    rhythm_hash: str
    template_id: str
    template: str
    severity: str
    started_unix_nano: int
    ended_unix_nano: int
    score: float
    sample_trace_ids: _containers.RepeatedScalarFieldContainer[str]
    root: bool
    def __init__(self, episode_id: _Optional[str] = ..., kind: _Optional[_Union[AnomalyKind, str]] = ..., state: _Optional[_Union[EpisodeState, str]] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., rhythm_hash: _Optional[str] = ..., template_id: _Optional[str] = ..., template: _Optional[str] = ..., severity: _Optional[str] = ..., started_unix_nano: _Optional[int] = ..., ended_unix_nano: _Optional[int] = ..., score: _Optional[float] = ..., sample_trace_ids: _Optional[_Iterable[str]] = ..., root: _Optional[bool] = ...) -> None: ...

class IncidentLink(_message.Message):
    __slots__ = ("episode_id", "linked_episode_id", "type", "confidence", "time_unix_nano")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    LINKED_EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    linked_episode_id: str
    type: LinkType
    confidence: float
    time_unix_nano: int
    def __init__(self, episode_id: _Optional[str] = ..., linked_episode_id: _Optional[str] = ..., type: _Optional[_Union[LinkType, str]] = ..., confidence: _Optional[float] = ..., time_unix_nano: _Optional[int] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("id", "title", "state", "started_unix_nano", "ended_unix_nano", "time_unix_nano", "score", "root_episode_id", "sources", "members", "links", "merged_into", "member_count", "temporal_links", "trace_links", "semantic_links")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ROOT_EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    MERGED_INTO_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_LINKS_FIELD_NUMBER: _ClassVar[int]
    TRACE_LINKS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_LINKS_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    state: IncidentState
    started_unix_nano: int
    ended_unix_nano: int
    time_unix_nano: int
    score: float
    root_episode_id: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    members: _containers.RepeatedCompositeFieldContainer[IncidentMember]
    links: _containers.RepeatedCompositeFieldContainer[IncidentLink]
    merged_into: str
    member_count: int
    temporal_links: int
    trace_links: int
    semantic_links: int
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., state: _Optional[_Union[IncidentState, str]] = ..., started_unix_nano: _Optional[int] = ..., ended_unix_nano: _Optional[int] = ..., time_unix_nano: _Optional[int] = ..., score: _Optional[float] = ..., root_episode_id: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., members: _Optional[_Iterable[_Union[IncidentMember, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[IncidentLink, _Mapping]]] = ..., merged_into: _Optional[str] = ..., member_count: _Optional[int] = ..., temporal_links: _Optional[int] = ..., trace_links: _Optional[int] = ..., semantic_links: _Optional[int] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("since_unix_nano", "state", "source", "include_merged", "include_graph", "page_size", "page_token")
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MERGED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    since_unix_nano: int
    state: IncidentState
    source: str
    include_merged: bool
    include_graph: bool
    page_size: int
    page_token: str
    def __init__(self, since_unix_nano: _Optional[int] = ..., state: _Optional[_Union[IncidentState, str]] = ..., source: _Optional[str] = ..., include_merged: _Optional[bool] = ..., include_graph: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...

class SearchSimilarRequest(_message.Message):
    __slots__ = ("text", "episode_id", "limit", "include_same_incident")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAME_INCIDENT_FIELD_NUMBER: _ClassVar[int]
    text: str
    episode_id: str
    limit: int
    include_same_incident: bool
    def __init__(self, text: _Optional[str] = ..., episode_id: _Optional[str] = ..., limit: _Optional[int] = ..., include_same_incident: _Optional[bool] = ...) -> None: ...

class SimilarEpisode(_message.Message):
    __slots__ = ("episode_id", "similarity", "incident_id", "source", "kind", "template", "started_unix_nano", "score")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    similarity: float
    incident_id: str
    source: str
    kind: AnomalyKind
    template: str
    started_unix_nano: int
    score: float
    def __init__(self, episode_id: _Optional[str] = ..., similarity: _Optional[float] = ..., incident_id: _Optional[str] = ..., source: _Optional[str] = ..., kind: _Optional[_Union[AnomalyKind, str]] = ..., template: _Optional[str] = ..., started_unix_nano: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class SimilarIncident(_message.Message):
    __slots__ = ("incident_id", "similarity", "best_episode_id", "title")
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    BEST_EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    incident_id: str
    similarity: float
    best_episode_id: str
    title: str
    def __init__(self, incident_id: _Optional[str] = ..., similarity: _Optional[float] = ..., best_episode_id: _Optional[str] = ..., title: _Optional[str] = ...) -> None: ...

class SearchSimilarResponse(_message.Message):
    __slots__ = ("episodes", "incidents")
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    episodes: _containers.RepeatedCompositeFieldContainer[SimilarEpisode]
    incidents: _containers.RepeatedCompositeFieldContainer[SimilarIncident]
    def __init__(self, episodes: _Optional[_Iterable[_Union[SimilarEpisode, _Mapping]]] = ..., incidents: _Optional[_Iterable[_Union[SimilarIncident, _Mapping]]] = ...) -> None: ...
