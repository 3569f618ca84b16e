"""NDJSON records and raw text lines → OTLP logs requests, so every input takes the same path.

An NDJSON record is one JSON object per line:
``{"time": "2026-11-27T10:00:00Z", "service": "checkout", "severity": "ERROR",
"body": "Payment declined", "attributes": {"user.id": "u1"}, "trace_id": "5b8e..."}``.
Only `body` is required. `time` is RFC 3339 text or a number of seconds, milliseconds,
microseconds or nanoseconds since the epoch (told apart by size).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from via_otlp.errors import InputError
from via_otlp.model import UNKNOWN_SERVICE
from via_otlp.receive import jsonrepair
from via_otlp.receive.normalise import MAX_RENDER_DEPTH
from via_otlp.times import parse_rfc3339

# Deeper values are cut to "…": the normaliser renders them so anyway, and it keeps every
# request we build within the protobuf parser's nesting limit (3 messages per kvlist level).
MAX_VALUE_DEPTH = MAX_RENDER_DEPTH
KNOWN_KEYS = frozenset({"time", "service", "severity", "body", "attributes", "trace_id", "span_id"})


@dataclass(frozen=True, slots=True)
class TextRecord:
    """One input record before it becomes OTLP: a service and a LogRecord (`repaired`: its
    text had invalid UTF-8 or unpaired surrogates, replaced)."""

    service: str
    record: LogRecord
    repaired: bool = False


def parse_time(value: Any) -> int:
    """Nanoseconds since the epoch from RFC 3339 text or a number (s, ms, µs or ns by size).

    >>> parse_time("1970-01-01T00:00:01Z"), parse_time(1.5), parse_time(1_700_000_000_000)
    (1000000000, 1500000000, 1700000000000000000)
    """
    ns = _parse_time(value)
    if not 0 <= ns < 2**64:
        raise InputError(f"time: {value!r} is outside what OTLP can carry (1970 to 2554)")
    return ns


def _parse_time(value: Any) -> int:
    """Nanoseconds from text or a number, before the range check."""
    if isinstance(value, bool):
        raise InputError(f"time: must be RFC 3339 text or a number, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise InputError(f"time: must be a finite non-negative number, got {value!r}")
        magnitude = abs(value)
        scale = (
            1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1
        )
        return int(value * scale)
    if isinstance(value, str):
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise InputError(f"time: {exc}") from None
    raise InputError(f"time: must be RFC 3339 text or a number, got {value!r}")


def to_any_value(value: Any, out: AnyValue, depth: int = 0) -> None:
    """Fill an AnyValue from plain JSON data (nesting deeper than MAX_VALUE_DEPTH is cut)."""
    if depth > MAX_VALUE_DEPTH:
        out.string_value = "…"
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            out.int_value = value
        else:
            out.string_value = str(value)
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, list):
        arr = out.array_value
        arr.SetInParent()
        for item in value:
            to_any_value(item, arr.values.add(), depth + 1)
    elif isinstance(value, dict):
        kvl = out.kvlist_value
        kvl.SetInParent()
        for k, v in value.items():
            kv = kvl.values.add(key=str(k))
            to_any_value(v, kv.value, depth + 1)
    # None stays an empty AnyValue.


def _hex_id(value: Any, size: int, name: str) -> bytes:
    if value in (None, ""):
        return b""
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise InputError(f"{name}: must be {size * 2} hex digits, got {value!r}")
    return raw


def record_from_json(doc: Any, default_service: str = UNKNOWN_SERVICE) -> TextRecord:
    """One NDJSON object → a `TextRecord`; raises `InputError` saying which field is wrong."""
    if not isinstance(doc, dict):
        raise InputError("each line must be a JSON object")
    if "body" not in doc:
        raise InputError("body: is required")
    record = LogRecord()
    to_any_value(doc["body"], record.body)
    if doc.get("time") is not None:
        record.time_unix_nano = parse_time(doc["time"])
    severity = doc.get("severity")
    if isinstance(severity, int) and not isinstance(severity, bool) and 0 <= severity <= 24:
        record.severity_number = severity  # type: ignore[assignment]
    elif isinstance(severity, str):
        record.severity_text = severity
    elif severity is not None:
        raise InputError(f"severity: must be text or a number 0-24, got {severity!r}")
    attributes = doc.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InputError("attributes: must be an object")
    for key, value in attributes.items():
        to_any_value(value, record.attributes.add(key=str(key)).value)
    record.trace_id = _hex_id(doc.get("trace_id"), 16, "trace_id")
    record.span_id = _hex_id(doc.get("span_id"), 8, "span_id")
    service = doc.get("service") or default_service
    if not isinstance(service, str):
        raise InputError(f"service: must be text, got {service!r}")
    return TextRecord(service, record)


def parse_ndjson_line(line: bytes | str, default_service: str = UNKNOWN_SERVICE) -> TextRecord:
    """One line of NDJSON → a `TextRecord` (invalid UTF-8 and unpaired surrogates replaced)."""
    try:
        doc, repaired = jsonrepair.loads(line)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not valid JSON: {exc}") from None
    record = record_from_json(doc, default_service)
    return dataclasses.replace(record, repaired=True) if repaired else record


# A line's content: from its first non-blank byte to its end. Searching for it skips runs of
# blank lines inside the regex engine, so a body of millions of empty lines costs no Python step
# per line (16 KiB of gzip inflate to 16 Mi of them).
_CONTENT = re.compile(rb"[^\s][^\n]*")


@dataclass(frozen=True, slots=True)
class Line:
    """A non-blank NDJSON line and its 1-based number; `text` is None when it was too long."""

    number: int
    text: bytes | None


class LineSplitter:
    r"""Splits a body fed in pieces into its non-blank lines, with their numbers. Pure.

    Work is per piece and per non-blank line, never per blank line. A line longer than
    `max_line` bytes is reported once, as `Line(n, None)`, and its bytes are not kept.

    >>> s = LineSplitter(max_line=8)
    >>> s.feed(b'{"a":1}\n\n  \n{"b"')
    [Line(number=1, text=b'{"a":1}')]
    >>> s.feed(b':2}\n0123456789'), s.end(), s.lines
    ([Line(number=4, text=b'{"b":2}'), Line(number=5, text=None)], [], 5)
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.lines = 0  # lines begun so far (a last line without a newline counts too)
        self._complete = 0  # newlines seen
        self._partial = bytearray()  # the unfinished last line
        self._skipping = False  # the unfinished last line is too long: dropping its bytes
        self._open = False  # a last line has begun (maybe with blanks only)

    @property
    def complete(self) -> int:
        """Lines read to their end so far."""
        return self._complete

    def feed(self, piece: bytes) -> list[Line]:
        """The lines `piece` completes, and an over-long line as soon as it is one."""
        out: list[Line] = []
        start = 0
        if self._open:
            nl = piece.find(b"\n")
            self._extend_partial(piece[: len(piece) if nl < 0 else nl], out)
            if nl < 0:
                self._count()
                return out
            self._finish_partial(out)
            start = nl + 1
        last = piece.rfind(b"\n", start)
        if last >= 0:
            number, at = self._complete, start
            for m in _CONTENT.finditer(piece, start, last):
                number += piece.count(b"\n", at, m.start())
                at = m.start()
                text = m.group()
                too_long = len(text) > self.max_line
                out.append(Line(number + 1, None if too_long else text.rstrip()))
            self._complete += piece.count(b"\n", start, last + 1)
            start = last + 1
        self._extend_partial(piece[start:], out)
        self._count()
        return out

    def end(self) -> list[Line]:
        """The last line, when the body does not end with a newline."""
        out: list[Line] = []
        if self._open:
            self._finish_partial(out)
        self._count()
        return out

    def _extend_partial(self, data: bytes, out: list[Line]) -> None:
        if data:
            self._open = True
        if self._skipping or not data:
            return
        if not self._partial:
            data = data.lstrip()  # a line's length counts from its first non-blank byte
        self._partial += data
        if len(self._partial) > self.max_line:
            self._partial.clear()
            self._skipping = True
            out.append(Line(self._complete + 1, None))

    def _finish_partial(self, out: list[Line]) -> None:
        text = bytes(self._partial).rstrip()
        if text and not self._skipping:
            out.append(Line(self._complete + 1, text))
        self._partial.clear()
        self._skipping = self._open = False
        self._complete += 1

    def _count(self) -> None:
        self.lines = self._complete + self._open


def text_record(line: str, service: str, severity: str = "", time_ns: int = 0) -> TextRecord:
    """A raw log line as a record of `service` (time: `time_ns`, or when it is received)."""
    record = LogRecord()
    record.body.string_value = line
    if severity:
        record.severity_text = severity
    if time_ns:
        record.time_unix_nano = time_ns
    return TextRecord(service, record)


def records_to_request(records: Iterable[TextRecord]) -> ExportLogsServiceRequest:
    """Group records by service into one export request (one ResourceLogs per service)."""
    request = ExportLogsServiceRequest()
    by_service: dict[str, Any] = {}
    for rec in records:
        scope_logs = by_service.get(rec.service)
        if scope_logs is None:
            rl = request.resource_logs.add()
            if rec.service != UNKNOWN_SERVICE:
                rl.resource.attributes.add(key="service.name").value.string_value = rec.service
            scope_logs = by_service[rec.service] = rl.scope_logs.add()
        scope_logs.log_records.append(rec.record)
    return request
