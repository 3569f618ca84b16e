"""The direct OTLP/JSON → LogBatch path gives exactly the batch of the protobuf path."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from via_otlp.errors import InputError
from via_otlp.model import TEMPLATE_ATTRIBUTE, VIA_SCOPE_NAME
from via_otlp.receive import otlp_json
from via_otlp.receive.normalise import NormaliseOptions, Normaliser
from via_otlp.receive.otlp_codec import Encoding, decode, decode_json, request_to_json_line
from via_otlp.receive.otlp_json import batch_from_json, batches_from_json

NOW = 1_700_000_000_000_000_000
KEYS = ["service.name", "service.namespace", "deployment.environment.name", "user.id",
        "enduser.id", "client.address", TEMPLATE_ATTRIBUTE, "http.status", "k"]  # fmt: skip

text = st.text(max_size=12)
scalars = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), text),
    st.builds(lambda i: AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda d: AnyValue(double_value=d), st.floats(allow_nan=True)),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=6)),
    st.just(AnyValue()),
)


def _array(values: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.values.extend(values)
    return v


def _kvlist(items: list[tuple[str, AnyValue]]) -> AnyValue:
    v = AnyValue()
    for k, x in items:
        v.kvlist_value.values.add(key=k).value.CopyFrom(x)
    return v


any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(_array),
        st.lists(st.tuples(st.sampled_from([*KEYS, "a", "b"]), inner), max_size=3).map(_kvlist),
    ),
    max_leaves=8,
)
attributes = st.lists(st.tuples(st.sampled_from(KEYS), any_values), max_size=4)
times = st.one_of(st.just(0), st.integers(1, 2**64 - 1), st.integers(NOW - 10**12, NOW + 10**12))


@st.composite
def requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        rl = req.resource_logs.add()
        for k, v in draw(attributes):
            rl.resource.attributes.add(key=k).value.CopyFrom(v)
        for _ in range(draw(st.integers(0, 2))):
            sl = rl.scope_logs.add()
            sl.scope.name = draw(st.sampled_from(["", "app", VIA_SCOPE_NAME]))
            for _ in range(draw(st.integers(0, 4))):
                lr = sl.log_records.add()
                if draw(st.booleans()):
                    lr.body.CopyFrom(draw(any_values))
                lr.severity_text = draw(st.sampled_from(["", "info", "Warning", "crit", "odd"]))
                lr.severity_number = draw(st.integers(0, 24))  # type: ignore[assignment]
                lr.time_unix_nano = draw(times)
                lr.observed_time_unix_nano = draw(times)
                lr.trace_id = draw(st.sampled_from([b"", bytes(range(16))]))
                lr.span_id = draw(st.sampled_from([b"", bytes(range(8))]))
                lr.event_name = draw(st.sampled_from(["", "login"]))
                for k, v in draw(attributes):
                    lr.attributes.add(key=k).value.CopyFrom(v)
    return req


def both(line: str, sample_every: int = 3) -> tuple[object, object, int, int]:
    opts = NormaliseOptions(sample_every=sample_every)
    fast, slow = Normaliser(opts), Normaliser(opts)
    got = batch_from_json(line, fast, NOW)
    want = slow.from_request(decode_json(line.encode()), NOW)
    return got, want, fast._sample_countdown, slow._sample_countdown


def both_cut(line: str, max_records: int, countdown: int) -> tuple[object, object, int, int]:
    opts = NormaliseOptions(sample_every=3)
    fast, slow = Normaliser(opts), Normaliser(opts)
    fast._sample_countdown = slow._sample_countdown = countdown
    data = line.encode()
    got, _ = batches_from_json(data, fast, NOW, max_records)
    want = list(slow.batches(decode_json(data), NOW, data, max_records))
    return got, want, fast._sample_countdown, slow._sample_countdown


def snake_line(req: ExportLogsServiceRequest) -> str:
    doc = json_format.MessageToDict(req, preserving_proto_field_name=True)
    for rl in doc.get("resource_logs", []):
        for sl in rl.get("scope_logs", []):
            for lr in sl.get("log_records", []):
                for key in ("trace_id", "span_id"):
                    if key in lr:
                        import base64

                        lr[key] = base64.b64decode(lr[key]).hex()
    return json.dumps(doc)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(requests(), st.booleans(), st.sampled_from([0, 1, 3]), st.integers(0, 4))
def test_same_batches_as_the_protobuf_path(
    req: ExportLogsServiceRequest, snake: bool, max_records: int, countdown: int
) -> None:
    """camelCase lines take the typed walk, proto field names the protobuf path; batches are
    cut at the same records, schema samples taken at the same ones."""
    line = snake_line(req) if snake else request_to_json_line(req)
    got, want, c1, c2 = both_cut(line, max_records, countdown)
    assert got == want
    assert c1 == c2  # the schema-sampling countdown carries on the same


def test_the_typed_walk_decodes_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attributes without a wanted key are never decoded, except for a schema sample."""
    decoded: list[bytes] = []
    attrs: list[bytes] = []

    def spy(real, into):
        def decode(raw):
            into.append(bytes(raw))
            return real(raw)

        return decode

    monkeypatch.setattr(otlp_json, "_DECODE_ANY", spy(otlp_json._DECODE_ANY, decoded))
    monkeypatch.setattr(otlp_json, "_DECODE_ATTRIBUTES", spy(otlp_json._DECODE_ATTRIBUTES, attrs))
    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    for i in range(10):
        lr = sl.log_records.add()
        lr.body.string_value = f"line {i}"
        lr.attributes.add(key="thread.id").value.int_value = i
    lr.attributes.add(key="user.id").value.string_value = "u9"
    fast = Normaliser(NormaliseOptions(sample_every=1000))
    batch, _ = batch_from_json(request_to_json_line(req), fast, NOW)
    assert batch.unique_id[-1] == "u9"
    assert len(attrs) == 2  # the first record (sampled: the countdown starts at 0) and the user's
    # of the attribute values, only the user id and the sampled record's (for its types);
    # string bodies are read with the request
    assert sorted(decoded) == [b'{"intValue":"0"}', b'{"stringValue":"u9"}']


def test_integers_as_numbers_and_uppercase_hex_ids() -> None:
    doc = {"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": NOW - 5, "severityNumber": 17,
                                       "traceId": "0A" * 16, "body": {"intValue": 7},
                                       "attributes": [{"key": "user.id", "value": {"intValue": "42"}}]}]}]}]}  # fmt: skip
    got, want, _, _ = both(json.dumps(doc))
    assert got == want
    batch, _ = got  # type: ignore[misc]
    assert batch.time_ns == [NOW - 5] and batch.trace_id == ["0a" * 16]
    assert batch.body == ["7"] and batch.unique_id == ["42"] and batch.severity == ["ERROR"]


@pytest.mark.parametrize("record", [
    {"severityNumber": "SEVERITY_NUMBER_WARN", "body": {"stringValue": "x"}},  # enum by name
    {"body": {"bytesValue": "AAE="}},  # bytes: base64 variants are json_format's call
    {"body": {"doubleValue": "Infinity"}},
    {"body": {"stringValue": "x", "intValue": 3}},  # two kinds
    {"body": {"stringValue": "x", "kvlistValue": {"values": []}}},
    {"body": {"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": "NaN"}}]}}},
    {"body": {"stringValue": None, "intValue": "5"}},  # null: not set
    {"body": {"stringValue": "x"}, "flags": 1, "droppedAttributesCount": 2},
    {"body": {"stringValue": "x"}, "someFutureField": {"a": 1}},  # unknown: ignored
    {"time_unix_nano": "5", "body": {"string_value": "snake"}},
])  # fmt: skip
def test_odd_shapes_give_the_protobuf_result(record: dict) -> None:
    line = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]})
    try:
        want = Normaliser().from_request(decode_json(line.encode()), NOW)
    except InputError as exc:
        with pytest.raises(InputError, match=str(exc)[:20]):
            batch_from_json(line, Normaliser(), NOW)
        return
    assert batch_from_json(line, Normaliser(), NOW) == want


@pytest.mark.parametrize("line", ["not json", "[1]", '{"resourceLogs": 5}',
                                  '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}'])  # fmt: skip
def test_invalid_requests_raise_the_protobuf_paths_error(line: str) -> None:
    with pytest.raises(InputError) as slow:
        decode_json(line.encode())
    with pytest.raises(InputError) as fast:
        batch_from_json(line, Normaliser(), NOW)
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize("d", [math.nan, math.inf, -math.inf, 0.5])
def test_non_finite_doubles_render_like_the_protobuf_path(d: float) -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.body.CopyFrom(
        _kvlist([("a", AnyValue(double_value=d)), ("b", _array([AnyValue(double_value=d)]))])
    )
    lr.attributes.add(key="user.id").value.double_value = d
    got, want, _, _ = both(request_to_json_line(req))
    assert got == want
    assert got[0].body[0].startswith('{"a":')  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [b'"ok"', b'"caf\xe9"', b'"\\ud800 lone"', b'"\\ud83d\\ude00 pair"'],
)
def test_repairs_are_reported_as_the_protobuf_path_reports_them(body: bytes) -> None:
    data = (b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":' + body
            + b'},"attributes":[{"key":"k","value":{"stringValue":' + body + b"}}]}]}]}]}")  # fmt: skip
    got, repairs = batches_from_json(data, Normaliser(), NOW)
    message, want_repairs = decode(data, Encoding.JSON)
    assert repairs == want_repairs
    assert got == list(Normaliser().batches(message, NOW, data))
