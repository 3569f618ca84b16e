"""Cut AnyValues nested too deep for the protobuf parser, on the wire. Pure.

The protobuf runtime refuses a message nested deeper than 100 messages; every kvlist level of
an OTLP `AnyValue` costs three (AnyValue → KeyValueList → KeyValue), so a log body nested
about 32 levels deep made the whole export fail. README promises that content problems never
fail a request, and the normaliser renders anything below `max_depth` levels as "…" anyway.
So when the parser gives up on depth, `cut_deep_values` rewrites the request bytes: every
AnyValue deeper than `max_depth` (a body or attribute value is depth 0) becomes the string "…",
and the request parses, rendering exactly as a shallower one would.

It walks only the messages that can hold an AnyValue; everything else (strings, ids,
timestamps, unknown fields) is copied as it is. Its Python recursion is bounded by
`max_depth`, whatever the input's nesting, and its work by the input's size.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from google.protobuf.message import DecodeError

ELLIPSIS = "…"


class _Kind(enum.Enum):
    """The OTLP logs messages on the way from a request to its AnyValues."""

    REQUEST = enum.auto()
    RESOURCE_LOGS = enum.auto()
    RESOURCE = enum.auto()
    SCOPE_LOGS = enum.auto()
    SCOPE = enum.auto()
    LOG_RECORD = enum.auto()
    KEY_VALUE = enum.auto()
    ANY_VALUE = enum.auto()
    ARRAY = enum.auto()
    KVLIST = enum.auto()


# field number → kind of the sub-message, for the fields that lead to AnyValues.
_CHILDREN: dict[_Kind, dict[int, _Kind]] = {
    _Kind.REQUEST: {1: _Kind.RESOURCE_LOGS},
    _Kind.RESOURCE_LOGS: {1: _Kind.RESOURCE, 2: _Kind.SCOPE_LOGS},
    _Kind.RESOURCE: {1: _Kind.KEY_VALUE},
    _Kind.SCOPE_LOGS: {1: _Kind.SCOPE, 2: _Kind.LOG_RECORD},
    _Kind.SCOPE: {3: _Kind.KEY_VALUE},
    _Kind.LOG_RECORD: {5: _Kind.ANY_VALUE, 6: _Kind.KEY_VALUE},
    _Kind.KEY_VALUE: {2: _Kind.ANY_VALUE},
    _Kind.ANY_VALUE: {5: _Kind.ARRAY, 6: _Kind.KVLIST},
    _Kind.ARRAY: {1: _Kind.ANY_VALUE},
    _Kind.KVLIST: {1: _Kind.KEY_VALUE},
}
# AnyValue{string_value: "…"}: field 1, wire type 2, length 3.
_CUT_VALUE = b"\x0a" + bytes([len(ELLIPSIS.encode())]) + ELLIPSIS.encode()


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DecodeError("truncated or overlong varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_FIXED_SIZE = {1: 8, 5: 4}  # wire type → bytes: fixed64, fixed32


def _skip_scalar(data: bytes, pos: int, end: int, wire_type: int) -> int:
    """Where a field's value of wire type 0 (varint), 1 (fixed64) or 5 (fixed32) that starts
    at `pos` ends (a fixed value may end past `end`: the caller checks). Raises `DecodeError`
    for any other wire type (groups, and length-delimited values, which callers read)."""
    if wire_type == 0:
        return _varint(data, pos, end)[1]
    size = _FIXED_SIZE.get(wire_type)
    if size is None:
        raise DecodeError(f"unsupported wire type {wire_type}")
    return pos + size


def cut_deep_values(data: bytes, max_depth: int) -> bytes:
    """`data` (an ExportLogsServiceRequest) with every AnyValue deeper than `max_depth`
    replaced by the string "…". Raises `DecodeError` when `data` is not protobuf."""
    out = _walk(data, 0, len(data), _Kind.REQUEST, -1, max_depth)
    return data if out is None else out


def _walk(
    data: bytes, start: int, end: int, kind: _Kind, depth: int, max_depth: int
) -> bytes | None:
    """The message `data[start:end]` rewritten, or None when nothing in it had to change.

    `depth` is the value depth of the innermost AnyValue around it (-1 above any).
    """
    if kind is _Kind.ANY_VALUE:
        depth += 1
        if depth > max_depth:
            return _CUT_VALUE
    children = _CHILDREN[kind]
    pieces: list[bytes] | None = None
    copied = start  # data[copied:pos] is unchanged and not yet in `pieces`
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(data, pos, end)
        wire_type = key & 7
        if wire_type == 2:
            length, pos = _varint(data, pos, end)
            value_end = pos + length
            if value_end > end:
                raise DecodeError("truncated length-delimited field")
            child = children.get(key >> 3)
            if child is not None:
                new = _walk(data, pos, value_end, child, depth, max_depth)
                if new is not None:
                    if pieces is None:
                        pieces = []
                    pieces.append(data[copied:field_start])
                    pieces.append(_encode_varint(key))
                    pieces.append(_encode_varint(len(new)))
                    pieces.append(new)
                    copied = value_end
            pos = value_end
        else:
            pos = _skip_scalar(data, pos, end, wire_type)
        if pos > end:
            raise DecodeError("truncated field")
    if pieces is None:
        return None
    pieces.append(data[copied:end])
    return b"".join(pieces)


RECORD_SAMPLE = 16  # ScopeLogs fields `resource_logs_spans` walks to count LogRecords


def resource_logs_spans(
    data: bytes,
    max_fields: int,
    max_resource_bytes: int,
    max_records: int | None = None,
    keep: Callable[[bytes], bool] | None = None,
) -> list[tuple[int, int, bytes]] | None:
    """Where each ResourceLogs of the request `data` lies, without parsing it: (start, end) of
    its whole field (tag and length included: the bytes of a one-ResourceLogs request) and its
    Resource's bytes (every occurrence, joined, as the parser merges them).

    Its work is bounded whatever the input (it runs where only I/O may): None as soon as more
    than `max_fields` fields (ResourceLogs, and fields inside them) would be read, or their
    Resources hold more than `max_resource_bytes`. Raises `DecodeError` on anything but
    ResourceLogs fields that fit (the caller then parses the request whole, which says what is
    wrong).

    With `max_records`, None too when the request holds more LogRecords than that, as far as
    `_RecordCount` can tell (it counts the first `RECORD_SAMPLE` fields of the ScopeLogs and
    judges the rest by their bytes): a request cannot exceed it if its bytes are fewer than
    two per record, so small requests are not walked for it at all. With `keep`, each
    ResourceLogs' Resource bytes are given to it as soon as walked, and the walk stops (None)
    the first time it says False.
    """
    out: list[tuple[int, int, bytes]] = []
    end = len(data)
    pos = fields = resource_bytes = 0
    records = None
    if max_records is not None and end > 2 * max_records:
        records = _RecordCount(RECORD_SAMPLE)
    while pos < end:
        start = pos
        key, pos = _varint(data, pos, end)
        if key != 0x0A:  # field 1, length-delimited
            raise DecodeError("not a ResourceLogs field")
        length, pos = _varint(data, pos, end)
        value_end = pos + length
        if value_end > end:
            raise DecodeError("truncated ResourceLogs")
        fields += 1
        resource: list[bytes] = []
        while pos < value_end:
            fields += 1
            if fields > max_fields:
                return None
            key, pos = _varint(data, pos, value_end)
            wire_type = key & 7
            if wire_type == 2:
                length, pos = _varint(data, pos, value_end)
                if key >> 3 == 1:
                    resource_bytes += length
                    if resource_bytes > max_resource_bytes:
                        return None
                    resource.append(data[pos : pos + length])
                elif key == 0x12 and records is not None:  # ScopeLogs
                    records.scope_logs(data, pos, min(pos + length, value_end))
                pos += length
            else:
                pos = _skip_scalar(data, pos, value_end, wire_type)
            if pos > value_end:
                raise DecodeError("truncated field")
        if fields > max_fields:
            return None
        out.append((start, value_end, b"".join(resource)))
        if keep is not None and not keep(out[-1][2]):
            return None
    if records is not None and max_records is not None and records.estimate() > max_records:
        return None
    return out


class _RecordCount:
    """The LogRecords of a request's ScopeLogs: counted in the first `budget` fields walked,
    and judged in the rest by the bytes per record of those counted (the rest's other fields,
    a few bytes a ScopeLogs, count as records too). The estimate only picks between routing
    a request and decoding it whole (both answer the same): it need not be exact, but it
    must cost little."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.counted = 0  # LogRecords counted
        self.counted_bytes = 0  # their fields' bytes
        self.unwalked = 0  # bytes of ScopeLogs not walked

    def scope_logs(self, data: bytes, pos: int, end: int) -> None:
        try:
            while pos < end and self.budget > 0:
                self.budget -= 1
                start = pos
                key, pos = _varint(data, pos, end)
                wire_type = key & 7
                if wire_type == 2:
                    length, pos = _varint(data, pos, end)
                    pos += length
                    if key == 0x12:  # LogRecord
                        self.counted += 1
                        self.counted_bytes += min(pos, end) - start
                else:
                    pos = _skip_scalar(data, pos, end, wire_type)
        except DecodeError:
            pass  # (a group, or truncated) not for this to say: the decoder will
        self.unwalked += end - min(pos, end)

    def estimate(self) -> int:
        if not self.unwalked:
            return self.counted
        if not self.counted:
            return self.unwalked // 2  # at least two bytes a record
        return self.counted + self.unwalked * self.counted // self.counted_bytes
