"""What travels to a shard arrives whole and in order (pure codec, and the coordinator's sender
on a real socket pair)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest

from via_otlp.model import AttributeSample, LogBatch, Source
from via_otlp.pipeline import join_batches
from via_otlp.receive.normalise import HexIds
from via_otlp.shard.pool import SLICE, _Shard
from via_otlp.shard.wire import decode_batch, encode_batch, shard_of, split_batch
from via_otlp.shard.worker import held_weight


def batch() -> LogBatch:
    a = Source.from_attributes((("service.name", "a"),))
    b = Source.from_attributes((("service.name", "b\x00odd"),))
    return LogBatch(
        sources=[a, b],
        source_index=[0, 1, 0, 1],
        severity=["INFO", "ERROR", "INFO", "WARN"],
        body=["one", "two\x00nul", "", "fünf"],
        time_ns=[1, 2, 3, 2**62],
        trace_id=HexIds([b"\x01" * 16, b"", b"\x02" * 16, b"\x03" * 16]),  # type: ignore[arg-type]
        unique_id=["", "u1", "", "u2"],
        template_hint=["", "", "", ""],
        attribute_samples=[AttributeSample(1, (("k", "string"),), (("r", "int"),), 3)],
    )


def test_a_batch_round_trips_through_the_codec() -> None:
    b = batch()
    back = decode_batch(encode_batch(b))
    for name in ("source_index", "severity", "body", "time_ns", "unique_id", "template_hint"):
        assert getattr(back, name) == getattr(b, name), name
    assert list(back.trace_id) == list(b.trace_id)
    assert back.sources == b.sources and back.attribute_samples == b.attribute_samples


def test_split_keeps_each_source_whole_and_in_order() -> None:
    b = batch()
    parts = split_batch(b, 2)
    owner = {s.key: shard_of(s.key, 2) for s in b.sources}
    for k, part in enumerate(parts):
        if part is None:
            assert k not in owner.values()
            continue
        assert {s.key for s in part.sources} == {key for key, o in owner.items() if o == k}
        assert part.time_ns == sorted(part.time_ns)  # record order kept
        for i in range(len(part)):
            assert part.source_of(i).key in {s.key for s in part.sources}
    assert sum(len(p) for p in parts if p is not None) == len(b)


def test_split_parts_hold_exactly_their_owners_records_columns_and_samples() -> None:
    sources = [Source.from_attributes((("service.name", f"s{i}"),)) for i in range(7)]
    owner = [shard_of(s.key, 3) for s in sources]
    assert len(set(owner)) == 3  # the names were picked so that every shard owns one
    n = 60
    which = [(i * 5 + i // 7) % 7 for i in range(n)]
    b = LogBatch(
        sources=sources,
        source_index=which,
        severity=[f"S{i % 4}" for i in range(n)],
        body=[f"body {i}" for i in range(n)],
        time_ns=[10 * i for i in range(n)],
        trace_id=HexIds([bytes([i]) * 16 for i in range(n)]),  # type: ignore[arg-type]
        unique_id=[f"u{i}" for i in range(n)],
        template_hint=[f"h{i}" if i % 3 else "" for i in range(n)],
        attribute_samples=[
            AttributeSample(which[i], (("k", str(i)),), (), i) for i in range(0, n, 4)
        ],
    )
    parts = split_batch(b, 3)
    for k, part in enumerate(parts):
        assert part is not None
        keep = [i for i in range(n) if owner[which[i]] == k]
        assert part.sources == [s for s, o in zip(sources, owner, strict=True) if o == k]
        assert [part.sources[j].key for j in part.source_index] == [
            sources[which[i]].key for i in keep
        ]
        assert part.body == [b.body[i] for i in keep]
        assert part.severity == [b.severity[i] for i in keep]
        assert part.time_ns == [b.time_ns[i] for i in keep]
        assert list(part.trace_id) == [b.trace_id[i] for i in keep]
        assert part.unique_id == [b.unique_id[i] for i in keep]
        assert part.template_hint == [b.template_hint[i] for i in keep]
        expected = [s for s in b.attribute_samples if s.record_index in keep]
        assert [(part.body[s.record_index], part.sources[s.source_index].key,
                 s.log_attributes) for s in part.attribute_samples] == [
            (b.body[s.record_index], sources[s.source_index].key, s.log_attributes)
            for s in expected
        ]  # fmt: skip


async def test_frames_stay_in_order_while_a_large_one_is_written_in_slices() -> None:
    ours, theirs = socket.socketpair()
    shard = _Shard(0)
    shard.reader, shard.writer = await asyncio.open_unix_connection(sock=ours)
    shard.alive = True
    big = np.arange(3 * SLICE // 8, dtype=np.int64).tobytes()
    shard.send(b"head", big)
    for _ in range(5):  # the sender takes the big piece and waits for the peer to read
        await asyncio.sleep(0)
    shard.send(b"small-after-big")  # while the big piece is still being written
    expected = b"head" + big + b"small-after-big"
    theirs.setblocking(False)
    got = bytearray()
    loop = asyncio.get_running_loop()
    while len(got) < len(expected):
        got += await loop.sock_recv(theirs, 1 << 16)
    assert bytes(got) == expected
    shard.writer.close()
    theirs.close()


def test_trace_ids_of_one_width_travel_packed_and_read_the_same() -> None:
    b = batch()
    b.trace_id = HexIds([bytes([i]) * 16 for i in range(4)])  # type: ignore[assignment]
    back = decode_batch(encode_batch(b))
    assert isinstance(back.trace_id, HexIds) and back.trace_id.blob() is not None
    assert list(back.trace_id) == list(b.trace_id) and back.trace_id[-1] == "03" * 16
    again = decode_batch(encode_batch(back))  # packed ids encode as they came
    assert list(again.trace_id) == list(b.trace_id)
    parts = split_batch(back, 7)
    assert sorted(t for p in parts if p is not None for t in p.trace_id) == sorted(b.trace_id)
    joined, _ = join_batches([decode_batch(encode_batch(b)), again])
    assert isinstance(joined.trace_id, HexIds) and joined.trace_id.blob() is not None
    assert list(joined.trace_id) == list(b.trace_id) * 2


def test_trace_ids_longer_than_a_byte_can_count_travel_and_read_the_same() -> None:
    # OTLP's trace ids are 16 bytes, the protobuf wire takes any length: a 300-byte one made
    # the length column overflow, and the shard that encoded the batch died on it.
    for ids in ([b"\x07" * 300, b"", b"\x08" * 16, b"\x09" * 255], [b"\x07" * 300] * 4):
        b = batch()
        b.trace_id = HexIds.of(ids)  # type: ignore[assignment]
        back = decode_batch(encode_batch(b))
        assert list(back.trace_id) == [i.hex() for i in ids]
        parts = [decode_batch(encode_batch(p)) for p in split_batch(b, 7) if p is not None]
        assert sorted(t for p in parts for t in p.trace_id) == sorted(i.hex() for i in ids)


def test_a_held_part_weighs_its_ids_and_hints_not_only_its_bodies() -> None:
    """A part a shard keeps counts in the coordinator's byte bound for what it holds: trace ids
    up to any width travel now (not only <= 255 bytes), and unique ids and hints can be long."""
    n = 50
    wide = HexIds.of([bytes([i]) * 300 for i in range(n)])
    part = LogBatch(
        sources=[Source.from_attributes((("service.name", "s"),))], source_index=[0] * n,
        severity=["INFO"] * n, body=["x"] * n, time_ns=[1] * n, trace_id=wide,  # type: ignore[arg-type]
        unique_id=["u" * 100] * n, template_hint=["h <*>" * 20] * n,
    )  # fmt: skip
    assert wide.nbytes == 300 * n and HexIds([b"ab", b""]).nbytes == 2
    assert held_weight(part) >= n * (1 + 300 + 100 + 100)


def _request_of_services() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    for i in range(9):
        rl = req.resource_logs.add()
        if i != 4:  # one resource with no service.name at all
            value = rl.resource.attributes.add(key="service.name").value
            if i == 6:
                value.int_value = 6  # rendered as the normaliser renders it
            else:
                value.string_value = f"svc-{i % 7}"  # two resources of one source
        sl = rl.scope_logs.add()
        for j in range(3):
            lr = sl.log_records.add(time_unix_nano=1_000 + 10 * i + j)
            lr.body.string_value = f"record {i}.{j}"
            lr.attributes.add(key="user.id").value.string_value = f"u{j}"
    data = req.SerializeToString()
    # A Resource given twice in one ResourceLogs: the parser merges them, so must routing.
    extra = ExportLogsServiceRequest()
    rl = extra.resource_logs.add()
    rl.resource.attributes.add(key="host.name").value.string_value = "h"
    rl.scope_logs.add().log_records.add(time_unix_nano=5).body.string_value = "merged"
    tail = extra.SerializeToString()
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    named = Resource()
    named.attributes.add(key="service.name").value.string_value = "svc-late"
    field = named.SerializeToString()
    inner = bytes([0x0A, len(field)]) + field  # ResourceLogs.resource, the second time
    body = tail[2:] + inner
    return data + bytes([0x0A, len(body)]) + body


def test_a_request_routed_before_decoding_gives_each_shard_its_part_of_the_whole() -> None:
    from via_otlp.receive.normalise import NormaliseOptions, Normaliser
    from via_otlp.receive.otlp_codec import Encoding, decode
    from via_otlp.shard.wire import Router

    data = _request_of_services()
    whole, _ = Normaliser().from_request(decode(data, Encoding.PROTOBUF)[0], 0, data)
    for shards in (2, 3):
        router = Router(NormaliseOptions(), shards)
        for _ in range(2):  # the second time, the owners come from the router's cache
            cut = router.cut(data)
            assert cut is not None and sum(len(p) for c in cut for p in c) == len(data)
            assert sum(1 for c in cut if c) > 1, "all to one shard: no test"
            for k, (part, pieces) in enumerate(zip(split_batch(whole, shards), cut, strict=True)):
                sub = b"".join(pieces)
                if part is None:
                    assert sub == b""
                    continue
                got, _ = Normaliser().from_request(decode(sub, Encoding.PROTOBUF)[0], 0, sub)
                assert split_batch(got, shards)[k] is got  # only its own records
                for name in ("sources", "source_index", "severity", "body", "time_ns",
                             "unique_id"):  # fmt: skip
                    assert list(getattr(got, name)) == list(getattr(part, name)), (shards, k)
    assert any("svc-late" in s.key for s in whole.sources)
    # Bytes that are not plainly ResourceLogs: not routed (one shard decodes and judges them).
    for bad in (b"\x12\x00", data[:-1], b"\x0a\x05\x0a\x03\xff\xff\xff", b"\x0a\x02\x0f\x00"):
        assert Router(NormaliseOptions(), 2).cut(bad) is None


class _Counted(bytes):
    """Bytes that count the single bytes read from them (`_varint` reads one at a time)."""

    reads = 0

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, int):
            _Counted.reads += 1
        return super().__getitem__(i)


def test_the_cut_before_decoding_reads_a_bounded_part_of_any_request() -> None:
    # It runs on the serving process's event loop: its work must not grow with the input.
    from via_otlp.receive.normalise import NormaliseOptions
    from via_otlp.receive.wire import _encode_varint as _varint
    from via_otlp.shard.wire import (
        ROUTE_MAX_BYTES,
        ROUTE_MAX_FIELDS,
        ROUTE_MAX_RESOURCE_BYTES,
        Router,
    )

    def cut(data: bytes) -> object:
        return Router(NormaliseOptions(), 2).cut(data)

    # Fields: ResourceLogs, and the fields inside them, at most ROUTE_MAX_FIELDS.
    assert cut(b"\x0a\x00" * ROUTE_MAX_FIELDS) is not None
    assert cut(b"\x0a\x00" * (ROUTE_MAX_FIELDS + 1)) is None
    inner = b"\x18\x01" * (ROUTE_MAX_FIELDS - 1)  # unknown varint fields of one ResourceLogs
    assert cut(b"\x0a" + bytes([0x80 | (len(inner) & 0x7F), len(inner) >> 7]) + inner)
    inner += b"\x18\x01"
    assert cut(b"\x0a" + bytes([0x80 | (len(inner) & 0x7F), len(inner) >> 7]) + inner) is None
    # Resource bytes parsed: at most ROUTE_MAX_RESOURCE_BYTES in all.
    attr = b"\x0a\x05\x0a\x01k\x12\x00"  # Resource.attributes: {key: "k", value: {}}

    def resource_logs(resource: bytes) -> bytes:
        return b"\x0a" + _varint(len(resource) + 3) + b"\x0a" + _varint(len(resource)) + resource

    other = attr.replace(b"k", b"j")  # (two different Resources: one repeated is parsed once)
    half = ROUTE_MAX_RESOURCE_BYTES // len(attr) // 2
    fits = resource_logs(attr * half) + resource_logs(other * half)
    assert cut(fits) is not None and cut(resource_logs(attr * 20)) is not None
    assert cut(fits + resource_logs(attr * 20)) is None
    # A 4 MiB request of one ResourceLogs full of tiny fields: a bounded number of bytes read.
    body = b"\x18\x01" * ((ROUTE_MAX_BYTES - 8) // 2)
    big = _Counted(b"\x0a" + _varint(len(body)) + body)
    _Counted.reads = 0
    assert cut(big) is None
    assert 0 < _Counted.reads <= 4 * ROUTE_MAX_FIELDS


def test_the_cut_before_decoding_leaves_requests_of_more_records_than_a_batch_whole() -> None:
    # Their parts could not stand for the request (one decoder cuts it into batches): routed,
    # they were decoded in parts and then again whole. Counting them reads a bounded part.
    from via_otlp.receive.normalise import NormaliseOptions
    from via_otlp.receive.wire import RECORD_SAMPLE
    from via_otlp.receive.wire import _encode_varint as _varint
    from via_otlp.shard.wire import ROUTE_MAX_BYTES, Router

    def ld(field: int, value: bytes) -> bytes:
        return bytes([field << 3 | 2]) + _varint(len(value)) + value

    def request(records: list[int], record: bytes = ld(5, ld(1, b"m"))) -> bytes:
        """One ResourceLogs per entry, with one ScopeLogs of that many records."""
        return b"".join(ld(1, ld(1, b"") + ld(2, ld(1, b"") + ld(2, record) * n)) for n in records)

    def cut(data: bytes, limit: int = 100) -> object:
        return Router(NormaliseOptions(), 2, limit).cut(data)

    assert cut(request([100])) is not None and cut(request([101])) is None
    assert cut(request([60, 40])) is not None and cut(request([60, 41])) is None
    assert cut(request([101]), limit=101) is not None
    # Past the sample, judged by its bytes per record: a little either side of the limit.
    assert cut(request([300, 300, 300]), limit=1000) is not None
    assert cut(request([400, 400, 400]), limit=1000) is None
    # Without the limit (or bytes too few for that many records) nothing is counted.
    assert Router(NormaliseOptions(), 2).cut(request([101])) is not None
    assert cut(request([0, 0, 0]), limit=10**6) is not None
    # A 4 MiB request of tiny records: a bounded number of bytes read.
    big = _Counted(request([(ROUTE_MAX_BYTES - 64) // 4], record=b""))
    _Counted.reads = 0
    assert cut(big, limit=16_384) is None
    assert 0 < _Counted.reads <= 8 * RECORD_SAMPLE


def test_the_cut_before_decoding_parses_few_new_resources_and_remembers_large_ones() -> None:
    # Parsing a Resource is a Python loop on the serving process's event loop: a request of
    # many Resources not seen before is decoded whole instead; Resources seen are remembered,
    # Kubernetes-sized ones (kilobytes) too.
    from via_otlp.receive.normalise import NormaliseOptions
    from via_otlp.receive.wire import _encode_varint as _varint
    from via_otlp.shard.wire import ROUTE_MAX_PARSES, Router

    def ld(field: int, value: bytes) -> bytes:
        return bytes([field << 3 | 2]) + _varint(len(value)) + value

    def resource_logs(name: str, pad: int = 0) -> bytes:
        attrs = ld(1, ld(1, b"service.name") + ld(2, ld(1, name.encode())))
        if pad:
            attrs += ld(1, ld(1, b"k8s.pod.uid") + ld(2, ld(1, b"x" * pad)))
        return ld(1, ld(1, attrs))

    router = Router(NormaliseOptions(), 2)
    many = b"".join(resource_logs(f"svc-{i}") for i in range(ROUTE_MAX_PARSES + 1))
    assert router.cut(many) is None  # one parse too many
    assert router.cut(many) is not None  # the first ROUTE_MAX_PARSES were remembered
    fresh = Router(NormaliseOptions(), 2)
    assert fresh.cut(many[: -len(resource_logs(f"svc-{ROUTE_MAX_PARSES}"))]) is not None
    large = b"".join(resource_logs(f"pod-{i}", pad=3000) for i in range(4))
    assert fresh.cut(large) is not None
    assert sum(len(r) > 3000 for r in fresh._owners) == 4
    # The walk stops at the Resource past the bound: what follows it is not read.
    reads = []
    for data in (many, many + b"".join(resource_logs(f"more-{i}") for i in range(300))):
        _Counted.reads = 0
        assert Router(NormaliseOptions(), 2).cut(_Counted(data)) is None
        reads.append(_Counted.reads)
    assert 0 < reads[0] == reads[1]


def test_a_batch_travels_with_a_few_bytes_of_framing() -> None:
    """The framing of a travelling batch is fixed-size sections, not a JSON header and tree:
    a one-record batch is its values and about a hundred bytes (it was 639 of header, parsed
    again in the shard, for every batch)."""
    one = LogBatch(
        sources=[Source.from_attributes((("service.name", "a"),))],
        source_index=[0],
        severity=["INFO"],
        body=["x"],
        time_ns=[1],
        trace_id=HexIds([b"\x01" * 16]),  # type: ignore[arg-type]
        unique_id=[""],
        template_hint=[""],
        attribute_samples=[],
    )
    data = encode_batch(one)
    values = len("x") + 8 + 16 + len('[["service.name=a",[["service.name","a"]]]]')
    assert len(data) - values <= 100, len(data)
    back = decode_batch(data)
    assert (back.body, back.time_ns, list(back.trace_id)) == (["x"], [1], ["01" * 16])


def test_columns_without_values_and_cut_batches_read_as_such() -> None:
    """Columns left empty while the batch has records (no unique ids, no hints) come back
    empty; a batch cut anywhere is refused with ValueError, never read short."""
    b = batch()
    b.unique_id, b.template_hint = [], []
    b.trace_id = HexIds([])  # type: ignore[assignment]
    back = decode_batch(encode_batch(b))
    assert (back.unique_id, back.template_hint, list(back.trace_id)) == ([], [], [])
    assert back.body == b.body and back.sources == b.sources
    data = encode_batch(batch())
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            decode_batch(data[:cut])
