"""Requests cut by owning shard before decoding answer as one shard decoding them whole would:
the same records accepted, the same error for bytes that are not a request, nothing lost and
no part left held in a shard (real shard processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.config import parse_config
from via_otlp.errors import InputError
from via_otlp.receive.normalise import Normaliser
from via_otlp.receive.otlp_codec import Encoding, decode
from via_otlp.shard.pool import ShardPool
from via_otlp.shard.wire import route_request


def request(services: list[str], records: int) -> bytes:
    req = ExportLogsServiceRequest()
    for name in services:
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = name
        sl = rl.scope_logs.add()
        for j in range(records):
            sl.log_records.add(time_unix_nano=10**18 + j).body.string_value = f"{name} did {j}"
    return req.SerializeToString()


def test_routed_requests_answer_as_one_decoder_would(tmp_path: Path) -> None:
    services = [f"svc-{i}" for i in range(6)]
    small, large = request(services, 1), request(services, 3)  # 6 and 18 records
    cut = route_request(small, Normaliser(), 2)
    assert cut is not None and all(cut), "every service on one shard: no test"
    # A ResourceLogs whose records are not protobuf: routing does not look inside it.
    bad = small + b"\x0a\x05\x12\x03\xff\xff\xff"
    with pytest.raises(InputError) as whole:
        decode(bad, Encoding.PROTOBUF)
    config = parse_config(
        f"""{{pipeline: {{workers: 2, batch_max_records: 8}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )

    async def main() -> tuple[list[int], str, ShardPool, list[int]]:
        pool = ShardPool(config, lambda events: None, persist=False)
        await pool.start()
        try:
            accepted = [await pool.submit_payload(small, Encoding.PROTOBUF, now_ns=10**18)]
            assert (pool.routed, pool.routed_whole) == (1, 0)
            # More records than a batch holds: decoded whole, it is cut where one decoder cuts.
            accepted.append(await pool.submit_payload(large, Encoding.PROTOBUF, now_ns=10**18))
            assert (pool.routed, pool.routed_whole) == (2, 1)
            with pytest.raises(InputError) as error:
                await pool.submit_payload(bad, Encoding.PROTOBUF, now_ns=10**18)
            await pool.wait_idle()
            held = [int(r["held"]) for r in await pool.query("stats")]
            return accepted, str(error.value), pool, held
        finally:
            await pool.stop()

    accepted, error, pool, held = asyncio.run(main())
    assert accepted == [6, 18] and error == str(whole.value)
    assert pool.stats.records_consumed == 24 and pool.lost_records == 0
    assert held == [0, 0]  # the good parts of the bad request were freed
    assert pool.queued_bytes == 0 and pool.records_in_flight == 0


def _decoded(held: int, records: int) -> memoryview:
    import json
    import struct

    header = {"records": records, "counts": {"records": records}, "repairs": 0,
              "part_records": [0, records], "part_sources": [[], ["s"]], "part_bytes": [0, 0],
              "held": held, "held_bytes": 100}  # fmt: skip
    head = json.dumps(header).encode()
    return memoryview(struct.pack("<q", 5) + struct.pack("<I", len(head)) + head)


def test_a_shard_dying_during_a_routed_request_answers_retry_and_frees_the_other_parts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import struct

    from via_otlp.receive.intake import QueueFullError
    from via_otlp.shard import pool as pool_mod
    from via_otlp.shard.wire import Kind, held_id

    config = parse_config(f'{{pipeline: {{workers: 2}}, state: {{data_dir: "{tmp_path}"}}}}')
    pool = ShardPool(config, lambda events: None, persist=False)
    pool._closing = True  # `_crashed` stops before restarting the shard
    for s in pool._shards:
        s.alive = True
    sent: list[tuple[int, int, int]] = []

    def send(self: pool_mod._Shard, *pieces: bytes) -> None:
        body = b"".join(pieces)
        kind = struct.unpack_from("<IB", body)[1]
        sent.append((self.status.index, kind, held_id(memoryview(body)[5:])))

    monkeypatch.setattr(pool_mod._Shard, "send", send)
    loop = asyncio.new_event_loop()
    try:
        # Shard 1 has decoded its part (kept as 77), shard 0 dies while decoding its own.
        before = loop.create_future()
        pool._decoding[1] = (before, 0, [0, -1])
        pool._routed[1] = pool_mod._Routed(b"", 0, {0: 10}, [(1, _decoded(77, 3))])
        # Shard 0 dies before shard 1 has decoded its part (78): freed when it comes.
        after = loop.create_future()
        pool._decoding[2] = (after, 0, [0, -1])
        pool._routed[2] = pool_mod._Routed(b"", 0, {0: 10, 1: 20})
        pool._shards[0].status.decoding_bytes = 20
        pool._shards[1].status.decoding_bytes = 20
        loop.run_until_complete(pool._crashed(pool._shards[0]))
        assert isinstance(before.exception(), QueueFullError)
        assert isinstance(after.exception(), QueueFullError)
        assert sent == [(1, Kind.FREE, 77)] and list(pool._routed) == [2]
        frame = struct.pack("<qq", 2, 1) + bytes(_decoded(78, 4))  # request 2, its last
        pool._on_frame(pool._shards[1], Kind.DECODED, memoryview(frame))
    finally:
        loop.close()
    assert sent == [(1, Kind.FREE, 77), (1, Kind.FREE, 78)] and not pool._routed
    assert not pool._decoding and not pool._waiting and pool.lost_records == 0
    assert [s.status.decoding_bytes for s in pool._shards] == [0, 0]
