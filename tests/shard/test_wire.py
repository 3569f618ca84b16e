"""What travels to a shard arrives whole and in order (pure codec, and the coordinator's sender
on a real socket pair)."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

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
