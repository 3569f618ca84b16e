"""Bytes ↔ OTLP logs messages, for both wire encodings: protobuf and OTLP/JSON. Pure.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and
span ids are hex strings, not base64. Unknown fields are ignored, as the specification asks.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from via_otlp.errors import InputError
from via_otlp.receive import jsonrepair
from via_otlp.receive.lenient import parse_lenient
from via_otlp.receive.normalise import MAX_RENDER_DEPTH
from via_otlp.receive.wire import cut_deep_values


class Encoding(Enum):
    """The two OTLP/HTTP payload encodings and their content types."""

    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


class Repairs(enum.IntFlag):
    """What decoding had to repair in a request that is otherwise valid (falsy: nothing)."""

    NONE = 0
    # Bytes that are not UTF-8 (or, in OTLP/JSON, an unpaired surrogate): replaced with U+FFFD.
    INVALID_UTF8 = enum.auto()
    # protobuf: AnyValues nested past the parser's depth limit, cut to "…" (as rendered anyway).
    DEEP_VALUE = enum.auto()


def decode_protobuf(data: bytes) -> tuple[ExportLogsServiceRequest, Repairs]:
    """Parse a protobuf request; returns it and what had to be repaired (see `Repairs`).

    The parser stops at the first problem it meets, so each repair is tried once, in the order
    the problems show up.
    """
    repairs = Repairs.NONE
    parse: Callable[[bytes], ExportLogsServiceRequest] = ExportLogsServiceRequest.FromString
    while True:
        try:
            return parse(data), repairs
        except DecodeError as exc:
            problem = str(exc)
        if "MaxDepth" in problem and not repairs & Repairs.DEEP_VALUE:
            try:
                data = cut_deep_values(data, MAX_RENDER_DEPTH)
            except DecodeError as exc:
                problem = str(exc)
            else:
                repairs |= Repairs.DEEP_VALUE
                continue
        elif "UTF-8" in problem and not repairs & Repairs.INVALID_UTF8:
            parse = parse_lenient
            repairs |= Repairs.INVALID_UTF8
            continue
        raise InputError(f"request body is not a valid ExportLogsServiceRequest: {problem}")


def _hex_ids_to_base64(record: dict[str, Any], where: str) -> None:
    for key in ("traceId", "spanId", "trace_id", "span_id"):
        value = record.get(key)
        if not value:
            continue
        if not isinstance(value, str):
            raise InputError(f"{where}.{key}: must be a hex string, got {value!r}")
        try:
            record[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        except ValueError:
            raise InputError(f"{where}.{key}: {value!r} is not hex") from None


def _list(parent: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = parent.get(camel, parent.get(snake, []))
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where}.{camel}: must be an array")
    return value


def decode_json(data: bytes) -> ExportLogsServiceRequest:
    """Parse an OTLP/JSON request (hex ids, integer or named enums, unknown fields ignored)."""
    return _decode_json(data)[0]


def _decode_json(data: bytes) -> tuple[ExportLogsServiceRequest, Repairs]:
    """`decode_json`, and whether invalid UTF-8 or unpaired surrogates had to be replaced."""
    try:
        doc, replaced = jsonrepair.loads(data)
        repairs = Repairs.INVALID_UTF8 if replaced else Repairs.NONE
    except (ValueError, RecursionError) as exc:
        raise InputError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError("request body must be a JSON object with resourceLogs")
    for i, rl in enumerate(_list(doc, "resourceLogs", "resource_logs", "")):
        where = f"resourceLogs[{i}]"
        if not isinstance(rl, dict):
            raise InputError(f"{where}: must be an object")
        for j, sl in enumerate(_list(rl, "scopeLogs", "scope_logs", where)):
            swhere = f"{where}.scopeLogs[{j}]"
            if not isinstance(sl, dict):
                raise InputError(f"{swhere}: must be an object")
            for k, lr in enumerate(_list(sl, "logRecords", "log_records", swhere)):
                if not isinstance(lr, dict):
                    raise InputError(f"{swhere}.logRecords[{k}]: must be an object")
                _hex_ids_to_base64(lr, f"{swhere}.logRecords[{k}]")
    try:
        message = json_format.ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    # SystemError: upb reports some malformed input that way; it is the input's fault, not ours.
    except (json_format.ParseError, RecursionError, ValueError, TypeError, SystemError) as exc:
        raise InputError(f"request body is not a valid OTLP/JSON logs request: {exc}") from None
    return message, repairs


def decode(data: bytes, encoding: Encoding) -> tuple[ExportLogsServiceRequest, Repairs]:
    """Decode a request body; also says what had to be repaired (`Repairs`, falsy if nothing)."""
    if encoding is Encoding.PROTOBUF:
        return decode_protobuf(data)
    return _decode_json(data)


def encode_message(message: Message, encoding: Encoding) -> bytes:
    """A response or status message in the request's encoding."""
    if encoding is Encoding.PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def export_response(rejected: int = 0, error_message: str = "") -> ExportLogsServiceResponse:
    """Success, or partial success when some records were rejected."""
    response = ExportLogsServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = error_message
    return response


def status_message(code: int, message: str) -> status_pb2.Status:
    """The google.rpc.Status an OTLP/HTTP error response carries."""
    return status_pb2.Status(code=code, message=message)


def request_to_json_line(request: ExportLogsServiceRequest) -> str:
    """One request as an OTLP/JSON line (hex ids), as the Collector's file exporter writes."""
    doc = json_format.MessageToDict(request)
    for rl in doc.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in lr:
                        lr[key] = base64.b64decode(lr[key]).hex()
    return json.dumps(doc, separators=(",", ":"))


__all__ = [
    "Encoding",
    "Repairs",
    "decode",
    "decode_json",
    "decode_protobuf",
    "encode_message",
    "export_response",
    "request_to_json_line",
    "status_message",
]
