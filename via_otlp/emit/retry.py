"""Which export failures to retry, and when: pure functions, following the OTLP specification.

- OTLP/gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are
  retryable; RESOURCE_EXHAUSTED only when the server sends RetryInfo (it can recover); every
  other code is permanent. The server's delay is a ``google.rpc.RetryInfo`` in the status
  details (``grpc-status-details-bin``); opentelemetry-python also reads the
  ``google.rpc.retryinfo-bin`` trailer, so both are honoured.
- OTLP/HTTP: 429, 502, 503 and 504 are retryable, honouring ``Retry-After`` (seconds or an
  HTTP date); every other 4xx/5xx is permanent.
- Otherwise: exponential backoff with jitter, as the Collector's ``retry_on_failure`` does
  (`via_otlp.backoff`, shared with every other retry loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from via_otlp.backoff import parse_retry_after
from via_otlp.errors import UpstreamError

RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


class ExportError(UpstreamError):
    """A downstream export failed; `retry_after` is the server's requested delay, if it gave one."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.retry_after = retry_after


def classify_grpc(
    code: grpc.StatusCode, details: str, metadata: Iterable[tuple[str, str | bytes]]
) -> ExportError:
    """An `ExportError` for a failed gRPC export, retryable by the OTLP rules."""
    delay = grpc_retry_delay(metadata)
    retryable = code in RETRYABLE_GRPC_CODES or (
        code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
    )
    return ExportError(f"gRPC {code.name}: {details}", retryable=retryable, retry_after=delay)


def grpc_retry_delay(metadata: Iterable[tuple[str, str | bytes]]) -> float | None:
    """The RetryInfo delay in seconds from trailing metadata, or None when there is none."""
    for key, value in metadata:
        if not isinstance(value, bytes):
            continue
        if key == _STATUS_DETAILS_KEY:
            delay = _delay_from_status(value)
        elif key == _RETRY_INFO_KEY:
            delay = _delay_from_retry_info(value)
        else:
            continue
        if delay is not None:
            return delay
    return None


def classify_http(status: int, retry_after: str | None, message: str) -> ExportError:
    """An `ExportError` for a non-2xx OTLP/HTTP answer, retryable by the OTLP rules."""
    retryable = status in RETRYABLE_HTTP_STATUSES
    delay = parse_retry_after(retry_after) if retryable else None
    return ExportError(f"HTTP {status}: {message}", retryable=retryable, retry_after=delay)


def _delay_from_status(raw: bytes) -> float | None:
    status = status_pb2.Status()
    try:
        status.ParseFromString(raw)
    except DecodeError:
        return None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            return _duration(info)
    return None


def _delay_from_retry_info(raw: bytes) -> float | None:
    info = error_details_pb2.RetryInfo()
    try:
        info.ParseFromString(raw)
    except DecodeError:
        return None
    return _duration(info)


def _duration(info: error_details_pb2.RetryInfo) -> float | None:
    if not info.HasField("retry_delay"):
        return None
    seconds = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
