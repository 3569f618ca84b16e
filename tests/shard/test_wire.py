"""What travels to a shard arrives whole and in order (pure codec, and the coordinator's sender
on a real socket pair)."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from via_otlp.model import AttributeSample, LogBatch, Source
from via_otlp.receive.normalise import HexIds
from via_otlp.shard.pool import SLICE, _Shard
from via_otlp.shard.wire import decode_batch, encode_batch, shard_of, split_batch


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
