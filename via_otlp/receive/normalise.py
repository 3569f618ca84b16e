"""OTLP logs request → `LogBatch`: pure translation, no sockets, never an exception on content.

Everything a sender can get wrong in content (no `service.name`, a zero or far-future
timestamp, a body of any AnyValue kind, nesting a thousand levels deep) is normalised and
counted here; only bytes that are not protobuf at all are refused, by the caller.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from via_otlp.config import ReceiveConfig
from via_otlp.model import (
    TEMPLATE_ATTRIBUTE,
    UNKNOWN_SERVICE,
    VIA_SCOPE_NAME,
    AttributeSample,
    LogBatch,
    Source,
)

MAX_RENDER_DEPTH = 16
MAX_SEVERITY_TEXT = 32
_SOURCE_CACHE_MAX = 4096

_SEVERITY_BY_NUMBER = (
    "UNSPECIFIED",
    *(name for name in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL") for _ in range(4)),
)
_SEVERITY_ALIASES = {
    "TRACE": "TRACE", "FINEST": "TRACE", "FINER": "TRACE",
    "DEBUG": "DEBUG", "FINE": "DEBUG", "DBG": "DEBUG",
    "INFO": "INFO", "INFORMATION": "INFO", "INFORMATIONAL": "INFO", "NOTICE": "INFO",
    "WARN": "WARN", "WARNING": "WARN",
    "ERROR": "ERROR", "ERR": "ERROR", "SEVERE": "ERROR",
    "FATAL": "FATAL", "CRITICAL": "FATAL", "CRIT": "FATAL", "ALERT": "FATAL",
    "EMERG": "FATAL", "EMERGENCY": "FATAL", "PANIC": "FATAL",
}  # fmt: skip


def severity_of(text: str, number: int) -> str:
    """Canonical severity: from the text when it is a known word, else from the number's range.

    >>> severity_of("warning", 0), severity_of("", 17), severity_of("", 0), severity_of("notice2", 0)
    ('WARN', 'ERROR', 'UNSPECIFIED', 'NOTICE2')
    """
    if text:
        word = text.strip().upper()
        canonical = _SEVERITY_ALIASES.get(word)
        if canonical:
            return canonical
        if 1 <= number <= 24:
            return _SEVERITY_BY_NUMBER[number]
        return word[:MAX_SEVERITY_TEXT] or "UNSPECIFIED"
    if 1 <= number <= 24:
        return _SEVERITY_BY_NUMBER[number]
    return "UNSPECIFIED"


def _plain(value: AnyValue, depth: int) -> Any:
    """An AnyValue as plain JSON data; beyond MAX_RENDER_DEPTH levels, the text '…'."""
    if depth > MAX_RENDER_DEPTH:
        return "…"
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else str(d)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


def render_value(value: AnyValue) -> str:
    """Deterministic text of any AnyValue: strings as is, kvlists/arrays as compact sorted JSON.

    >>> v = AnyValue(); v.kvlist_value.values.add(key="b").value.int_value = 1
    >>> render_value(v)
    '{"b":1}'
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    plain = _plain(value, 0)
    if isinstance(plain, str):
        return plain
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, int | float):
        return repr(plain)
    return json.dumps(plain, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def value_type(value: AnyValue) -> str:
    """The AnyValue kind as a short type name (string, int, double, bool, bytes, array, kvlist)."""
    kind = value.WhichOneof("value")
    return kind[:-6] if kind else "empty"


@dataclass
class IntakeCounts:
    """What normalisation saw and fixed; the service adds these to its status counters."""

    records: int = 0
    future_clamped: int = 0
    missing_timestamp: int = 0
    missing_service_name: int = 0
    loopback_ignored: int = 0

    def add(self, other: IntakeCounts) -> None:
        self.records += other.records
        self.future_clamped += other.future_clamped
        self.missing_timestamp += other.missing_timestamp
        self.missing_service_name += other.missing_service_name
        self.loopback_ignored += other.loopback_ignored


_RECEIVE_DEFAULTS = ReceiveConfig()


@dataclass(frozen=True)
class NormaliseOptions:
    """The receive config keys normalisation uses (defaults: those of `ReceiveConfig`)."""

    source_attributes: tuple[str, ...] = _RECEIVE_DEFAULTS.source_attributes
    unique_id_attributes: tuple[str, ...] = _RECEIVE_DEFAULTS.unique_id_attributes
    max_future_skew_ns: int = int(_RECEIVE_DEFAULTS.max_future_skew * 1e9)
    sample_every: int = _RECEIVE_DEFAULTS.attribute_sample_every

    @classmethod
    def from_config(cls, receive: ReceiveConfig) -> NormaliseOptions:
        return cls(
            source_attributes=receive.source_attributes,
            unique_id_attributes=receive.unique_id_attributes,
            max_future_skew_ns=int(receive.max_future_skew * 1e9),
            sample_every=receive.attribute_sample_every,
        )


@dataclass
class Normaliser:
    """Turns export requests into LogBatches; keeps a small cache of source identities."""

    options: NormaliseOptions = field(default_factory=NormaliseOptions)
    _sources: dict[tuple[str, ...], Source] = field(default_factory=dict)
    _sample_countdown: int = 0

    def source_for(self, values: dict[str, str]) -> Source:
        """The `Source` for identity attribute values (service.name defaults to unknown_service)."""
        names = self.options.source_attributes
        key = tuple(values.get(n, "") for n in names)
        src = self._sources.get(key)
        if src is None:
            attrs = tuple((n, values[n]) for n in names if values.get(n))
            if "service.name" not in values or not values["service.name"]:
                attrs = tuple(
                    sorted(
                        (*attrs, ("service.name", UNKNOWN_SERVICE)), key=lambda a: names.index(a[0])
                    )
                )
            src = Source.from_attributes(attrs)
            if len(self._sources) >= _SOURCE_CACHE_MAX:
                self._sources.clear()
            self._sources[key] = src
        return src

    def _resource_source(self, attributes: Iterable[KeyValue], counts: IntakeCounts) -> Source:
        wanted = self.options.source_attributes
        values = {kv.key: render_value(kv.value) for kv in attributes if kv.key in wanted}
        if not values.get("service.name"):
            counts.missing_service_name += 1
        return self.source_for(values)

    def from_request(
        self, request: ExportLogsServiceRequest, now_ns: int
    ) -> tuple[LogBatch, IntakeCounts]:
        """Normalise every log record of `request`; `now_ns` is the receive time."""
        batch = LogBatch()
        counts = IntakeCounts()
        opts = self.options
        latest = now_ns + opts.max_future_skew_ns
        unique_keys = frozenset(opts.unique_id_attributes)
        unique_order = {k: i for i, k in enumerate(opts.unique_id_attributes)}
        # Bound methods of the columns, looked up once: this loop is the intake's hot path.
        add_src, add_sev, add_body = (
            batch.source_index.append,
            batch.severity.append,
            batch.body.append,
        )
        add_time, add_trace, add_span = (
            batch.time_ns.append,
            batch.trace_id.append,
            batch.span_id.append,
        )
        add_uid, add_event, add_hint = (
            batch.unique_id.append,
            batch.event_name.append,
            batch.template_hint.append,
        )
        source_ids: dict[Source, int] = {}
        countdown = self._sample_countdown
        for rl in request.resource_logs:
            missing_before = counts.missing_service_name
            src = self._resource_source(rl.resource.attributes, counts)
            src_counted = counts.missing_service_name != missing_before
            idx = source_ids.get(src)
            for sl in rl.scope_logs:
                records = sl.log_records
                if sl.scope.name == VIA_SCOPE_NAME:
                    counts.loopback_ignored += len(records)
                    continue
                if not records:
                    continue
                if idx is None:
                    idx = source_ids[src] = len(batch.sources)
                    batch.sources.append(src)
                for lr in records:
                    body = lr.body
                    add_body(
                        body.string_value
                        if body.WhichOneof("value") == "string_value"
                        else render_value(body)
                    )
                    add_sev(severity_of(lr.severity_text, lr.severity_number))
                    t = lr.time_unix_nano or lr.observed_time_unix_nano
                    if not t:
                        counts.missing_timestamp += 1
                        t = now_ns
                    elif t > latest:
                        counts.future_clamped += 1
                        t = now_ns
                    add_time(t)
                    add_src(idx)
                    tid = lr.trace_id
                    add_trace(tid.hex() if tid else "")
                    sid = lr.span_id
                    add_span(sid.hex() if sid else "")
                    add_event(lr.event_name)
                    uid, uid_rank, hint = "", len(unique_order), ""
                    for kv in lr.attributes:
                        k = kv.key
                        if k in unique_keys and unique_order[k] < uid_rank:
                            uid, uid_rank = render_value(kv.value), unique_order[k]
                        elif k == TEMPLATE_ATTRIBUTE:
                            hint = kv.value.string_value
                    add_uid(uid)
                    add_hint(hint)
                    countdown -= 1
                    if countdown <= 0:
                        countdown = opts.sample_every
                        batch.attribute_samples.append(
                            _sample(idx, len(batch.body) - 1, lr.attributes, rl.resource.attributes)
                        )
            if src_counted and idx is None:
                counts.missing_service_name -= 1  # a resource with no records is not worth counting
        self._sample_countdown = countdown
        counts.records = len(batch.body)
        return batch, counts


def _sample(
    source_index: int,
    record_index: int,
    log_attrs: Iterable[KeyValue],
    resource_attrs: Iterable[KeyValue],
) -> AttributeSample:
    return AttributeSample(
        source_index,
        tuple((kv.key, value_type(kv.value)) for kv in log_attrs),
        tuple((kv.key, value_type(kv.value)) for kv in resource_attrs),
        record_index,
    )
