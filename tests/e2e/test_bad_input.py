"""Bad input gets the right OTLP answer and a counter, never a crash; the server keeps serving.

A module-scoped server takes every kind of bad request; it must stay SERVING and stop cleanly
(the fixture checks exit code 0). Under xdist's worksteal a module's tests may run on different
workers, each with its own server, in any share: so each test asserts the counters its own
requests moved, and starts from a drained queue (records an earlier test left in flight are
not counted as its own).
"""

from __future__ import annotations

import gzip
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, http_post, start_server

pytestmark = pytest.mark.slow

MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # no registry and no correlation: bad input never reaches them, and the server starts
    # without an embedded PostgreSQL
    server = start_server(
        tmp_path_factory.mktemp("bad"),
        {
            "receive": {
                "http": {"max_request_body_size": MAX_BODY},
                "grpc": {"max_recv_msg_size": MAX_BODY},
            },
            "registry": {"enabled": False},
            "correlate": {"enabled": False},
        },
    )
    yield server
    assert server.stop() == 0, server.log()


def post(
    srv: ServerProcess, body: bytes, content_type: str, path: str = "/v1/logs", **headers: str
) -> tuple[int, bytes]:
    return http_post(f"{srv.http_url}{path}", body, content_type, **headers)


def grpc_export(srv: ServerProcess, body: bytes) -> grpc.RpcError | bytes:
    with grpc.insecure_channel(
        srv.grpc_target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            return call(body, timeout=CLIENT_TIMEOUT)
        except grpc.RpcError as err:
            return err


def request_with(
    body: str = "hello", service: str | None = "svc", **record: int
) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    if service is not None:
        rl.resource.attributes.add(key="service.name").value.string_value = service
    lr = rl.scope_logs.add().log_records.add()
    lr.body.string_value = body
    for key, value in record.items():
        setattr(lr, key, value)
    return req


def settled(srv: ServerProcess) -> dict[str, Any]:
    """The intake counters once every record accepted so far has been consumed."""
    return srv.wait_for(
        lambda s: s["intake"]["records_consumed"] == s["intake"]["records_accepted"],
        what="the records accepted so far to be consumed",
    )["intake"]


def requests(srv: ServerProcess, transport: str, outcome: str) -> int:
    """How many requests over `transport` ("http", "grpc") the server counted with `outcome`."""
    return int(srv.status()["intake"]["requests"].get(transport, {}).get(outcome, 0))


def test_truncated_protobuf_is_400_with_a_status_over_http(srv: ServerProcess) -> None:
    before = requests(srv, "http", "invalid")
    body = request_with().SerializeToString()[:-3]
    code, out = post(srv, body, "application/x-protobuf")
    assert code == 400
    status = status_pb2.Status.FromString(out)
    assert status.code == 3 and "not a valid ExportLogsServiceRequest" in status.message
    assert requests(srv, "http", "invalid") == before + 1


def test_truncated_protobuf_is_invalid_argument_over_grpc(srv: ServerProcess) -> None:
    before = requests(srv, "grpc", "invalid")
    err = grpc_export(srv, request_with().SerializeToString()[:-3])
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert requests(srv, "grpc", "invalid") == before + 1


def test_garbage_json_is_400(srv: ServerProcess) -> None:
    before = requests(srv, "http", "invalid")
    code, out = post(srv, b'{"resourceLogs": [', "application/json")
    assert code == 400 and "not valid JSON" in json.loads(out)["message"]
    code, out = post(
        srv,
        b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}',
        "application/json",
    )
    assert code == 400 and "traceId" in json.loads(out)["message"]
    assert requests(srv, "http", "invalid") == before + 2


def test_wrong_content_type_is_415(srv: ServerProcess) -> None:
    before = requests(srv, "http", "unsupported_media_type")
    code, out = post(srv, b"hello", "text/plain")
    assert code == 415 and "application/x-protobuf" in json.loads(out)["message"]
    code, _ = post(srv, b"x", "application/json", **{"Content-Encoding": "br"})
    assert code == 415
    assert requests(srv, "http", "unsupported_media_type") == before + 2


def test_oversize_body_is_413_and_resource_exhausted(srv: ServerProcess) -> None:
    before = requests(srv, "http", "too_large"), requests(srv, "grpc", "too_large")
    big = request_with(body="x" * (MAX_BODY + 10)).SerializeToString()
    code, _ = post(srv, big, "application/x-protobuf")
    assert code == 413
    err = grpc_export(srv, big)
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # a gzip bomb: small on the wire, too large once inflated
    code, _ = post(
        srv, gzip.compress(big), "application/x-protobuf", **{"Content-Encoding": "gzip"}
    )
    assert code == 413
    after = requests(srv, "http", "too_large"), requests(srv, "grpc", "too_large")
    assert after == (before[0] + 2, before[1] + 1)


def test_broken_gzip_is_400(srv: ServerProcess) -> None:
    before = requests(srv, "http", "invalid")
    code, _ = post(
        srv, b"\x1f\x8b not really gzip", "application/x-protobuf", **{"Content-Encoding": "gzip"}
    )
    assert code == 400
    assert requests(srv, "http", "invalid") == before + 1


def test_invalid_utf8_is_replaced_and_accepted(srv: ServerProcess) -> None:
    before = settled(srv)
    body = (
        request_with(body="caf\u00e9 ok")
        .SerializeToString()
        .replace("\u00e9".encode(), b"\xff\xfe")
    )
    assert post(srv, body, "application/x-protobuf")[0] == 200
    assert not isinstance(grpc_export(srv, body), grpc.RpcError)
    code, _ = post(
        srv,
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"bad \xff byte"}}]}]}]}',
        "application/json",
    )
    assert code == 200
    status = srv.wait_for(
        lambda s: s["intake"]["records_consumed"] == before["records_consumed"] + 3
    )
    assert status["intake"]["invalid_utf8_requests"] == before["invalid_utf8_requests"] + 3


def nested_kvlist(depth: int) -> ExportLogsServiceRequest:
    req = request_with()
    value = req.resource_logs[0].scope_logs[0].log_records[0].body
    for i in range(depth):
        value = value.kvlist_value.values.add(key=f"k{i}").value
    value.string_value = "leaf"
    return req


def test_deeply_nested_body(srv: ServerProcess) -> None:
    from tests.receive.test_codec import nested_body_request

    before = settled(srv)
    # within protobuf's nesting limit (100 messages, 3 per kvlist level): accepted, rendered cut at depth 16
    assert post(srv, nested_kvlist(28).SerializeToString(), "application/x-protobuf")[0] == 200
    # beyond it: cut to "…" at the same depth, and accepted too (content never fails a request)
    deep = nested_body_request(5000)
    assert post(srv, deep, "application/x-protobuf")[0] == 200
    assert not isinstance(grpc_export(srv, deep), grpc.RpcError)
    after = srv.wait_for(
        lambda s: s["intake"]["records_consumed"] == before["records_consumed"] + 3
    )["intake"]
    assert after["deep_values_cut_requests"] == before["deep_values_cut_requests"] + 2
    # JSON nesting beyond what any JSON decoder follows: refused as malformed, not a crash
    deep_json = (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":'
        + '{"kvlistValue":{"values":[{"key":"k","value":' * 3000
        + '"x"'
        + "}]}}" * 3000
        + "}]}]}]}"
    )
    code, _ = post(srv, deep_json.encode(), "application/json")
    assert code == 400


def test_unpaired_surrogates_are_repaired_not_a_500(srv: ServerProcess) -> None:
    before = settled(srv)
    key = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\\udc00"},"attributes":[{"key":"k\\ud800","value":{"stringValue":"v"}}]}]}]}]}'
    for body in (key, '{"resourceLogs":[{"\\ud800":1}]}'):
        code, out = post(srv, body.encode(), "application/json")
        assert code == 200, out
    code, out = post(
        srv,
        b'{"body": "x\\ud800", "attributes": {"\\udc00": 1}}\n',
        "application/x-ndjson",
        path="/v1/ingest",
    )
    assert code == 200 and json.loads(out)["accepted"] == 1
    after = srv.wait_for(
        lambda s: s["intake"]["records_consumed"] == before["records_consumed"] + 2
    )["intake"]
    assert after["invalid_utf8_requests"] >= before["invalid_utf8_requests"] + 2
    assert "Traceback" not in srv.log()


def test_zero_and_far_future_timestamps_and_missing_resource(srv: ServerProcess) -> None:
    before = settled(srv)
    far_future = time.time_ns() + 10 * 365 * 86400 * 10**9
    for req in (
        request_with(time_unix_nano=0, observed_time_unix_nano=0),
        request_with(time_unix_nano=far_future),
        request_with(service=None),
    ):
        assert post(srv, req.SerializeToString(), "application/x-protobuf")[0] == 200
    empty = ExportLogsServiceRequest()
    empty.resource_logs.add().scope_logs.add().log_records.add()
    assert post(srv, empty.SerializeToString(), "application/x-protobuf")[0] == 200
    after = srv.wait_for(
        lambda s: s["intake"]["records_consumed"] == before["records_consumed"] + 4
    )["intake"]
    assert after["records_missing_timestamp"] >= before["records_missing_timestamp"] + 2
    assert after["records_future_clamped"] == before["records_future_clamped"] + 1
    assert after["records_missing_service_name"] == before["records_missing_service_name"] + 2


def test_ndjson_bad_lines_are_reported_and_good_ones_kept(srv: ServerProcess) -> None:
    lines = b'{"body": "ok 1", "service": "n"}\nnot json\n{"time": "yesterday", "body": "x"}\n{"nobody": 1}\n{"body": "ok 2", "trace_id": "zz"}\n{"body": "ok 3"}\n'
    code, out = post(srv, lines, "application/x-ndjson", path="/v1/ingest")
    result = json.loads(out)
    assert code == 200 and result["accepted"] == 2 and result["rejected"] == 4
    assert [e["line"] for e in result["errors"]] == [2, 3, 4, 5]


def test_still_serving_after_all_of_it(srv: ServerProcess) -> None:
    """Whatever this worker's share of the tests above did to it, the server still serves.
    (The counters each bad request must move are asserted by the test that sent it.)"""
    assert srv.status()["state"] == "serving"
    with urllib.request.urlopen(f"{srv.http_url}/healthz", timeout=CLIENT_TIMEOUT) as resp:
        assert resp.status == 200


def test_unused_path_is_404(srv: ServerProcess) -> None:
    assert post(srv, b"", "application/json", path="/v1/traces")[0] == 404


def _unused(_: Path) -> None:
    pass


def test_port_in_use_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    import socket
    import subprocess

    from tests.conftest import BIN, free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "busy.json5"
        config.write_text(
            f'{{receive: {{grpc: {{endpoint: "127.0.0.1:{port}"}}, http: {{endpoint: "127.0.0.1:{free_port()}"}}}},'
            f' control: {{endpoint: "127.0.0.1:{free_port()}"}}, registry: {{enabled: false}},'
            f' state: {{data_dir: "{tmp_path}/data"}}}}'
        )
        out = subprocess.run(
            [str(BIN / "via-otlp"), "serve", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("via-otlp: cannot listen for OTLP/gRPC on 127.0.0.1:")
        and "Traceback" not in out.stderr
    )


def test_truncated_gzip_stream_and_impossible_times_on_ndjson(srv: ServerProcess) -> None:
    whole = gzip.compress(b'{"body": "a"}\n' * 100)
    code, body = post(
        srv,
        whole[: len(whole) // 2],
        "application/x-ndjson",
        path="/v1/ingest",
        **{"Content-Encoding": "gzip"},
    )
    assert code == 400 and "truncated" in json.loads(body)["error"]
    lines = b'{"body": "x", "time": 1e30}\n{"body": "y", "time": "0001-01-01T00:00:00Z"}\n{"body": "z"}\n'
    code, body = post(srv, lines, "application/x-ndjson", path="/v1/ingest")
    result = json.loads(body)
    assert code == 200 and result["accepted"] == 1 and result["rejected"] == 2
    assert "outside what OTLP can carry" in result["errors"][0]["error"]


def test_a_start_that_fails_keeps_the_state_file(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import BIN, free_port

    data = tmp_path / "data"
    data.mkdir()
    state = data / "state.json"
    state.write_text('{"version": 99, "engine": {}}')
    config = tmp_path / "via.json5"
    config.write_text(
        f'{{receive: {{grpc: {{endpoint: "127.0.0.1:{free_port()}"}}, http: {{endpoint: "127.0.0.1:{free_port()}"}}}},'
        f" control: {{enabled: false}}, registry: {{enabled: false}}, correlate: {{enabled: false}},"
        f' state: {{data_dir: "{data}"}}}}'
    )
    out = subprocess.run(
        [str(BIN / "via-otlp"), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "version 99" in out.stderr.strip().splitlines()[-1]
    assert (
        state.read_text() == '{"version": 99, "engine": {}}'
    )  # untouched: nothing learned is lost
