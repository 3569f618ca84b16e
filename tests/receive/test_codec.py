"""Decoding request bodies: OTLP/JSON specifics, invalid UTF-8, and fuzzing both decoders."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.errors import InputError
from via_otlp.receive.otlp_codec import Encoding, decode, decode_json, request_to_json_line


def sample_request() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    lr = rl.scope_logs.add().log_records.add()
    lr.body.string_value = "héllo"
    lr.trace_id = bytes(range(16))
    lr.span_id = bytes(range(8))
    lr.severity_number = 17  # type: ignore[assignment]
    lr.time_unix_nano = 1_700_000_000_123_456_789
    return req


def test_otlp_json_uses_hex_ids_and_round_trips() -> None:
    req = sample_request()
    line = request_to_json_line(req)
    assert '"traceId":"000102030405060708090a0b0c0d0e0f"' in line
    assert decode_json(line.encode()) == req


def test_otlp_json_accepts_integer_enums_string_int64_and_ignores_unknown_fields() -> None:
    doc = (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":13,'
        '"timeUnixNano":"1700000000000000000","body":{"stringValue":"x"},"futureField":1}]}],'
        '"newThing":{}}]}'
    )
    record = decode_json(doc.encode()).resource_logs[0].scope_logs[0].log_records[0]
    assert record.severity_number == 13 and record.time_unix_nano == 1_700_000_000 * 10**9


def test_bad_hex_id_names_the_field() -> None:
    with pytest.raises(
        InputError, match=r"resourceLogs\[0\].scopeLogs\[0\].logRecords\[0\].spanId"
    ):
        decode_json(b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"nothex"}]}]}]}')


def test_base64_ids_are_refused_rather_than_misread() -> None:
    b64 = base64.b64encode(bytes(range(16))).decode()
    with pytest.raises(InputError, match="traceId"):
        decode_json(
            (
                f'{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"traceId":"{b64}"}}]}}]}}]}}'
            ).encode()
        )


def test_invalid_utf8_in_protobuf_is_repaired() -> None:
    raw = sample_request().SerializeToString().replace("é".encode(), b"\xff\xfe")  # same length
    message, replaced = decode(raw, Encoding.PROTOBUF)
    assert replaced
    assert (
        message.resource_logs[0].scope_logs[0].log_records[0].body.string_value
        == "h\ufffd\ufffdllo"
    )
    assert message.resource_logs[0].scope_logs[0].log_records[0].trace_id == bytes(range(16))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_protobuf_decoder_never_raises_anything_but_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):
        decode(data, Encoding.PROTOBUF)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_json_decoder_never_raises_anything_but_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):
        decode(data, Encoding.JSON)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_requests_never_crash_the_decoder(data: st.DataObject) -> None:
    raw = bytearray(sample_request().SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(InputError):
        decode(bytes(raw), Encoding.PROTOBUF)
