"""Normalisation of OTLP requests into LogBatches: unit and property tests (pure, no sockets)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs

from via_otlp.model import UNKNOWN_SERVICE
from via_otlp.receive import normalise
from via_otlp.receive.normalise import (
    MAX_RENDER_DEPTH,
    VIA_SCOPE_NAME,
    NormaliseOptions,
    Normaliser,
    render_value,
    severity_of,
)

NOW = 1_800_000_000 * 10**9


@pytest.fixture(autouse=True)
def _python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are of the pure-Python path (its lookups, caches and loop); the compiled
    walker, where built, is compared against it in test_wirewalk.py."""
    monkeypatch.setattr(normalise, "_walk", None)
    monkeypatch.setattr(normalise, "_types_in_c", None)


def one_record(service: str | None = "svc", **fields: object) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    if service is not None:
        rl.resource.attributes.add(key="service.name").value.string_value = service
    lr = rl.scope_logs.add().log_records.add()
    lr.body.string_value = "hello"
    for key, value in fields.items():
        setattr(lr, key, value)
    return req


def test_severity_ranges_and_words() -> None:
    expected = (
        ["TRACE"] * 4 + ["DEBUG"] * 4 + ["INFO"] * 4 + ["WARN"] * 4 + ["ERROR"] * 4 + ["FATAL"] * 4
    )
    assert [severity_of("", n) for n in range(1, 25)] == expected
    assert severity_of("", 0) == "UNSPECIFIED"
    assert severity_of("Warning", 9) == "WARN"  # the text wins when it is a known word
    assert severity_of("verbose", 5) == "DEBUG"  # unknown word: the number decides
    assert severity_of("verbose", 0) == "VERBOSE"
    assert severity_of("", 99) == "UNSPECIFIED"


def test_body_of_every_kind_renders_deterministically() -> None:
    v = AnyValue()
    v.kvlist_value.values.add(key="b").value.int_value = 2
    v.kvlist_value.values.add(key="a").value.string_value = "x"
    assert render_value(v) == '{"a":"x","b":2}'
    arr = AnyValue()
    arr.array_value.values.add().bool_value = True
    arr.array_value.values.add().double_value = 1.5
    assert render_value(arr) == "[true,1.5]"
    assert render_value(AnyValue(bytes_value=b"\x00\x01")) == "AAE="
    assert render_value(AnyValue(int_value=-3)) == "-3"
    assert render_value(AnyValue(bool_value=False)) == "false"
    assert render_value(AnyValue(double_value=float("nan"))) == "nan"
    assert render_value(AnyValue()) == ""


def test_deep_nesting_is_cut_not_recursed() -> None:
    v = AnyValue()
    inner = v
    for _ in range(MAX_RENDER_DEPTH + 10):
        inner = inner.array_value.values.add()
    inner.string_value = "leaf"
    text = render_value(v)
    assert "leaf" not in text and "…" in text
    assert text.count("[") == MAX_RENDER_DEPTH + 1


def test_timestamps_fall_back_and_future_is_clamped() -> None:
    n = Normaliser()
    batch, counts = n.from_request(one_record(time_unix_nano=0, observed_time_unix_nano=0), NOW)
    assert batch.time_ns == [NOW] and counts.missing_timestamp == 1
    batch, _ = n.from_request(one_record(observed_time_unix_nano=NOW - 5), NOW)
    assert batch.time_ns == [NOW - 5]
    batch, counts = n.from_request(one_record(time_unix_nano=NOW + 3600 * 10**9), NOW)
    assert batch.time_ns == [NOW] and counts.future_clamped == 1
    batch, counts = n.from_request(one_record(time_unix_nano=NOW + 10**9), NOW)  # within the skew
    assert batch.time_ns == [NOW + 10**9] and counts.future_clamped == 0


def test_source_identity_from_configured_attributes() -> None:
    req = one_record(service="checkout")
    attrs = req.resource_logs[0].resource.attributes
    attrs.add(key="deployment.environment.name").value.string_value = "prod"
    attrs.add(key="service.namespace").value.string_value = "shop"
    attrs.add(key="host.name").value.string_value = "ignored"
    batch, _ = Normaliser().from_request(req, NOW)
    src = batch.source_of(0)
    assert src.key == "shop/checkout@prod"
    assert src.attributes == (
        ("service.namespace", "shop"), ("service.name", "checkout"), ("deployment.environment.name", "prod")
    )  # fmt: skip
    batch, counts = Normaliser().from_request(one_record(service=None), NOW)
    assert batch.source_of(0).service_name == UNKNOWN_SERVICE and counts.missing_service_name == 1


def test_ids_unique_id_and_template_hint() -> None:
    req = one_record(
        trace_id=bytes(range(16)), span_id=bytes(range(8)), event_name="payment.declined"
    )
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    lr.attributes.add(key="client.address").value.string_value = "10.0.0.1"
    lr.attributes.add(key="user.id").value.string_value = "alice"
    lr.attributes.add(key="log.record.template").value.string_value = "Payment declined for <*>"
    batch, _ = Normaliser().from_request(req, NOW)
    assert batch.trace_id == ["000102030405060708090a0b0c0d0e0f"]
    assert batch.span_id == [] and batch.event_name == []  # nothing reads them: not built
    assert batch.unique_id == [
        "alice"
    ]  # user.id comes before client.address in the configured order
    assert batch.template_hint == ["Payment declined for <*>"]


def test_via_own_records_are_ignored_and_counted() -> None:
    req = one_record()
    req.resource_logs[0].scope_logs[0].scope.name = VIA_SCOPE_NAME
    batch, counts = Normaliser().from_request(req, NOW)
    assert len(batch) == 0 and counts.loopback_ignored == 1 and batch.sources == []


def test_attribute_samples_every_nth_record() -> None:
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    sl.log_records[0].attributes.add(key="http.status").value.int_value = 200
    for _ in range(9):
        sl.log_records.append(sl.log_records[0])
    batch, _ = Normaliser(NormaliseOptions(sample_every=4)).from_request(req, NOW)
    assert len(batch.attribute_samples) == 3  # records 0, 4 and 8
    assert batch.attribute_samples[0].log_attributes == (("http.status", "int"),)
    assert batch.attribute_samples[0].resource_attributes == (("service.name", "string"),)


def _array(items: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.SetInParent()
    for item in items:
        v.array_value.values.append(item)
    return v


def _kvlist(items: dict[str, AnyValue]) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.SetInParent()
    for key, item in items.items():
        v.kvlist_value.values.add(key=key).value.CopyFrom(item)
    return v


any_values = st.recursive(
    st.one_of(
        st.text().map(lambda s: AnyValue(string_value=s)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=True).map(lambda f: AnyValue(double_value=f)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.binary(max_size=20).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_array),
        st.dictionaries(st.text(max_size=5), children, max_size=4).map(_kvlist),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(body=any_values, severity_number=st.integers(0, 30), severity_text=st.text(max_size=12),
       time_ns=st.integers(0, 2**64 - 1), service=st.one_of(st.none(), st.text(max_size=10)))  # fmt: skip
def test_normalise_never_raises_and_columns_line_up(
    body: AnyValue, severity_number: int, severity_text: str, time_ns: int, service: str | None
) -> None:
    req = one_record(service=service, severity_text=severity_text, time_unix_nano=time_ns)
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    lr.body.CopyFrom(body)
    lr.severity_number = severity_number  # type: ignore[assignment]
    # a round trip through the wire, as the servers see it
    req = ExportLogsServiceRequest.FromString(req.SerializeToString())
    batch, counts = Normaliser().from_request(req, NOW)
    columns = [batch.source_index, batch.severity, batch.body, batch.time_ns, batch.trace_id,
               batch.unique_id, batch.template_hint]  # fmt: skip
    assert all(len(c) == 1 for c in columns)
    assert batch.time_ns[0] <= NOW + NormaliseOptions().max_future_skew_ns
    assert batch.time_ns[0] > 0
    assert render_value(body) == render_value(body)  # deterministic
    if body.WhichOneof("value") in ("kvlist_value", "array_value"):
        json.loads(batch.body[0])  # compact JSON that parses back
    assert counts.records == 1


def test_select_keeps_samples_of_kept_records_only() -> None:
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    for _ in range(5):
        sl.log_records.append(sl.log_records[0])
    batch, _ = Normaliser(NormaliseOptions(sample_every=2)).from_request(req, NOW)
    assert [s.record_index for s in batch.attribute_samples] == [0, 2, 4]
    kept = batch.select([1, 2, 5])
    assert len(kept) == 3
    assert [s.record_index for s in kept.attribute_samples] == [1]  # record 2 is now at index 1


def test_attribute_scan_skipped_only_when_no_wanted_key_is_in_the_bytes() -> None:
    req = one_record()
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    lr.attributes.add(key="user.id").value.string_value = "alice"
    raw = req.SerializeToString()
    batch, _ = Normaliser().from_request(req, NOW, raw)
    assert batch.unique_id == ["alice"]
    plain = one_record()
    plain.resource_logs[0].scope_logs[0].log_records[0].attributes.add(key="x").value.int_value = 1
    batch, _ = Normaliser().from_request(plain, NOW, plain.SerializeToString())
    assert batch.unique_id == [""] and batch.template_hint == [""]


def test_schema_sampling_counts_across_requests() -> None:
    n = Normaliser(NormaliseOptions(sample_every=3))
    req = one_record()
    recs = req.resource_logs[0].scope_logs[0].log_records
    for _ in range(3):
        recs.add().body.string_value = "more"
    picked = []
    for _ in range(3):  # 4 records each: records 0, 3, 6, 9 of the stream of 12
        batch, _ = n.from_request(req, NOW)
        picked.append([s.record_index for s in batch.attribute_samples])
    assert picked == [[0, 3], [2], [1]]


def test_a_request_is_cut_into_bounded_batches_by_count_alone() -> None:
    req = ExportLogsServiceRequest()
    for service in ("a", "b"):
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = service
        for i in range(7):
            rl.scope_logs.add().log_records.add().body.string_value = f"{service} {i}"
    whole, _ = Normaliser().from_request(req, NOW)
    parts = list(Normaliser().batches(req, NOW, max_records=5))
    assert [len(b) for b, _ in parts] == [5, 5, 4]
    assert [c.records for _, c in parts] == [5, 5, 4]
    assert [x for b, _ in parts for x in b.body] == whole.body
    assert [s.key for s in parts[1][0].sources] == ["a", "b"]
    assert [b.source_of(len(b) - 1).key for b, _ in parts] == ["a", "b", "b"]


_WANTED_KEYS = ("enduser.id", "user.id", "client.address", "log.record.template", "x", "")


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.lists(st.tuples(st.sampled_from(_WANTED_KEYS), any_values), max_size=6), max_size=6
    ),
    unique_keys=st.lists(st.sampled_from(_WANTED_KEYS), max_size=3).map(tuple),
    max_records=st.integers(0, 4),
)
def test_attributes_looked_up_by_key_give_what_the_attribute_loop_gives(
    records: list[list[tuple[str, AnyValue]]], unique_keys: tuple[str, ...], max_records: int
) -> None:
    # Keys given twice (first unique id, last hint win), ids of every AnyValue kind, several
    # unique-id keys in any order, the hint key among them, records cut into several batches.
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    for attrs in records:
        lr = sl.log_records.add()
        for key, value in attrs:
            lr.attributes.add(key=key).value.CopyFrom(value)
    raw = req.SerializeToString()
    req = ExportLogsServiceRequest.FromString(raw)
    options = NormaliseOptions(unique_id_attributes=unique_keys)
    looped = list(Normaliser(options).batches(req, NOW, None, max_records))
    looked_up = list(Normaliser(options).batches(req, NOW, raw, max_records, parsed_from_raw=True))
    assert [(b.unique_id, b.template_hint) for b, _ in looked_up] == [
        (b.unique_id, b.template_hint) for b, _ in looped
    ]


def test_a_key_given_twice_keeps_the_first_id_and_the_last_hint() -> None:
    req = one_record()
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    for key, value in (("user.id", "first"), ("user.id", "second"),
                       ("log.record.template", "a <*>"), ("log.record.template", "b <*>")):  # fmt: skip
        lr.attributes.add(key=key).value.string_value = value
    raw = req.SerializeToString()
    batch, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert batch.unique_id == ["first"] and batch.template_hint == ["b <*>"]


def test_requests_above_the_map_bound_give_the_same_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    for i in range(3):
        lr = sl.log_records.add()
        lr.attributes.add(key="user.id").value.string_value = f"u{i}"
        lr.attributes.add(key="user.id").value.string_value = "later"
    raw = req.SerializeToString()
    small, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    monkeypatch.setattr(normalise, "MAP_LOOKUP_MAX_BYTES", len(raw) - 1)
    large, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert small.unique_id == large.unique_id == ["", "u0", "u1", "u2"]


def test_a_key_outside_record_attributes_changes_no_id() -> None:
    # The key's wire bytes in a resource attribute and in a body (counted, not held by a
    # record): the lookup must not take them for a record's, nor miss a record's own.
    req = one_record()
    rl = req.resource_logs[0]
    rl.resource.attributes.add(key="user.id").value.string_value = "resource"
    records = rl.scope_logs[0].log_records
    records[0].body.string_value = "\x0a\x07user.id\x12\x03\x0a\x01x"
    lr = records.add()
    lr.attributes.add(key="user.id").value.string_value = "u1"
    lr.attributes.add(key="user.id").value.string_value = "u2"
    raw = req.SerializeToString()
    batch, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert batch.unique_id == ["", "u1"]


def _varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


@pytest.mark.parametrize(
    "key_field",
    [b"\x0a\x87\x00user.id", b"\x8a\x00\x07user.id", b"\x8a\x80\x00\x87\x80\x00user.id"],
    ids=["long length", "long tag", "both"],
)
def test_a_key_given_twice_in_longer_varints_keeps_the_first_id(key_field: bytes) -> None:
    """Parsers accept a tag or a length written as a longer varint than it need be: a record
    whose first user.id is written so still gives that first id, not the map's last."""
    value = AnyValue(string_value="first").SerializeToString()
    first = key_field + b"\x12" + _varint(len(value)) + value
    lr = LogRecord(time_unix_nano=NOW - 1, body=AnyValue(string_value="hello"))
    lr.attributes.add(key="user.id").value.string_value = "second"
    record = b"\x32" + _varint(len(first)) + first + lr.SerializeToString()
    scope = b"\x12" + _varint(len(record)) + record
    rl = ResourceLogs()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    resource = rl.SerializeToString() + b"\x12" + _varint(len(scope)) + scope
    raw = b"\x0a" + _varint(len(resource)) + resource
    req = ExportLogsServiceRequest.FromString(raw)
    assert [kv.key for kv in req.resource_logs[0].scope_logs[0].log_records[0].attributes] == [
        "user.id",
        "user.id",
    ]
    looped, _ = next(Normaliser().batches(req, NOW, None))
    looked_up, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert looped.unique_id == looked_up.unique_id == ["first"]


def _field(number: int, data: bytes) -> bytes:
    return bytes([number << 3 | 2]) + _varint(len(data)) + data


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.lists(any_values, min_size=1, max_size=3), min_size=1, max_size=4),
    hints=st.lists(any_values, min_size=1, max_size=3),
)
def test_a_value_given_twice_in_one_key_value_reads_as_the_loop_reads_it(
    ids: list[list[AnyValue]], hints: list[AnyValue]
) -> None:
    """A KeyValue may carry its value field more than once: a parser merges them (the last
    scalar wins, arrays and kvlists add up), while the maps hold only the last one's bytes."""
    records = b""
    for values in ids:
        lr = LogRecord(time_unix_nano=NOW - 1, body=AnyValue(string_value="hello"))
        for key, sent in (("user.id", values), ("log.record.template", hints)):
            kv = _field(1, key.encode()) + b"".join(_field(2, v.SerializeToString()) for v in sent)
            records += _field(2, lr.SerializeToString() + _field(6, kv))
    rl = ResourceLogs()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    raw = _field(1, rl.SerializeToString() + _field(2, records))
    req = ExportLogsServiceRequest.FromString(raw)
    looped, _ = next(Normaliser().batches(req, NOW, None))
    looked_up, _ = next(Normaliser().batches(req, NOW, raw, parsed_from_raw=True))
    assert (looked_up.unique_id, looked_up.template_hint) == (
        looped.unique_id,
        looped.template_hint,
    )


def test_ids_read_from_their_bytes_survive_the_bounded_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bound = 3 * normalise._TextCache.cost(AnyValue(string_value="u0").SerializeToString())
    monkeypatch.setattr(normalise, "_VALUE_TEXTS_BYTES", bound)
    n = Normaliser()
    for start in (0, 5, 2):
        req = one_record()
        sl = req.resource_logs[0].scope_logs[0]
        for i in range(start, start + 5):
            lr = sl.log_records.add()
            lr.attributes.add(key="user.id").value.string_value = f"u{i}"
            lr.attributes.add(key="x").value.int_value = i
        sl.log_records.add().attributes.add(key="user.id").value.int_value = 7
        batch, _ = next(n.batches(req, NOW, req.SerializeToString(), parsed_from_raw=True))
        assert batch.unique_id == ["", *(f"u{i}" for i in range(start, start + 5)), "7"]
        assert len(n._uid_texts.texts) <= 3 + 1  # emptied before an entry that would pass it


def _cache_bytes(cache: normalise._TextCache) -> int:
    return sum(map(cache.cost, filter(None, cache.texts)))


def test_id_and_hint_caches_hold_no_long_value_and_stay_within_their_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Distinct long values across requests, then one request of many distinct short ones:
    # the caches keep no long value, and count, and stay within, the bytes they hold.
    bound = 1 << 16
    monkeypatch.setattr(normalise, "_VALUE_TEXTS_BYTES", bound)
    n = Normaliser()
    for i in range(4):
        req = one_record()
        lr = req.resource_logs[0].scope_logs[0].log_records[0]
        for key in ("user.id", "log.record.template"):
            lr.attributes.add(key=key).value.string_value = f"{i:08d}" * 4096  # 32 KiB
        batch, _ = next(n.batches(req, NOW, req.SerializeToString(), parsed_from_raw=True))
        assert batch.unique_id == [f"{i:08d}" * 4096]
    for cache in (n._uid_texts, n._hint_texts):
        assert max(map(len, filter(None, cache.texts)), default=0) <= 256
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    for i in range(2000):
        attrs = sl.log_records.add().attributes
        attrs.add(key="user.id").value.string_value = f"u{i}"
        attrs.add(key="log.record.template").value.string_value = f"t{i} <*>"
    batch, _ = next(n.batches(req, NOW, req.SerializeToString(), parsed_from_raw=True))
    assert batch.unique_id[1:] == [f"u{i}" for i in range(2000)]
    assert batch.template_hint[1:] == [f"t{i} <*>" for i in range(2000)]
    for cache in (n._uid_texts, n._hint_texts):
        assert cache.held == _cache_bytes(cache) <= bound  # 2,000 entries would be ~300 KB
        assert 100 < len(cache.texts) <= bound // 128 + 1


def test_a_key_in_a_body_or_inside_a_longer_key_keeps_the_lookup() -> None:
    # "user.id" in a body and inside "enduser.id" (both default unique-id keys) lacks the
    # key field's length byte: the request is still looked up, not sent to the attribute loop.
    req = one_record()
    sl = req.resource_logs[0].scope_logs[0]
    sl.log_records[0].body.string_value = "lookup by user.id failed"
    for i in range(20):
        attrs = sl.log_records.add().attributes
        attrs.add(key="user.id").value.string_value = f"u{i % 3}"
        if i % 10 == 0:
            attrs.add(key="enduser.id").value.string_value = f"e{i}"
    raw = req.SerializeToString()
    n = Normaliser()
    assert n._looked_up(raw, {"user.id", "enduser.id"}) is not None
    looked_up, _ = next(n.batches(req, NOW, raw, parsed_from_raw=True))
    looped, _ = next(Normaliser().batches(req, NOW, None))
    assert looked_up.unique_id == looped.unique_id
    assert looked_up.unique_id[1:4] == ["e0", "u1", "u2"]


def test_a_resource_sent_again_is_read_once_and_counted_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sender repeats its Resources in every request: their source and attribute types are
    remembered by their bytes (read once through the protobuf accessors, not once per
    ResourceLogs), while what is counted per request still is, and the batches are those a
    fresh normaliser gives."""
    req = ExportLogsServiceRequest()
    for service in ("a", "b", None):
        rl = req.resource_logs.add()
        if service is not None:
            rl.resource.attributes.add(key="service.name").value.string_value = service
        rl.resource.attributes.add(key="host.name").value.int_value = 7
        for _ in range(2):
            scope = rl.scope_logs.add()
            for i in range(3):
                scope.log_records.add().body.string_value = f"r{i}"
    raw = req.SerializeToString()
    options = NormaliseOptions(sample_every=1)
    rendered: list[object] = []
    typed: list[object] = []
    render, types = normalise.render_value, normalise._attribute_types

    def counted_render(value: AnyValue) -> str:
        rendered.append(value)
        return render(value)

    def counted_types(attributes: object) -> tuple[tuple[str, str], ...]:
        typed.append(attributes)
        return types(attributes)  # type: ignore[arg-type]

    monkeypatch.setattr(normalise, "render_value", counted_render)
    monkeypatch.setattr(normalise, "_attribute_types", counted_types)
    n = Normaliser(options)
    got = [list(n.batches(req, NOW, raw, parsed_from_raw=True)) for _ in range(4)]
    # Identity attributes rendered for the first request only (two resources name a service);
    # types: every record's (sample_every=1), and each of the three resources' once.
    assert len(rendered) == 2
    assert len(typed) == 4 * 18 + 3
    monkeypatch.setattr(normalise, "render_value", render)
    monkeypatch.setattr(normalise, "_attribute_types", types)
    for batches in got:
        fresh = list(Normaliser(options).batches(req, NOW, raw, parsed_from_raw=True))
        assert [(b.body, b.sources, b.attribute_samples) for b, _ in batches] == [
            (b.body, b.sources, b.attribute_samples) for b, _ in fresh
        ]
        assert [c for _, c in batches] == [c for _, c in fresh]
        assert batches[0][1].missing_service_name == 1
