"""Classification of export failures and the backoff schedule."""

from __future__ import annotations

import random

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from via_otlp.backoff import backoff_delay, parse_retry_after
from via_otlp.emit.config import RetryConfig
from via_otlp.emit.retry import classify_grpc, classify_http, grpc_retry_delay


def _status_details(delay_s: int, nanos: int = 0) -> bytes:
    status = status_pb2.Status(code=14, message="busy")
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=delay_s, nanos=nanos)
    )
    status.details.add().Pack(info)
    return status.SerializeToString()


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.CANCELLED, True),
        (grpc.StatusCode.ABORTED, True),
        (grpc.StatusCode.OUT_OF_RANGE, True),
        (grpc.StatusCode.DATA_LOSS, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.UNAUTHENTICATED, False),
        (grpc.StatusCode.PERMISSION_DENIED, False),
        (grpc.StatusCode.UNIMPLEMENTED, False),
        (grpc.StatusCode.INTERNAL, False),
    ],
)
def test_grpc_codes(code: grpc.StatusCode, retryable: bool) -> None:
    assert classify_grpc(code, "x", ()).retryable is retryable


def test_resource_exhausted_with_retry_info_is_retryable() -> None:
    error = classify_grpc(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        [("grpc-status-details-bin", _status_details(2, 500_000_000))],
    )
    assert error.retryable
    assert error.retry_after == 2.5


def test_retry_info_trailer_as_read_by_opentelemetry_python() -> None:
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))
    assert grpc_retry_delay([("google.rpc.retryinfo-bin", info.SerializeToString())]) == 3.0


def test_garbage_status_details_are_ignored() -> None:
    assert grpc_retry_delay([("grpc-status-details-bin", b"\xff\xff\xff"), ("other", "x")]) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (429, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (404, False),
        (413, False),
        (500, False),
    ],
)
def test_http_statuses(status: int, retryable: bool) -> None:
    assert classify_http(status, "7", "m").retryable is retryable


def test_http_retry_after_only_on_retryable() -> None:
    assert classify_http(503, "7", "m").retry_after == 7.0
    assert classify_http(400, "7", "m").retry_after is None
    assert classify_http(503, None, "m").retry_after is None


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_is_jittered() -> None:
    config = RetryConfig(
        initial_interval=1.0, multiplier=2.0, max_interval=8.0, randomization_factor=0.5
    )
    rng = random.Random(7)
    delays = {round(backoff_delay(0, config, rng), 6) for _ in range(20)}
    assert len(delays) > 1


@given(
    attempt=st.integers(0, 10_000),
    initial=st.floats(0.001, 10),
    multiplier=st.floats(1.0, 10.0),
    factor=st.floats(0.0, 0.99),
    seed=st.integers(0, 1000),
)
def test_backoff_stays_within_bounds(attempt, initial, multiplier, factor, seed) -> None:
    config = RetryConfig(
        initial_interval=initial,
        max_interval=initial * 20,
        multiplier=multiplier,
        randomization_factor=factor,
    )
    delay = backoff_delay(attempt, config, random.Random(seed))
    assert initial * (1 - factor) - 1e-9 <= delay <= config.max_interval * (1 + factor) + 1e-9
