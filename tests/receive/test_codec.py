"""Decoding request bodies: OTLP/JSON specifics, invalid UTF-8, and fuzzing both decoders."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.errors import InputError
from via_otlp.receive.otlp_codec import (
    Encoding,
    Repairs,
    decode,
    decode_json,
    request_to_json_line,
)


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


# --- JSON oddities and deep nesting: repaired, never a 500 -------------------------------------


def _json_request(attr_key: str, body: str) -> bytes:
    value = '{"kvlistValue":{"values":[{"key":"' + attr_key + '","value":{}}]}}'
    record = (
        '{"body":{"stringValue":"' + body + '"},"attributes":[{"key":"' + attr_key + '","value":'
    )
    return (
        '{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + record + value + "}]}]}]}]}"
    ).encode()


def test_unpaired_surrogates_in_otlp_json_keys_and_values_are_replaced() -> None:
    message, repairs = decode(_json_request("k\\ud800", "\\udc00 x \\ud83d\\ude00"), Encoding.JSON)
    assert repairs & Repairs.INVALID_UTF8
    record = message.resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == "\ufffd x \U0001f600"  # the valid pair is kept
    assert record.attributes[0].key == "k\ufffd"
    assert record.attributes[0].value.kvlist_value.values[0].key == "k\ufffd"
    # an object key of the request itself (once a SystemError from upb, a 500 per request)
    message, repairs = decode(b'{"resourceLogs":[{"\\ud800":1}]}', Encoding.JSON)
    assert repairs and len(message.resource_logs) == 1


def test_clean_json_is_not_walked_or_flagged() -> None:
    _, repairs = decode(_json_request("k", "plain \\u00e9 \\\\ud800 literal"), Encoding.JSON)
    assert repairs == Repairs.NONE


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "a", '\\"', "\\\\"]), max_size=8
    )
)
def test_any_escape_mix_in_keys_decodes_or_is_input_error(parts: list[str]) -> None:
    text = "".join(parts)
    with contextlib.suppress(InputError):
        decode(_json_request(text, text), Encoding.JSON)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (the runtime cannot build deep ones)."""
    key, size = (field << 3) | 2, len(payload)
    out = bytearray()
    for value in (key, size):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def nested_body_request(levels: int, attribute_levels: int = 0) -> bytes:
    """A request whose body is a kvlist nested `levels` deep (and an attribute likewise)."""

    def value(n: int) -> bytes:
        inner = _ld(1, b"leaf")
        for _ in range(n):
            inner = _ld(6, _ld(1, _ld(1, b"k") + _ld(2, inner)))
        return inner

    record = _ld(5, value(levels)) + _ld(6, _ld(1, b"a") + _ld(2, value(attribute_levels)))
    record += _ld(3, b"WARN")  # severity_text, kept as is
    resource = _ld(1, _ld(1, _ld(1, b"service.name") + _ld(2, _ld(1, b"svc"))))
    return _ld(1, resource + _ld(2, _ld(2, record)))


def test_values_nested_past_the_parser_limit_are_cut_and_render_like_shallow_ones() -> None:
    from via_otlp.receive.normalise import MAX_RENDER_DEPTH, render_value

    shallow, repairs = decode(nested_body_request(MAX_RENDER_DEPTH + 5), Encoding.PROTOBUF)
    assert repairs == Repairs.NONE  # the parser takes it; the renderer cuts it
    expected = render_value(shallow.resource_logs[0].scope_logs[0].log_records[0].body)
    assert expected.count("…") == 1
    for levels in (40, 2_000):
        message, repairs = decode(nested_body_request(levels, levels), Encoding.PROTOBUF)
        assert repairs == Repairs.DEEP_VALUE
        record = message.resource_logs[0].scope_logs[0].log_records[0]
        assert render_value(record.body) == expected
        assert record.severity_text == "WARN" and record.attributes[0].key == "a"
        assert message.resource_logs[0].resource.attributes[0].value.string_value == "svc"


def test_deep_values_with_invalid_utf8_are_cut_and_repaired() -> None:
    raw = nested_body_request(50).replace(b"leaf", b"le\xffa")
    message, repairs = decode(raw.replace(b"svc", b"s\xfec"), Encoding.PROTOBUF)
    assert repairs == Repairs.DEEP_VALUE | Repairs.INVALID_UTF8
    assert message.resource_logs[0].resource.attributes[0].value.string_value == "s\ufffdc"


def test_truncated_deep_request_is_still_input_error() -> None:
    with pytest.raises(InputError):
        decode(nested_body_request(60)[:-7], Encoding.PROTOBUF)
