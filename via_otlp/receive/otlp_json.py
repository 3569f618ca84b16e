"""OTLP/JSON text → `LogBatch` directly: `json.loads`, then one walk of the dicts into columns.

Replaying the Collector's `file` exporter output used to go JSON → protobuf message (through
`json_format`, about 19,000 records/s) → `Normaliser.from_request`. This module gives the same
batch and the same counts without building the message: it applies the normaliser's own rules
(`severity_of`, the source cache, unique ids, template hints, schema samples, timestamp
fallbacks) to the JSON values, and renders bodies as `render_value` does (`tests/receive/
test_otlp_json.py` checks equality on generated requests with hypothesis).

Two walks, the faster first: `msgspec` decodes the request's skeleton into typed structs while
keeping each record's attributes and body as raw JSON bytes, decoded only when needed (a wanted
key such as `user.id` occurs in them, a non-string body, a schema sample): most of a record's
JSON is never turned into Python objects. A request with proto field names (`time_unix_nano`)
or a value of an unexpected type takes the plain walk over `json.loads` dicts instead; anything
that one cannot take either (a value with two kinds, a malformed id) is handed to the protobuf
path as it is, which normalises it or raises `InputError` saying what was wrong, so every path
agrees on every input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import msgspec
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from via_otlp.errors import InputError
from via_otlp.model import TEMPLATE_ATTRIBUTE, VIA_SCOPE_NAME, AttributeSample, LogBatch, Source
from via_otlp.receive.normalise import (
    MAX_RENDER_DEPTH,
    IntakeCounts,
    Normaliser,
    severity_of,
)
from via_otlp.receive.otlp_codec import decode_json


class _Fallback(Exception):
    """A shape this module does not handle: the protobuf path decides."""


# AnyValue kinds in OTLP/JSON (both spellings) → the short type names of `value_type`.
_KINDS = {
    "stringValue": "string", "string_value": "string",
    "intValue": "int", "int_value": "int",
    "doubleValue": "double", "double_value": "double",
    "boolValue": "bool", "bool_value": "bool",
    "bytesValue": "bytes", "bytes_value": "bytes",
    "arrayValue": "array", "array_value": "array",
    "kvlistValue": "kvlist", "kvlist_value": "kvlist",
}  # fmt: skip
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Severity numbers by enum name: `json_format` (and so `request_to_json_line`) writes names.
_SEVERITY_NUMBERS = {name: int(SeverityNumber.Value(name)) for name in SeverityNumber.keys()}  # noqa: SIM118


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    value = d.get(camel)
    return d.get(snake) if value is None else value


def _kind(value: Any) -> tuple[str, Any]:
    """(short kind, payload) of one AnyValue object; ("empty", None) when it has no kind."""
    if value is None:
        return "empty", None
    if type(value) is not dict or len(value) > 1:
        raise _Fallback
    for key, payload in value.items():
        kind = _KINDS.get(key)
        if kind is None:
            return "empty", None  # an unknown field is ignored, as json_format does
        if payload is None:
            return "empty", None
        return kind, payload
    return "empty", None


def _int(x: Any) -> int:
    if type(x) is int:
        return x
    if type(x) is str and x.isascii() and x.lstrip("-").isdigit():
        return int(x)
    raise _Fallback


def _plain(value: Any, depth: int) -> Any:
    """As `normalise._plain`, on an OTLP/JSON AnyValue object."""
    if depth > MAX_RENDER_DEPTH:
        return "…"
    kind, payload = _kind(value)
    if kind == "string":
        if type(payload) is not str:
            raise _Fallback
        return payload
    if kind == "int":
        return _int(payload)
    if kind == "bool":
        if type(payload) is not bool:
            raise _Fallback
        return payload
    if kind == "double":
        d = _double(payload)
        return d if math.isfinite(d) else str(d)
    if kind == "array":
        return [_plain(v, depth + 1) for v in _values(payload)]
    if kind == "kvlist":
        out: dict[str, Any] = {}
        for kv in _values(payload):
            if type(kv) is not dict:
                raise _Fallback
            out[_key(kv)] = _plain(kv.get("value"), depth + 1)
        return out
    if kind == "bytes":
        return base64.b64encode(_bytes(payload)).decode("ascii")
    return None


def _bytes(payload: Any) -> bytes:
    """Base64 as json_format reads it: either alphabet, padding optional."""
    if type(payload) is not str:
        raise _Fallback
    encoded = payload.encode("utf-8")
    try:
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise _Fallback from None


def _double(x: Any) -> float:
    if type(x) is float or type(x) is int:
        return float(x)
    if type(x) is str and x in _NON_FINITE:
        return _NON_FINITE[x]
    raise _Fallback


def _values(payload: Any) -> list[Any]:
    if type(payload) is not dict:
        raise _Fallback
    values = payload.get("values")
    if values is None:
        return []
    if type(values) is not list:
        raise _Fallback
    return values


def _key(kv: dict[str, Any]) -> str:
    key = kv.get("key")
    if key is None:
        return ""
    if type(key) is not str:
        raise _Fallback
    return key


def render(value: Any) -> str:
    """As `normalise.render_value`, on an OTLP/JSON AnyValue object."""
    if type(value) is dict and len(value) == 1:
        text = value.get("stringValue")
        if type(text) is str:
            return text
    kind, payload = _kind(value)
    if kind == "string":
        if type(payload) is not str:
            raise _Fallback
        return payload
    if kind == "empty":
        return ""
    plain = _plain(value, 0)
    if isinstance(plain, str):
        return plain
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, int | float):
        return repr(plain)
    return json.dumps(plain, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _list(d: dict[str, Any], camel: str, snake: str) -> list[Any]:
    value = _get(d, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise _Fallback
    return value


def _hex(value: Any) -> str:
    if not value:
        return ""
    if type(value) is not str:
        raise _Fallback
    if not len(value) % 2 and not value.strip(_LOWER_HEX_DIGITS):
        return value  # already what bytes.fromhex(value).hex() gives
    try:
        return bytes.fromhex(value).hex()
    except ValueError:
        raise _Fallback from None


def _types(attributes: list[Any]) -> tuple[tuple[str, str], ...]:
    return tuple((_key(kv), _kind(kv.get("value"))[0]) for kv in attributes)


# --- the typed skeleton -------------------------------------------------------------------------
# camelCase only, every OTLP field named: a field it does not know (a proto field name such as
# `time_unix_nano`, or something new) fails the decode, and the dict walk, which reads both
# spellings and ignores unknown fields as json_format does, takes the request.

_NO_RAW = msgspec.Raw()


class _Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """An AnyValue body; a plain string (the usual body) needs no other look."""

    string_value: str | None = None
    int_value: Any = None
    double_value: Any = None
    bool_value: Any = None
    bytes_value: Any = None
    array_value: Any = None
    kvlist_value: Any = None


class _Attribute(msgspec.Struct, forbid_unknown_fields=True):
    """A KeyValue whose value stays raw JSON until it is wanted."""

    key: str = ""
    value: msgspec.Raw = _NO_RAW


class _Record(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    time_unix_nano: int | str | None = None
    observed_time_unix_nano: int | str | None = None
    severity_number: int | str | None = None
    severity_text: str | None = None
    body: _Body | None = None
    attributes: msgspec.Raw = _NO_RAW  # decoded only when wanted (_DECODE_ATTRIBUTES)
    trace_id: str | None = None
    span_id: str | None = None
    event_name: str | None = None
    flags: Any = None
    dropped_attributes_count: Any = None


class _ScopeLogs(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    scope: msgspec.Raw = _NO_RAW
    log_records: list[_Record] | None = None
    schema_url: Any = None


class _ResourceLogs(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    resource: msgspec.Raw = _NO_RAW
    scope_logs: list[_ScopeLogs] | None = None
    schema_url: Any = None


class _Request(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    resource_logs: list[_ResourceLogs] | None = None


_DECODE_REQUEST = msgspec.json.Decoder(_Request).decode
_DECODE_ANY = msgspec.json.Decoder().decode
# Separately, not in the request's decode: measured 3x faster for the records that need it.
_DECODE_ATTRIBUTES = msgspec.json.Decoder(list[_Attribute] | None).decode
_LOWER_HEX_DIGITS = "0123456789abcdef"


def _raw(raw: msgspec.Raw) -> Any:
    return _DECODE_ANY(raw) if len(raw) else None


def _body_text(b: _Body | None) -> str:
    """The text of a body that is not one plain string (as `render_value`)."""
    if b is None:
        return ""
    fields = (
        ("stringValue", b.string_value), ("intValue", b.int_value),
        ("doubleValue", b.double_value), ("boolValue", b.bool_value),
        ("bytesValue", b.bytes_value), ("arrayValue", b.array_value),
        ("kvlistValue", b.kvlist_value),
    )  # fmt: skip
    return render({k: v for k, v in fields if v is not None})


def _time(t: Any) -> int:
    return 0 if t is None else _int(t)


def _walk_typed(data: bytes, normaliser: Normaliser, now_ns: int) -> tuple[LogBatch, IntakeCounts]:
    """As `_walk`, over the typed skeleton, a column at a time: attribute values are decoded
    only for the wanted keys (and the types of the sampled records); bodies only when they are
    not one plain string."""
    req = _DECODE_REQUEST(data)
    batch = LogBatch()
    counts = IntakeCounts()
    opts = normaliser.options
    latest = now_ns + opts.max_future_skew_ns
    wanted = frozenset(opts.source_attributes)
    unique_order = {k: i for i, k in enumerate(opts.unique_id_attributes)}
    # The wanted keys as they appear in JSON; one that occurs nowhere in the request occurs in
    # no record's attributes, and a record's attributes are decoded only if one occurs in them.
    needles = [json.dumps(k).encode() for k in (*unique_order, TEMPLATE_ATTRIBUTE)]
    needles = [needle for needle in needles if needle in data]
    source_ids: dict[Source, int] = {}
    severities: dict[tuple[str, int | str], str] = {}
    sample_every = opts.sample_every
    for rl in req.resource_logs or ():
        resource = _raw(rl.resource) or {}
        if type(resource) is not dict:
            raise _Fallback
        resource_attrs = _list(resource, "attributes", "attributes")
        values: dict[str, str] = {}
        for kv in resource_attrs:
            if type(kv) is not dict:
                raise _Fallback
            key = _key(kv)
            if key in wanted:
                values[key] = render(kv.get("value"))
        src_counted = not values.get("service.name")
        if src_counted:
            counts.missing_service_name += 1
        src = normaliser.source_for(values)
        idx = source_ids.get(src)
        for sl in rl.scope_logs or ():
            records = sl.log_records or []
            scope = _raw(sl.scope) or {}
            if type(scope) is not dict:
                raise _Fallback
            if scope.get("name") == VIA_SCOPE_NAME:
                counts.loopback_ignored += len(records)
                continue
            if not records:
                continue
            if idx is None:
                idx = source_ids[src] = len(batch.sources)
                batch.sources.append(src)
            first, n = len(batch.body), len(records)
            bodies = [lr.body for lr in records]
            batch.body += [
                b.string_value
                if b is not None and b.string_value is not None and b.int_value is None
                and b.double_value is None and b.bool_value is None and b.bytes_value is None
                and b.array_value is None and b.kvlist_value is None
                else _body_text(b)
                for b in bodies
            ]  # fmt: skip
            for sev_key in zip(
                [lr.severity_text or "" for lr in records],
                [lr.severity_number or 0 for lr in records],
                strict=True,
            ):
                sev = severities.get(sev_key)
                if sev is None:
                    text, number = sev_key
                    if type(number) is str:
                        if number not in _SEVERITY_NUMBERS:
                            raise _Fallback
                        number = _SEVERITY_NUMBERS[number]
                    sev = severities[sev_key] = severity_of(text, int(number))
                batch.severity.append(sev)
            times = [
                int(t) if type(t) is str and t.isdigit() and t.isascii() else _time(t)
                for t in [lr.time_unix_nano for lr in records]
            ]
            if not all(times):
                times = [
                    t or _time(lr.observed_time_unix_nano)
                    for t, lr in zip(times, records, strict=True)
                ]
            for i, t in enumerate(times):
                if t <= 0 or t > latest:
                    if t < 0:
                        raise _Fallback
                    if t:
                        counts.future_clamped += 1
                    else:
                        counts.missing_timestamp += 1
                    times[i] = now_ns
            batch.time_ns += times
            batch.source_index += [idx] * n
            batch.trace_id += [_hex(lr.trace_id) for lr in records]
            batch.span_id += [_hex(lr.span_id) for lr in records]
            batch.event_name += [lr.event_name or "" for lr in records]
            if needles:
                for lr in records:
                    uid, uid_rank, hint = "", len(unique_order), ""
                    raw_attrs = bytes(lr.attributes)
                    wanted_here = any(needle in raw_attrs for needle in needles)
                    for attr in (_DECODE_ATTRIBUTES(raw_attrs) or ()) if wanted_here else ():
                        k = attr.key
                        rank = unique_order.get(k)
                        if rank is not None and rank < uid_rank:
                            uid, uid_rank = render(_raw(attr.value)), rank
                        elif k == TEMPLATE_ATTRIBUTE:
                            kind, payload = _kind(_raw(attr.value))
                            hint = payload if kind == "string" else ""
                            if type(hint) is not str:
                                raise _Fallback
                    batch.unique_id.append(uid)
                    batch.template_hint.append(hint)
            else:
                batch.unique_id += [""] * n
                batch.template_hint += [""] * n
            # Schema sampling: one record in `sample_every`, counted across requests.
            countdown = normaliser._sample_countdown
            pos = max(countdown, 1) - 1
            while pos < n:
                raw_attrs = records[pos].attributes
                attrs = (_DECODE_ATTRIBUTES(raw_attrs) or ()) if len(raw_attrs) else ()
                batch.attribute_samples.append(
                    AttributeSample(
                        idx,
                        tuple((a.key, _kind(_raw(a.value))[0]) for a in attrs),
                        _types(resource_attrs),
                        first + pos,
                    )
                )
                pos += sample_every
            normaliser._sample_countdown = pos - n + 1
        if src_counted and idx is None:
            counts.missing_service_name -= 1
    counts.records = len(batch.body)
    return batch, counts


def batch_from_json(
    text: str | bytes, normaliser: Normaliser, now_ns: int
) -> tuple[LogBatch, IntakeCounts]:
    """One OTLP/JSON `ExportLogsServiceRequest` as the batch `normaliser.from_request` would
    make of it; raises `InputError` for what is not a valid request."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    countdown = normaliser._sample_countdown
    if _TYPED:
        try:
            return _walk_typed(data, normaliser, now_ns)
        except (_Fallback, msgspec.DecodeError, RecursionError, TypeError, ValueError):
            normaliser._sample_countdown = countdown  # the next walk starts over
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    if type(doc) is dict:
        try:
            return _walk(doc, normaliser, now_ns)
        except (_Fallback, RecursionError, TypeError, ValueError, AttributeError):
            normaliser._sample_countdown = countdown  # the protobuf path starts over
    return normaliser.from_request(decode_json(data), now_ns)


_TYPED = True  # tests turn the typed walk off to check the dict walk on its own


def _walk(
    doc: dict[str, Any], normaliser: Normaliser, now_ns: int
) -> tuple[LogBatch, IntakeCounts]:
    batch = LogBatch()
    counts = IntakeCounts()
    opts = normaliser.options
    latest = now_ns + opts.max_future_skew_ns
    wanted = frozenset(opts.source_attributes)
    unique_keys = frozenset(opts.unique_id_attributes)
    unique_order = {k: i for i, k in enumerate(opts.unique_id_attributes)}
    no_uid = len(unique_order)
    add_src, add_sev, add_body = batch.source_index.append, batch.severity.append, batch.body.append
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
    countdown = normaliser._sample_countdown
    sample_every = opts.sample_every
    for rl in _list(doc, "resourceLogs", "resource_logs"):
        if type(rl) is not dict:
            raise _Fallback
        resource = rl.get("resource") or {}
        if type(resource) is not dict:
            raise _Fallback
        resource_attrs = _list(resource, "attributes", "attributes")
        values: dict[str, str] = {}
        for kv in resource_attrs:
            if type(kv) is not dict:
                raise _Fallback
            key = _key(kv)
            if key in wanted:
                values[key] = render(kv.get("value"))
        src_counted = not values.get("service.name")
        if src_counted:
            counts.missing_service_name += 1
        src = normaliser.source_for(values)
        idx = source_ids.get(src)
        for sl in _list(rl, "scopeLogs", "scope_logs"):
            if type(sl) is not dict:
                raise _Fallback
            records = _list(sl, "logRecords", "log_records")
            scope = sl.get("scope") or {}
            if type(scope) is not dict:
                raise _Fallback
            if scope.get("name") == VIA_SCOPE_NAME:
                counts.loopback_ignored += len(records)
                continue
            if not records:
                continue
            if idx is None:
                idx = source_ids[src] = len(batch.sources)
                batch.sources.append(src)
            for lr in records:
                if type(lr) is not dict:
                    raise _Fallback
                body = lr.get("body")
                if body is None:
                    add_body("")
                elif type(body) is dict and len(body) == 1 and type(body.get("stringValue")) is str:
                    add_body(body["stringValue"])
                else:
                    add_body(render(body))
                sev_text = _get(lr, "severityText", "severity_text")
                sev_number = _get(lr, "severityNumber", "severity_number")
                sev_text = "" if sev_text is None else sev_text
                sev_number = 0 if sev_number is None else sev_number
                if type(sev_number) is str:
                    sev_number = _SEVERITY_NUMBERS.get(sev_number, sev_number)
                if type(sev_text) is not str or type(sev_number) is not int:
                    raise _Fallback
                add_sev(severity_of(sev_text, sev_number))
                t = _get(lr, "timeUnixNano", "time_unix_nano")
                t = 0 if t is None else _int(t)
                if not t:
                    t = _get(lr, "observedTimeUnixNano", "observed_time_unix_nano")
                    t = 0 if t is None else _int(t)
                if t < 0:
                    raise _Fallback
                if not t:
                    counts.missing_timestamp += 1
                    t = now_ns
                elif t > latest:
                    counts.future_clamped += 1
                    t = now_ns
                add_time(t)
                add_src(idx)
                add_trace(_hex(_get(lr, "traceId", "trace_id")))
                add_span(_hex(_get(lr, "spanId", "span_id")))
                event = _get(lr, "eventName", "event_name")
                event = "" if event is None else event
                if type(event) is not str:
                    raise _Fallback
                add_event(event)
                attributes = _list(lr, "attributes", "attributes")
                uid, uid_rank, hint = "", no_uid, ""
                for kv in attributes:
                    if type(kv) is not dict:
                        raise _Fallback
                    k = _key(kv)
                    if k in unique_keys and unique_order[k] < uid_rank:
                        uid, uid_rank = render(kv.get("value")), unique_order[k]
                    elif k == TEMPLATE_ATTRIBUTE:
                        kind, payload = _kind(kv.get("value"))
                        hint = payload if kind == "string" else ""
                        if type(hint) is not str:
                            raise _Fallback
                add_uid(uid)
                add_hint(hint)
                countdown -= 1
                if countdown <= 0:
                    countdown = sample_every
                    batch.attribute_samples.append(
                        AttributeSample(
                            idx, _types(attributes), _types(resource_attrs), len(batch.body) - 1
                        )
                    )
        if src_counted and idx is None:
            counts.missing_service_name -= 1
    normaliser._sample_countdown = countdown
    counts.records = len(batch.body)
    return batch, counts


__all__ = ["InputError", "batch_from_json", "render"]
