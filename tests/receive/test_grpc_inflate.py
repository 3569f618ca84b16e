"""gRPC requests are inflated by the Export handler, not by grpc-core (its per-message
decompression is off): compressed requests of every kind still arrive whole, the size limit
applies to what they inflate to, and the other services still read compressed messages."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, start_server
from via_otlp.errors import InputError
from via_otlp.receive import grpc_server
from via_otlp.receive.grpc_server import MessageTooLarge, inflate_message

MAX = 64 * 1024
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def request(records: int, body: str = "hello") -> bytes:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    sl = rl.scope_logs.add()
    for i in range(records):
        sl.log_records.add().body.string_value = f"{body} {i}"
    return req.SerializeToString()


def inflate(message: bytes, limit: int = MAX) -> bytes:
    return asyncio.run(inflate_message(message, limit))


def test_gzip_and_zlib_are_inflated_and_plain_bytes_pass() -> None:
    raw = request(50)
    assert inflate(gzip.compress(raw)) == raw
    assert inflate(zlib.compress(raw)) == raw  # gRPC's "deflate" is the zlib format
    assert inflate(raw) is raw


def test_a_protobuf_that_starts_like_a_zlib_header_is_not_compressed() -> None:
    # 0x78 0x9c is zlib's usual header and also a valid protobuf start (field 15, varint 156).
    raw = b"\x78\x9c\x01" + request(3)
    assert int.from_bytes(raw[:2]) % 31 == 0
    assert inflate(raw) == raw


def test_broken_gzip_is_input_error() -> None:
    whole = gzip.compress(request(50))
    with pytest.raises(InputError, match="gzip"):
        inflate(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="gzip"):
        inflate(b"\x1f\x8b not really gzip")


def test_the_limit_applies_to_inflated_bytes() -> None:
    raw = request(20)
    assert inflate(gzip.compress(raw), limit=len(raw)) == raw
    with pytest.raises(MessageTooLarge):
        inflate(gzip.compress(raw), limit=len(raw) - 1)


def test_past_the_inline_budget_the_rest_is_inflated_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = request(2000, body="some words that repeat")
    monkeypatch.setattr(grpc_server, "_INLINE_INFLATE", 1000)
    assert inflate(gzip.compress(raw), limit=len(raw)) == raw
    with pytest.raises(MessageTooLarge):
        inflate(gzip.compress(raw), limit=len(raw) - 1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # no registry and no correlation: the tests read only the intake's counters and health, and
    # the server starts without an embedded PostgreSQL (3 s of CPU less, on a loaded machine 15 s)
    server = start_server(
        tmp_path_factory.mktemp("inflate"),
        {
            "receive": {"grpc": {"max_recv_msg_size": MAX}},
            "registry": {"enabled": False},
            "correlate": {"enabled": False},
        },
    )
    yield server
    assert server.stop() == 0, server.log()


def export(srv: ServerProcess, body: bytes, compression: grpc.Compression) -> grpc.RpcError | None:
    with grpc.insecure_channel(srv.grpc_target, compression=compression) as channel:
        call = channel.unary_unary(
            EXPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        try:
            call(body, timeout=CLIENT_TIMEOUT)
        except grpc.RpcError as err:
            return err
    return None


def count(srv: ServerProcess, outcome: str) -> int:
    return int(srv.status()["intake"]["requests"].get("grpc", {}).get(outcome, 0))


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_compressed_requests_are_accepted_whole(
    srv: ServerProcess, compression: grpc.Compression
) -> None:
    before = srv.status()["intake"]["records"].get("grpc", {}).get("accepted", 0)
    assert export(srv, request(300), compression) is None
    after = srv.status()["intake"]["records"]["grpc"]["accepted"]
    assert after == before + 300


def test_a_request_too_large_once_inflated_is_counted_and_resource_exhausted(
    srv: ServerProcess,
) -> None:
    # Far past twice the limit once inflated (grpc-core's own limit, which refused such
    # requests uncounted while it inflated them), small on the wire.
    bomb = request(1, body="x" * (8 * MAX))
    before = count(srv, "too_large")
    err = export(srv, bomb, grpc.Compression.Gzip)
    assert isinstance(err, grpc.RpcError)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    assert "once inflated" in (err.details() or "")
    assert count(srv, "too_large") == before + 1


def test_health_check_over_a_gzip_channel(srv: ServerProcess) -> None:
    # gRPC sends a message uncompressed unless compressing makes it smaller: an unknown field
    # (15, 1,000 bytes; ignored by the parser) makes this one worth compressing.
    check = health_pb2.HealthCheckRequest(
        service="opentelemetry.proto.collector.logs.v1.LogsService"
    )
    padded = check.SerializeToString() + b"\x7a\xe8\x07" + b"a" * 1000
    with grpc.insecure_channel(srv.grpc_target, compression=grpc.Compression.Gzip) as channel:
        call = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda b: b,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        reply = call(padded, timeout=CLIENT_TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
