"""OTLP/JSON text → `LogBatch`es directly, without building a protobuf message.

Replaying the Collector's `file` exporter output used to go JSON → protobuf message (through
`json_format`, about 10,000 records/s) → `Normaliser`. Here `msgspec` decodes the request's
skeleton into typed structs in one C pass, keeping each record's attributes as raw JSON bytes,
decoded only when needed (a wanted key such as `user.id` occurs in them, or the record is a
schema sample): most of a record's JSON never becomes Python objects. The columns go into the
normaliser's own batch under construction (`_Cut`, finished by `Normaliser._finish`) with its
rules (`severity_of` and its cache, the source cache, unique ids, template hints, schema
samples, timestamp fallbacks), so `batches_from_json(data, n, now, max_records)` gives what
`n.batches(decode_json(data), now, data, max_records)` gives (`tests/receive/test_otlp_json.py`
checks it with hypothesis).

The typed walk takes what OTLP/JSON senders write: camelCase, integers as numbers or strings,
enums as numbers or names, hex ids, every OTLP field. Anything else — proto field names
(`time_unix_nano`), an unknown field, a value with two kinds, a malformed id — goes to the
protobuf path as it is, which normalises it or raises `InputError` saying what was wrong, so
both paths agree on every input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import msgspec
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from via_otlp.model import TEMPLATE_ATTRIBUTE, VIA_SCOPE_NAME, AttributeSample, LogBatch, Source
from via_otlp.receive.normalise import (
    _SEVERITY_CACHE_MAX,
    MAX_RENDER_DEPTH,
    IntakeCounts,
    Normaliser,
    _Cut,
    render_plain,
    severity_of,
)
from via_otlp.receive.otlp_codec import Encoding, Repairs, decode


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
    return render_plain(_plain(value, 0))


def _list(d: dict[str, Any], camel: str, snake: str) -> list[Any]:
    value = _get(d, camel, snake)
    if value is None:
        return []
    if type(value) is not list:
        raise _Fallback
    return value


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
    if t is None:
        return 0
    value = _int(t)
    if not 0 <= value < 1 << 64:
        raise _Fallback  # not a fixed64: json_format's error, not ours
    return value


def _id(value: str | None) -> bytes:
    """A hex trace id as its bytes, as the protobuf path reads it."""
    if not value:
        return b""
    return bytes.fromhex(value)  # ValueError: malformed, the protobuf path says so


def _walk(
    data: bytes, normaliser: Normaliser, now_ns: int, max_records: int
) -> list[tuple[LogBatch, IntakeCounts]]:
    """As `Normaliser.batches`, over the typed skeleton, a column at a time."""
    req = _DECODE_REQUEST(data)
    opts = normaliser.options
    wanted = frozenset(opts.source_attributes)
    unique_order = {k: i for i, k in enumerate(opts.unique_id_attributes)}
    # The wanted keys as JSON strings; a record's attributes are decoded only if one occurs in
    # them (and one that occurs nowhere in the request occurs in no record).
    needles = [json.dumps(k).encode() for k in (*unique_order, TEMPLATE_ATTRIBUTE)]
    needles = [needle for needle in needles if needle in data]
    # `batches` walks the attributes when a wanted key occurs in the request's bytes at all.
    scan = any(k.encode() in data for k in (*opts.unique_id_attributes, TEMPLATE_ATTRIBUTE))
    limit = max_records if max_records > 0 else 1 << 62
    out: list[tuple[LogBatch, IntakeCounts]] = []
    cut = _Cut(scan)
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
            cut.counts.missing_service_name += 1
        src = normaliser.source_for(values)
        resource_types = _types(resource_attrs)
        seen = False
        for sl in rl.scope_logs or ():
            records = sl.log_records or []
            scope = _raw(sl.scope) or {}
            if type(scope) is not dict:
                raise _Fallback
            if not records:
                continue
            if scope.get("name") == VIA_SCOPE_NAME:
                cut.counts.loopback_ignored += len(records)
                continue
            seen = True
            total, done = len(records), 0
            while done < total:
                take = min(total - done, limit - len(cut.bodies))
                part = records if take == total else records[done : done + take]
                _add(normaliser, cut, src, part, resource_types, needles, unique_order)
                done += take
                if len(cut.bodies) >= limit:
                    out.append(normaliser._finish(cut, now_ns))
                    cut = _Cut(scan)
        if src_counted and not seen:
            cut.counts.missing_service_name -= 1  # a resource with no records is not counted
    if cut.bodies or cut.counts.loopback_ignored or cut.counts.missing_service_name:
        out.append(normaliser._finish(cut, now_ns))
    return out


def _add(
    normaliser: Normaliser,
    cut: _Cut,
    src: Source,
    records: list[_Record],
    resource_types: tuple[tuple[str, str], ...],
    needles: list[bytes],
    unique_order: dict[str, int],
) -> None:
    """As `Normaliser._add`, for typed OTLP/JSON records."""
    idx = cut.source_ids.get(src)
    if idx is None:
        idx = cut.source_ids[src] = len(cut.batch.sources)
        cut.batch.sources.append(src)
    first, n = len(cut.bodies), len(records)
    cut.bodies += [
        b.string_value
        if b is not None and b.string_value is not None and b.int_value is None
        and b.double_value is None and b.bool_value is None and b.bytes_value is None
        and b.array_value is None and b.kvlist_value is None
        else _body_text(b)
        for b in [lr.body for lr in records]
    ]  # fmt: skip
    sev_cache = normaliser._severity_cache
    severities = cut.batch.severity
    for text, number in zip(
        [lr.severity_text or "" for lr in records],
        [lr.severity_number or 0 for lr in records],
        strict=True,
    ):
        if type(number) is str:
            if number not in _SEVERITY_NUMBERS:
                raise _Fallback
            number = _SEVERITY_NUMBERS[number]
        key = (text, int(number))
        sev = sev_cache.get(key)
        if sev is None:
            sev = sev_cache[key] = severity_of(*key)
            if len(sev_cache) > _SEVERITY_CACHE_MAX:
                sev_cache.clear()
        severities.append(sev)
    times = [
        int(t) if type(t) is str and t.isdigit() and t.isascii() and len(t) < 20 else _time(t)
        for t in [lr.time_unix_nano for lr in records]
    ]
    if not all(times):
        times = [
            t or _time(lr.observed_time_unix_nano) for t, lr in zip(times, records, strict=True)
        ]
    cut.times += times
    cut.traces += [_id(lr.trace_id) for lr in records]
    for lr in records:  # span ids are not kept, but a malformed one is refused
        sid = lr.span_id
        if sid and (len(sid) % 2 or sid.strip(_HEX_DIGITS)):
            bytes.fromhex(sid)
    cut.batch.source_index += [idx] * n
    if cut.scan:
        for lr in records:
            uid, uid_rank, hint = "", len(unique_order), ""
            raw_attrs = bytes(lr.attributes)
            if needles and any(needle in raw_attrs for needle in needles):
                for attr in _DECODE_ATTRIBUTES(raw_attrs) or ():
                    k = attr.key
                    rank = unique_order.get(k)
                    if rank is not None and rank < uid_rank:
                        uid, uid_rank = render(_raw(attr.value)), rank
                    elif k == TEMPLATE_ATTRIBUTE:
                        kind, payload = _kind(_raw(attr.value))
                        hint = payload if kind == "string" else ""
                        if type(hint) is not str:
                            raise _Fallback
            cut.uids.append(uid)
            cut.hints.append(hint)
    # Schema sampling: one record in `sample_every`, counted across requests.
    pos = max(normaliser._sample_countdown, 1) - 1
    while pos < n:
        raw_attrs = records[pos].attributes
        attrs = (_DECODE_ATTRIBUTES(raw_attrs) or ()) if len(raw_attrs) else ()
        cut.batch.attribute_samples.append(
            AttributeSample(
                idx,
                tuple((a.key, _kind(_raw(a.value))[0]) for a in attrs),
                resource_types,
                first + pos,
            )
        )
        pos += normaliser.options.sample_every
    normaliser._sample_countdown = pos - n + 1


def batches_from_json(
    data: bytes, normaliser: Normaliser, now_ns: int, max_records: int = 0
) -> tuple[list[tuple[LogBatch, IntakeCounts]], Repairs]:
    """One OTLP/JSON `ExportLogsServiceRequest` as the batches (of at most `max_records`
    records; 0: one) that `normaliser.batches` makes of it, and what decoding had to repair
    (as `otlp_codec.decode`); `InputError` for what is not a valid request."""
    countdown = normaliser._sample_countdown
    if _TYPED and _clean(data):
        try:
            return _walk(data, normaliser, now_ns, max_records), Repairs.NONE
        except (_Fallback, msgspec.DecodeError, RecursionError, TypeError, ValueError):
            normaliser._sample_countdown = countdown  # the protobuf path starts over
    message, repairs = decode(data, Encoding.JSON)
    return list(normaliser.batches(message, now_ns, data, max_records)), repairs


def _clean(data: bytes) -> bool:
    """Valid UTF-8 without escaped surrogates: nothing the protobuf path would repair (the
    typed walk never looks inside most raw attributes, so it checks here)."""
    if b"\\ud" in data or b"\\uD" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def batch_from_json(
    text: str | bytes, normaliser: Normaliser, now_ns: int
) -> tuple[LogBatch, IntakeCounts]:
    """One OTLP/JSON request as one batch: what `normaliser.from_request(decode_json(text))`
    gives."""
    data = text.encode() if isinstance(text, str) else text
    for one in batches_from_json(data, normaliser, now_ns)[0]:
        return one
    return LogBatch(), IntakeCounts()


_TYPED = True  # tests turn the typed walk off to check the fallback on its own
_HEX_DIGITS = "0123456789abcdefABCDEF"
