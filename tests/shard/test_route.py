"""Requests cut by owning shard before decoding answer as one shard decoding them whole would:
the same records accepted, the same error for bytes that are not a request, nothing lost and
no part left held in a shard; their parts count in `max_queued_bytes` until their batch goes
on; and an owner dying while the other parts wait answers "retry" and frees them (real shard
processes: a shard is held still with SIGSTOP, never by timing)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.config import Config, parse_config
from via_otlp.errors import InputError
from via_otlp.receive.intake import QueueFullError
from via_otlp.receive.normalise import NormaliseOptions, Normaliser
from via_otlp.receive.otlp_codec import Encoding, Repairs, decode
from via_otlp.shard import pool as pool_module
from via_otlp.shard.pool import ShardPool
from via_otlp.shard.wire import Router, shard_of

NOW = 10**18


def service_on(shard: int, shards: int = 2, prefix: str = "svc") -> str:
    """A service name whose source shard `shard` owns."""
    normaliser = Normaliser()
    for i in range(100):
        name = f"{prefix}-{i}"
        if shard_of(normaliser.source_for({"service.name": name}).key, shards) == shard:
            return name
    raise AssertionError("no such service")


def request(services: dict[str, int]) -> bytes:
    """One ResourceLogs per service, with that many records."""
    req = ExportLogsServiceRequest()
    for name, records in services.items():
        rl = req.resource_logs.add()
        rl.resource.attributes.add(key="service.name").value.string_value = name
        sl = rl.scope_logs.add()
        for j in range(records):
            sl.log_records.add(time_unix_nano=NOW + j).body.string_value = f"{name} did {j}"
    return req.SerializeToString()


def config(tmp_path: Path, **pipeline: int) -> Config:
    extra = "".join(f", {k}: {v}" for k, v in pipeline.items())
    return parse_config(
        f"""{{pipeline: {{workers: 2{extra}}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )


@contextlib.asynccontextmanager
async def started(cfg: Config) -> AsyncIterator[ShardPool]:
    pool = ShardPool(cfg, lambda events: None, persist=False)
    await pool.start()
    try:
        yield pool
    finally:
        for s in pool.status():  # none left stopped
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.pid, signal.SIGCONT)
        await pool.stop()


async def until(done: Callable[[], bool]) -> None:
    """Until `done()`; a safety net of a minute, not a bound that is tested."""

    async def wait() -> None:
        while not done():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), 60)


async def held(pool: ShardPool) -> list[int]:
    return [int(r["held"]) for r in await pool.query("stats")]


def test_routed_requests_answer_as_one_decoder_would(tmp_path: Path) -> None:
    a, b = service_on(0), service_on(1)
    small = request({a: 3, b: 3, "x" + a: 0})  # 6 records, three owners' worth of Resources
    large = request({a: 5, b: 5})  # more records than a batch holds
    cut = Router(NormaliseOptions(), 2).cut(small)
    assert cut is not None and all(cut), "every service on one shard: no test"
    # A ResourceLogs whose records are not protobuf: routing does not look inside it.
    bad = small + b"\x0a\x05\x12\x03\xff\xff\xff"
    with pytest.raises(InputError) as whole:
        decode(bad, Encoding.PROTOBUF)
    # Resources past the bound of what the coordinator parses: decoded whole, as before.
    wide = ExportLogsServiceRequest.FromString(small)
    for i in range(2_000):
        wide.resource_logs[0].resource.attributes.add(key=f"k{i}").value.string_value = "v" * 8
    wide_bytes = wide.SerializeToString()

    async def main() -> tuple[list[int], str, list[int], ShardPool]:
        async with started(config(tmp_path, batch_max_records=8)) as pool:
            accepted = [await pool.submit_payload(small, Encoding.PROTOBUF, now_ns=NOW)]
            assert (pool.routed, pool.routed_whole) == (1, 0)
            # More records than a batch holds: not routed (its parts could not stand for it),
            # decoded whole at once and cut where one decoder cuts.
            accepted.append(await pool.submit_payload(large, Encoding.PROTOBUF, now_ns=NOW))
            assert (pool.routed, pool.routed_whole) == (1, 0)
            with pytest.raises(InputError) as error:
                await pool.submit_payload(bad, Encoding.PROTOBUF, now_ns=NOW)
            assert (pool.routed, pool.routed_whole) == (2, 1)
            accepted.append(await pool.submit_payload(wide_bytes, Encoding.PROTOBUF, now_ns=NOW))
            assert pool.routed == 2  # not routed
            await pool.wait_idle()
            return accepted, str(error.value), await held(pool), pool

    accepted, error, left, pool = asyncio.run(main())
    assert accepted == [6, 10, 6] and error == str(whole.value)
    assert pool.stats.records_consumed == 22 and pool.lost_records == 0
    assert left == [0, 0]  # the good parts of the bad request were freed
    assert pool.queued_bytes == 0 and pool.records_in_flight == 0


def _ld(field: int, payload: bytes) -> bytes:
    out = bytearray()
    for value in ((field << 3) | 2, len(payload)):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def deep_resource_logs(service: str, levels: int) -> bytes:
    """A ResourceLogs field whose one record's body is a kvlist nested `levels` deep."""
    value = _ld(1, b"leaf")
    for _ in range(levels):
        value = _ld(6, _ld(1, _ld(1, b"k") + _ld(2, value)))
    record = _ld(5, value)
    name = _ld(1, _ld(1, b"service.name") + _ld(2, _ld(1, service.encode())))
    return _ld(1, _ld(1, name) + _ld(2, _ld(2, record)))


def test_requests_that_need_deep_value_repairs_are_decoded_whole(tmp_path: Path) -> None:
    a, b = service_on(0), service_on(1)
    deep = request({a: 2, b: 2}) + deep_resource_logs(b, 60)
    shallow = request({a: 2, b: 2}) + deep_resource_logs(b, 20)
    assert decode(deep, Encoding.PROTOBUF)[1] == Repairs.DEEP_VALUE
    assert decode(shallow, Encoding.PROTOBUF)[1] == Repairs.NONE

    async def main() -> tuple[list[int], ShardPool]:
        async with started(config(tmp_path)) as pool:
            got = [await pool.submit_payload(shallow, Encoding.PROTOBUF, now_ns=NOW)]
            assert (pool.routed, pool.routed_whole) == (1, 0)
            got.append(await pool.submit_payload(deep, Encoding.PROTOBUF, now_ns=NOW))
            assert (pool.routed, pool.routed_whole) == (2, 1)  # the parts freed, then whole
            await pool.wait_idle()
            assert await held(pool) == [0, 0]
            return got, pool

    accepted, pool = asyncio.run(main())
    assert accepted == [5, 5] and pool.stats.records_consumed == 10
    assert pool.stats.deep_values_cut_requests == 1


def test_routed_parts_count_in_the_queued_bytes_until_their_batch_goes_on(
    tmp_path: Path,
) -> None:
    a, b = service_on(0), service_on(1)
    payload = request({a: 60, b: 1})  # shard 1's part is a sliver of the request
    cfg = config(tmp_path, max_queued_bytes=len(payload) * 3 // 2)

    async def main() -> None:
        async with started(cfg) as pool:
            os.kill(pool.status()[1].pid, signal.SIGSTOP)  # shard 1 decodes nothing
            first = asyncio.ensure_future(pool.submit_payload(payload, Encoding.PROTOBUF))
            await until(lambda: any(r.parts for r in pool._routed.values()))
            # Shard 0 has decoded and holds its part; the request is not sequenced yet: its
            # bytes still count, so a second one does not fit.
            assert pool.queued_bytes >= len(payload)
            with pytest.raises(QueueFullError):
                await pool.submit_payload(payload, Encoding.PROTOBUF)
            os.kill(pool.status()[1].pid, signal.SIGCONT)
            assert await asyncio.wait_for(first, 60) == 61
            await pool.wait_idle()
            assert await pool.submit_payload(payload, Encoding.PROTOBUF) == 61
            await pool.wait_idle()
            assert pool.queued_bytes == 0 and pool.routed == 2 and pool.routed_whole == 0
            assert pool.lost_records == 0 and await held(pool) == [0, 0]

    asyncio.run(main())


def test_an_owner_dying_while_the_other_parts_wait_answers_retry_and_frees_them(
    tmp_path: Path,
) -> None:
    a, b = service_on(0), service_on(1)
    payload = request({a: 4, b: 4})

    async def main() -> None:
        async with started(config(tmp_path)) as pool:
            pid0, pid1 = (s.pid for s in pool.status())
            os.kill(pid1, signal.SIGSTOP)
            # Request 1: shard 0 has decoded and holds its part when shard 1 dies.
            first = asyncio.ensure_future(pool.submit_payload(payload, Encoding.PROTOBUF))
            await until(lambda: any(r.parts for r in pool._routed.values()))
            # Request 2: shard 0 is still to decode its part when shard 1 dies.
            os.kill(pid0, signal.SIGSTOP)
            second = asyncio.ensure_future(pool.submit_payload(payload, Encoding.PROTOBUF))
            await asyncio.sleep(0)  # (it runs until it waits for its answer)
            assert len(pool._routed) == 2
            os.kill(pid1, signal.SIGKILL)
            for fut in (first, second):
                with pytest.raises(QueueFullError):
                    await asyncio.wait_for(fut, 60)
            os.kill(pid0, signal.SIGCONT)
            await pool.wait_idle()  # until shard 0's part of request 2 came and was freed
            await until(lambda: pool.status()[1].pid != pid1 and pool._shards[1].alive)
            assert await held(pool) == [0, 0]
            assert pool.queued_bytes == 0 and not pool._decoding and not pool._routed
            assert pool.stats.records_consumed == 0 and pool.lost_records == 0
            # And the pool goes on with the restarted shard.
            assert await pool.submit_payload(payload, Encoding.PROTOBUF) == 8
            await pool.wait_idle()
            assert pool.stats.records_consumed == 8

    asyncio.run(main())


def test_a_request_sent_to_a_shard_whose_restart_fails_answers_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarting shard takes nothing before READY: requests with records for it (a routed
    one, and one it would decode whole) are answered "retry" with nothing charged; when it dies
    before READY, nothing waits on it, and (ordered, as in a replay) later requests go on."""
    a, b = service_on(0), service_on(1)
    both, only_b, only_a = request({a: 3, b: 3}), request({b: 2}), request({a: 2})
    spawned: list[int] = []
    real = pool_module._start_process

    def stopped() -> Any:  # the replacement holds still before it can read INIT
        process, sock = real()
        os.kill(process.pid, signal.SIGSTOP)
        spawned.append(process.pid)
        return process, sock

    async def main() -> None:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False, ordered=True)
        await pool.start()

        async def never(delay: float) -> None:  # the backoff: no second restart in this test
            await asyncio.Event().wait()

        pool._backoff_sleep = never
        try:
            monkeypatch.setattr(pool_module, "_start_process", stopped)
            reader = pool._shards[1].reader
            os.kill(pool.status()[1].pid, signal.SIGKILL)
            await until(lambda: pool._shards[1].reader not in (reader, None))  # restoring
            for p in (both, only_b):
                with pytest.raises(QueueFullError):
                    await asyncio.wait_for(pool.submit_payload(p, Encoding.PROTOBUF), 60)
            assert pool.queued_bytes == 0 and not pool._decoding and not pool._routed
            os.kill(spawned[0], signal.SIGKILL)  # the restart fails
            await until(lambda: pool.status()[1].restart_failures == 1)
            assert not pool._shards[1].alive and len(spawned) == 1 and await held(pool) == [0]
            # Nothing waits on them: the next request is answered and the pool goes idle.
            assert await asyncio.wait_for(pool.submit_payload(only_a, Encoding.PROTOBUF), 60) == 2
            await asyncio.wait_for(pool.wait_idle(), 60)
            assert pool.queued_bytes == 0 and pool.stats.records_consumed == 2
        finally:
            with contextlib.suppress(ProcessLookupError):
                for pid in spawned:
                    os.kill(pid, signal.SIGKILL)
            await pool.stop()

    asyncio.run(main())


def test_resources_remembered_from_before_do_not_count_in_the_routing_byte_bound() -> None:
    """The bound on Resource bytes is on those parsed (a Python loop each): a request whose
    Resources together exceed it, but were seen before, is routed, not decoded whole. (Before:
    every Resource's bytes counted, so such a request was decoded whole at every send.)"""
    from via_otlp.shard.wire import ROUTE_MAX_PARSES, ROUTE_MAX_RESOURCE_BYTES

    pad = "p" * 600
    payload = request({f"svc{i}-{pad}": 1 for i in range(30)})
    resource_bytes = 30 * len(pad)
    assert resource_bytes > ROUTE_MAX_RESOURCE_BYTES and ROUTE_MAX_PARSES >= 30  # (the case)
    router = Router(NormaliseOptions(), 2)
    assert router.cut(payload) is None  # first seen: more bytes parsed than the bound
    cut = router.cut(payload)  # the Resources parsed then are remembered: a few left to parse
    assert cut is not None and all(cut)  # (the 30 services fall on both shards)
    assert sum(len(p) for pieces in cut for p in pieces) == len(payload)
