"""Worker failure loses nothing and counts nothing twice: a request is either answered "retry"
with none of it gone on (its sender resends it whole), or consumed. Real shard processes: a
shard is held still with SIGSTOP and killed with SIGKILL at the point under test, never by
timing; waits for what must happen use the suite's client deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLIENT_TIMEOUT
from tests.shard.test_route import NOW, config, held, request, service_on
from via_otlp.config import Config, parse_config
from via_otlp.receive.intake import QueueFullError
from via_otlp.receive.otlp_codec import Encoding
from via_otlp.shard import pool as pool_module
from via_otlp.shard import wire
from via_otlp.shard import worker as worker_module
from via_otlp.shard.pool import ShardPool

PB = Encoding.PROTOBUF


async def until(done: Callable[[], bool]) -> None:
    """Until `done()` holds (it must: the deadline is the suite's, not a bound tested)."""

    async def wait() -> None:
        while not done():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), CLIENT_TIMEOUT)


def _resume(pool: ShardPool, *pids: int) -> None:
    for pid in {*pids, *(s.pid for s in pool.status())} - {0}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _first_held(spawned: list[int]) -> Callable[[], Any]:
    """`_start_process` whose first shard holds still (SIGSTOP) before it can read INIT;
    the pids it starts go to `spawned`."""
    real = pool_module._start_process

    def start() -> Any:
        process, sock = real()
        if not spawned:
            os.kill(process.pid, signal.SIGSTOP)
        spawned.append(process.pid)
        return process, sock

    return start


async def _answer(pool: ShardPool, payload: bytes) -> int | str:
    """What the sender of `payload` is answered: its records, or "retry"."""
    try:
        return await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT)
    except QueueFullError:
        return "retry"


def _hold_backoff(pool: ShardPool, delays: list[float] | None = None) -> asyncio.Event:
    """Restart delays (recorded in `delays`) last until the returned event is set."""
    over = asyncio.Event()

    async def held_sleep(delay: float) -> None:
        if delays is not None:
            delays.append(delay)
        await over.wait()

    pool._backoff_sleep = held_sleep
    return over


async def _fail_restart(pool: ShardPool, spawned: list[int]) -> None:
    """Shard 1 dies and its replacement (`_first_held`: held before INIT) dies too: shard 1
    is down, its restart failed once, the next waits for the backoff."""
    os.kill(pool.status()[1].pid, signal.SIGKILL)
    await until(lambda: bool(spawned))
    os.kill(spawned[0], signal.SIGKILL)
    await until(lambda: pool.status()[1].restart_failures == 1)


async def _ordered_pool(tmp_path: Path, **pipeline: int) -> ShardPool:
    """A started pool in ordered mode (as replay runs it)."""
    pool = ShardPool(config(tmp_path, **pipeline), lambda events: None, persist=False, ordered=True)
    await pool.start()
    return pool


def _kill_held(spawned: list[int]) -> None:
    """The held replacement, if a test ended before it was killed."""
    with contextlib.suppress(ProcessLookupError):
        for pid in spawned[:1]:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("grace", [CLIENT_TIMEOUT, 0.0])
def test_a_request_decoded_while_the_pool_stops_is_consumed_or_answered_retry(
    tmp_path: Path, grace: float
) -> None:
    """Shard 0 holds still with a request's part to decode when the pool is told to stop.
    Given the time, the request is decoded and consumed before STOP goes out; given none,
    STOP goes first and the request, decoded after it, is answered "retry" with nothing of
    it gone on. (Before: answered with its 6 records, sent to shards that had stopped
    reading: neither consumed nor counted lost.)"""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3})  # routed: each owner decodes its part

    async def main() -> tuple[Any, ShardPool]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        pid0 = pool.status()[0].pid
        try:
            os.kill(pid0, signal.SIGSTOP)
            fut = asyncio.ensure_future(pool.submit_payload(payload, PB, now_ns=NOW))
            await until(lambda: any(r.parts for r in pool._routed.values()))  # shard 1's in
            stopping = asyncio.ensure_future(pool.stop(grace))
            # No request is taken once `_closing`; STOP is out once `_stopping` (the old
            # code sent it with `_closing`, in the same step).
            stop_sent = "_stopping" if grace == 0 and hasattr(pool, "_stopping") else "_closing"
            await until(lambda: bool(getattr(pool, stop_sent)))
            os.kill(pid0, signal.SIGCONT)
            await asyncio.wait_for(stopping, CLIENT_TIMEOUT)
            with contextlib.suppress(QueueFullError):
                return await asyncio.wait_for(fut, CLIENT_TIMEOUT), pool
            return "retry", pool
        finally:
            _resume(pool, pid0)
            await pool.kill()

    answer, pool = asyncio.run(main())
    consumed, lost = pool.stats.records_consumed, pool.lost_records
    if grace:
        assert (answer, consumed, lost) == (6, 6, 0)
    else:
        assert (answer, consumed, lost) == ("retry", 0, 0)
    assert pool.queued_bytes == 0 and not pool._decoding


def test_ordered_a_decoder_killed_after_its_batches_came_back_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Ordered (a replay): request 2 is decoded whole by shard 1, its batches wait for
    request 1 (shard 0 holds still), and shard 1 is killed. Request 2 is answered "retry";
    once resent, every record is consumed once and none is lost. (Before: its batches went on
    when request 1 was done: shard 0's records consumed twice with the resend, shard 1's
    part counted lost.)"""
    a, b = service_on(0), service_on(1)
    first = request({a: 2})  # its one owner, shard 0, decodes it
    second = request({a: 3, b: 3})  # more than a batch: decoded whole by the least busy
    cfg = config(tmp_path, batch_max_records=4)

    async def main() -> ShardPool:
        pool = ShardPool(cfg, lambda events: None, persist=False, ordered=True)
        await pool.start()
        pid0, pid1 = (s.pid for s in pool.status())
        try:
            os.kill(pid0, signal.SIGSTOP)
            f1 = asyncio.ensure_future(pool.submit_payload(first, PB, now_ns=NOW))
            await until(lambda: pool._shards[0].status.decoding_bytes > 0)
            f2 = asyncio.ensure_future(pool.submit_payload(second, PB, now_ns=NOW))
            await until(lambda: bool(pool._held.get(2)) and pool._held[2][-1][0])
            assert [d for _, _, d in pool._held[2]] == [1, 1]  # two batches, by shard 1
            os.kill(pid1, signal.SIGKILL)
            with pytest.raises(QueueFullError):
                await asyncio.wait_for(f2, CLIENT_TIMEOUT)
            os.kill(pid0, signal.SIGCONT)
            assert await asyncio.wait_for(f1, CLIENT_TIMEOUT) == 2
            await until(lambda: pool.status()[1].pid != pid1 and pool._shards[1].alive)
            # The sender resends request 2.
            assert await asyncio.wait_for(pool.submit_payload(second, PB), CLIENT_TIMEOUT) == 6
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool
        finally:
            _resume(pool, pid0)
            await pool.stop()

    pool = asyncio.run(main())
    assert (pool.stats.records_consumed, pool.lost_records) == (2 + 6, 0)


def test_a_shard_whose_restart_fails_is_restarted_after_a_backoff_and_shown_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 1 dies and its replacement dies before READY. Meanwhile it is `down` (with a
    restart failure counted), requests with records for it are answered "retry" (routed, or
    decoded whole by shard 0), shard 0's own go on; after the backoff a second restart brings
    it back and its requests are taken. (Before: never restarted, retry answers forever.)"""
    a, b = service_on(0), service_on(1)
    only_a, only_b = request({a: 2}), request({b: 2})
    large = request({a: 3, b: 3})  # not routed (more than a batch): decoded whole by shard 0
    spawned: list[int] = []
    first_held = _first_held(spawned)

    async def main() -> tuple[ShardPool, list[float]]:
        pool = ShardPool(config(tmp_path, batch_max_records=4), lambda e: None, persist=False)
        await pool.start()
        delays: list[float] = []
        backoff = _hold_backoff(pool, delays)
        try:
            monkeypatch.setattr(pool_module, "_start_process", first_held)
            await _fail_restart(pool, spawned)
            st = pool.status()[1]
            assert st.down and not pool._shards[1].alive and len(spawned) == 1
            for payload in (only_b, large):
                with pytest.raises(QueueFullError):
                    await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT)
            assert await asyncio.wait_for(pool.submit_payload(only_a, PB), CLIENT_TIMEOUT) == 2
            backoff.set()  # the backoff is over: the second restart succeeds
            await until(lambda: not pool.status()[1].down)
            assert len(spawned) == 2 and pool._shards[1].alive
            assert await asyncio.wait_for(pool.submit_payload(only_b, PB), CLIENT_TIMEOUT) == 2
            assert await asyncio.wait_for(pool.submit_payload(large, PB), CLIENT_TIMEOUT) == 6
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool, delays
        finally:
            _kill_held(spawned)
            await pool.stop()

    pool, delays = asyncio.run(main())
    # The first delay is the schedule's first (0.1 s, jittered down to half of it).
    first = pool_module.backoff_delay(
        0, replace(pool_module.RESTART_BACKOFF, randomization_factor=0)
    )
    assert len(delays) == 1 and first * 2 / 3 - 1e-9 <= delays[0] <= first * 4 / 3 + 1e-9
    assert (pool.stats.records_consumed, pool.lost_records) == (2 + 2 + 6, 0)
    assert pool.status()[1].restarts == 1 and pool.queued_bytes == 0


def config3(tmp_path: Path, **pipeline: int) -> Config:
    """Three shards (`config`'s are two)."""
    extra = "".join(f", {k}: {v}" for k, v in pipeline.items())
    return parse_config(
        f"""{{pipeline: {{workers: 3{extra}}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )


def test_ordered_a_routed_request_answered_retry_holds_back_no_later_request(
    tmp_path: Path,
) -> None:
    """Ordered, three shards: request 1 is routed to shards 0 (held still) and 1, request 2
    (shard 2's only) is decoded and waits for its turn; shard 1 is killed. Request 1 is
    answered "retry", and request 2 goes on at once: nothing of request 1 will go on, however
    long shard 0 takes to finish its part. (Before: request 2 waited until shard 0 finished
    decoding, and then for ever, `wait_idle`, `flush` and `stop` with it.)"""
    a, b, c = (service_on(k, 3) for k in range(3))

    async def main() -> ShardPool:
        pool = ShardPool(config3(tmp_path), lambda events: None, persist=False, ordered=True)
        await pool.start()
        pid0, pid1, _ = (s.pid for s in pool.status())
        try:
            os.kill(pid0, signal.SIGSTOP)
            f1 = asyncio.ensure_future(pool.submit_payload(request({a: 1, b: 1}), PB, now_ns=NOW))
            await until(lambda: any(r.parts for r in pool._routed.values()))  # shard 1's in
            f2 = asyncio.ensure_future(pool.submit_payload(request({c: 2}), PB, now_ns=NOW))
            await until(lambda: bool(pool._held.get(2)))
            os.kill(pid1, signal.SIGKILL)
            with pytest.raises(QueueFullError):
                await asyncio.wait_for(f1, CLIENT_TIMEOUT)
            assert await asyncio.wait_for(f2, CLIENT_TIMEOUT) == 2  # shard 0 still held
            await until(lambda: pool._shards[1].alive and pool.status()[1].pid != pid1)
            os.kill(pid0, signal.SIGCONT)  # its part of request 1 comes, and is freed
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool
        finally:
            _resume(pool, pid0)
            await pool.stop()

    pool = asyncio.run(main())
    assert (pool.stats.records_consumed, pool.lost_records) == (2, 0)
    assert pool.queued_bytes == 0 and not pool._routed


def _stalling_send_decoded(sock: Any, rid: int, parts: Any) -> None:
    """`worker._send_decoded` of a shard that holds itself still (SIGSTOP) once it has sent
    the first of a request's batches and before it decodes the next."""
    held = None
    for part in parts:
        if held is not None:
            wire.send_frames(sock, [wire.seq_frame(wire.Kind.DECODED, rid, 0, held)])
            os.kill(os.getpid(), signal.SIGSTOP)
        held = part
    wire.send_frames(sock, [wire.seq_frame(wire.Kind.DECODED, rid, 1, held or b"")])


def test_a_decoder_killed_after_a_batch_went_on_answers_that_batch_not_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of two batches is decoded whole; its first (shard 1's 4 records) goes on,
    and the decoder is killed before it decodes the second. The request is answered with the
    4 records that went on, which shard 1 consumes: the sender resends none of them. (Before:
    answered "retry" while shard 1 consumed them: the resend counted them twice.) Batches go
    on as they come only past GATHER_MAX_BYTES of a request (set to 0 here); below it, none
    goes on before the last: test_a_decoder_killed_between_the_batches_..._nothing."""
    a, b = service_on(0), service_on(1)
    payload = request({b: 4, a: 4})  # more than a batch: decoded whole, b's records first
    # The shards are forked from this process: they run the stalling `_send_decoded`.
    monkeypatch.setattr(worker_module, "_send_decoded", _stalling_send_decoded)
    monkeypatch.setattr(pool_module, "GATHER_MAX_BYTES", 0)

    async def main() -> tuple[ShardPool, Any]:
        pool = ShardPool(config(tmp_path, batch_max_records=4), lambda e: None, persist=False)
        await pool.start()
        pids = [s.pid for s in pool.status()]
        try:
            fut = asyncio.ensure_future(pool.submit_payload(payload, PB, now_ns=NOW))
            await until(lambda: any(r.sequenced for r in pool._decoding.values()))
            decoder = pool._decoding[1].decoder
            os.kill(pids[decoder], signal.SIGKILL)
            answer: int | str
            try:
                answer = await asyncio.wait_for(fut, CLIENT_TIMEOUT)
            except QueueFullError:
                answer = "retry"
            await until(lambda: all(s.alive for s in pool._shards))
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool, answer
        finally:
            _resume(pool, *pids)
            await pool.stop()

    pool, answer = asyncio.run(main())
    assert (answer, pool.stats.records_consumed, pool.lost_records) == (4, 4, 0)
    assert pool.stats.records_accepted == 4 and pool.queued_bytes == 0


async def _submit_held_still(pool: ShardPool, payload: bytes) -> tuple[asyncio.Future[int], int]:
    """Every shard held still (SIGSTOP), `payload` submitted: its answer to come, and the
    shard that decodes it whole."""
    for s in pool.status():
        os.kill(s.pid, signal.SIGSTOP)
    fut = asyncio.ensure_future(pool.submit_payload(payload, PB, now_ns=NOW))
    await until(lambda: bool(pool._decoding))
    return fut, pool._decoding[1].decoder


def _first_batch_in(pool: ShardPool, cfg: Config, k: int, payload: bytes) -> None:
    """Request 1's first batch, as shard `k` decodes it (`Shard.decode`, made in this
    process), handed to the pool as if read from `k`."""
    from via_otlp.shard.worker import Shard

    first = next(iter(Shard(cfg, k, 2).decode(memoryview(payload), PB, NOW)))
    body = memoryview(wire.seq_frame(wire.Kind.DECODED, 1, 0, first))[5:]
    pool._on_frame(pool._shards[k], wire.Kind.DECODED, body)


def test_a_decoder_killed_between_the_batches_of_a_request_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """Unordered (serve): a request of two batches, its decoder killed after the first came
    back. It is answered "retry" and nothing of it went on: resent, each record is consumed
    once, none lost. (Before: the first batch went on as it came, so the resend consumed its
    records twice, and the dead shard's part of it counted lost.) The first DECODED frame is
    the one a shard makes (`Shard.decode`, in this process), handed to the pool as if read
    from the decoder: the real decoder is held still, then killed."""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3})  # more than a batch: decoded whole, in two batches
    cfg = config(tmp_path, batch_max_records=4)

    async def main() -> ShardPool:
        pool = ShardPool(cfg, lambda events: None, persist=False)
        await pool.start()
        pids = [s.pid for s in pool.status()]
        try:
            fut, k = await _submit_held_still(pool, payload)
            os.kill(pids[1 - k], signal.SIGCONT)
            _first_batch_in(pool, cfg, k, payload)
            os.kill(pids[k], signal.SIGKILL)
            with pytest.raises(QueueFullError):
                await asyncio.wait_for(fut, CLIENT_TIMEOUT)
            await until(lambda: pool.status()[k].pid != pids[k] and pool._shards[k].alive)
            # The sender resends it.
            assert await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT) == 6
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool
        finally:
            _resume(pool, *pids)
            await pool.stop()

    pool = asyncio.run(main())
    assert (pool.stats.records_consumed, pool.lost_records) == (6, 0)
    assert pool.queued_bytes == 0 and not pool._held


def test_a_request_answered_retry_while_its_decoder_still_decodes_stays_charged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serve, batches going on as they come (GATHER_MAX_BYTES 0): a request of two batches
    whose first comes back after the other shard died is answered "retry" at once, but its
    bytes stay charged (`max_queued_bytes`) while its decoder still decodes the rest; they
    come off when its last batch is in, which is freed: nothing of it went on, nothing lost.
    (Before: taken off at the answer, so the pool took more bytes than its bound while the
    decoder still held these.) The first batch is made in this process as in the test
    above; the real decoder, held still meanwhile, then decodes the request and is let go."""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3})  # more than a batch: decoded whole, in two batches
    cfg = config(tmp_path, batch_max_records=4)
    monkeypatch.setattr(pool_module, "GATHER_MAX_BYTES", 0)
    spawned: list[int] = []

    async def main() -> tuple[ShardPool, Any]:
        pool = ShardPool(cfg, lambda events: None, persist=False)
        await pool.start()
        _hold_backoff(pool)
        pids = [s.pid for s in pool.status()]
        try:
            fut, k = await _submit_held_still(pool, payload)
            monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
            os.kill(pids[1 - k], signal.SIGKILL)  # its restart holds still: not alive
            await until(lambda: bool(spawned) and not pool._shards[1 - k].alive)
            _first_batch_in(pool, cfg, k, payload)
            with pytest.raises(QueueFullError):
                await asyncio.wait_for(fut, CLIENT_TIMEOUT)
            charged = pool.queued_bytes
            os.kill(pids[k], signal.SIGCONT)  # the decoder decodes it and sends both batches
            await until(lambda: not pool._decoding)
            return pool, (charged, pool.queued_bytes)
        finally:
            _kill_held(spawned)
            _resume(pool, *pids)
            await pool.stop()

    pool, (charged, after) = asyncio.run(main())
    assert (charged, after) == (len(payload), 0)
    assert (pool.stats.records_consumed, pool.lost_records) == (0, 0)
    assert not pool._held


def test_a_restarting_shard_takes_no_records_before_it_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 1 dies; its replacement holds still before READY, then dies too. Meanwhile it is
    `down` and not alive, and a request with records for it is answered "retry"; resent once
    a restart is READY, it is consumed whole. (Before: alive as soon as it was started, the
    request was answered with its 6 records and shard 1's 3 were lost with the failed
    attempt.)"""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3})  # more than a batch: decoded whole by shard 0
    spawned: list[int] = []

    async def main() -> tuple[ShardPool, Any]:
        pool = ShardPool(config(tmp_path, batch_max_records=4), lambda e: None, persist=False)
        await pool.start()
        backoff = _hold_backoff(pool)
        try:
            monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
            reader = pool._shards[1].reader
            os.kill(pool.status()[1].pid, signal.SIGKILL)
            # Connected to the replacement, which has not read INIT.
            await until(lambda: pool._shards[1].reader not in (reader, None))
            restoring = (pool.status()[1].down, pool._shards[1].alive)
            answer = await _answer(pool, payload)
            os.kill(spawned[0], signal.SIGKILL)  # this restart fails
            await until(lambda: pool.status()[1].restart_failures == 1)
            lost = pool.lost_records
            backoff.set()
            await until(lambda: not pool.status()[1].down)
            assert pool._shards[1].alive
            # The sender resends it.
            assert await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT) == 6
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool, (restoring, answer, lost)
        finally:
            _kill_held(spawned)
            await pool.stop()

    pool, seen = asyncio.run(main())
    assert seen == ((True, False), "retry", 0)
    assert (pool.stats.records_consumed, pool.lost_records) == (6, 0)


@pytest.mark.parametrize("ordered", [False, True])
def test_a_request_of_several_batches_for_a_shard_down_is_answered_retry_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ordered: bool
) -> None:
    """Shard 1 is down (its restart failed; the backoff held). A request of two batches, the
    first with no records for shard 1, the second with 3, is answered "retry" with nothing of
    it gone on; resent once shard 1 is back, it is consumed whole. (Before: the first batch
    went on, the second's 3 records for shard 1 were counted lost, and the request was
    answered with all 8.)"""
    a, b = service_on(0), service_on(1)
    payload = request({a: 5, b: 3})  # decoded whole: batches of a:4, then a:1 and b:3
    spawned: list[int] = []

    async def main() -> tuple[ShardPool, Any]:
        cfg = config(tmp_path, batch_max_records=4)
        pool = ShardPool(cfg, lambda e: None, persist=False, ordered=ordered)
        await pool.start()
        backoff = _hold_backoff(pool)
        try:
            monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
            await _fail_restart(pool, spawned)
            answer = await _answer(pool, payload)
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            seen = (answer, pool.lost_records, pool.stats.records_consumed)
            backoff.set()
            await until(lambda: pool._shards[1].alive)
            # The sender resends it.
            assert await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT) == 8
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool, seen
        finally:
            _kill_held(spawned)
            await pool.stop()

    pool, seen = asyncio.run(main())
    assert seen == ("retry", 0, 0)
    assert (pool.stats.records_consumed, pool.lost_records) == (8, 0)
    assert pool.stats.records_accepted == 8 and pool.queued_bytes == 0


@pytest.mark.parametrize("when", ["grace", "stop sent"])
def test_a_shard_dying_while_the_pool_stops_is_waited_for_by_nothing(
    tmp_path: Path, when: str
) -> None:
    """The pool stops with all the grace in the world (the suite's client deadline) and shard
    1 is killed: while the requests in flight are finished (shard 0 holds one still), or
    after STOP went out (shard 1 held still before it could answer it; the request was
    consumed before). It is marked down at
    once and nothing waits on it: the request is consumed and `stop` returns within the
    deadline. (Before: it stayed alive, so the request's batch waited for it, and so did
    `stop`, for the whole grace and then six times it for its STOP answer.)"""
    a = service_on(0)

    async def main() -> tuple[ShardPool, int]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        pid0, pid1 = (s.pid for s in pool.status())
        try:
            if when == "grace":
                os.kill(pid0, signal.SIGSTOP)
            fut = asyncio.ensure_future(pool.submit_payload(request({a: 2}), PB, now_ns=NOW))
            if when == "grace":
                await until(lambda: pool._shards[0].status.decoding_bytes > 0)
            else:  # consumed before the pool stops: STOP goes out at once
                await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
                os.kill(pid1, signal.SIGSTOP)
            stopping = asyncio.ensure_future(pool.stop(CLIENT_TIMEOUT))
            await until(lambda: pool._closing if when == "grace" else pool._stopping)
            os.kill(pid1, signal.SIGKILL)
            await until(lambda: not pool._shards[1].alive)
            if when == "grace":
                os.kill(pid0, signal.SIGCONT)
            answer = await asyncio.wait_for(fut, CLIENT_TIMEOUT)
            await asyncio.wait_for(stopping, CLIENT_TIMEOUT)
            return pool, answer
        finally:
            _resume(pool, pid0, pid1)
            await pool.kill()

    pool, answer = asyncio.run(main())
    assert (answer, pool.stats.records_consumed, pool.lost_records) == (2, 2, 0)
    assert pool.status()[1].down and pool.queued_bytes == 0
    assert not pool.status()[0].down  # it stopped when told to


def test_ordered_a_batch_waiting_its_turn_with_a_part_a_dead_shard_kept_is_answered_retry(
    tmp_path: Path,
) -> None:
    """Ordered, three shards: request 1 is decoded by shard 0 (held still); request 2 is
    routed to shards 1 and 2, both parts are in, and its batch waits for its turn, its parts
    kept by their owners. Shard 2 is killed and restarted before request 1 is done. Request 2
    is answered "retry" at once; resent, it is consumed once and nothing is lost. (Without
    `_lost` dropping such a batch: it went on after request 1 to the restarted shard 2, which
    no longer had its part: answered with 2 records, 1 of them lost.)"""
    a, b, c = (service_on(k, 3) for k in range(3))
    second = request({b: 1, c: 1})

    async def main() -> tuple[ShardPool, Any]:
        pool = ShardPool(config3(tmp_path), lambda events: None, persist=False, ordered=True)
        await pool.start()
        pid0, _, pid2 = (s.pid for s in pool.status())
        try:
            os.kill(pid0, signal.SIGSTOP)
            f1 = asyncio.ensure_future(pool.submit_payload(request({a: 1}), PB, now_ns=NOW))
            f2 = asyncio.ensure_future(pool.submit_payload(second, PB, now_ns=NOW))
            await until(lambda: bool(pool._held.get(2)))  # request 2's batch, merged
            os.kill(pid2, signal.SIGKILL)
            await until(lambda: pool._shards[2].alive and pool.status()[2].pid != pid2)
            os.kill(pid0, signal.SIGCONT)
            assert await asyncio.wait_for(f1, CLIENT_TIMEOUT) == 1
            answer: int | str
            try:
                answer = await asyncio.wait_for(f2, CLIENT_TIMEOUT)
            except QueueFullError:
                answer = "retry"
            lost = pool.lost_records
            assert await asyncio.wait_for(pool.submit_payload(second, PB), CLIENT_TIMEOUT) == 2
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return pool, (answer, lost)
        finally:
            _resume(pool, pid0)
            await pool.stop()

    pool, seen = asyncio.run(main())
    assert seen == ("retry", 0)
    assert (pool.stats.records_consumed, pool.lost_records) == (1 + 2, 0)


def test_status_shows_a_shard_down_and_its_failed_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's /status `shards` section: shard 1 died and its restart failed, so it is
    listed `down` with one restart failure; once a restart is READY it is down no more. (The
    fields were never read by a test.)"""
    from tests.conftest import free_port
    from via_otlp.app import App

    cfg = parse_config(
        f"""{{receive: {{grpc: {{endpoint: "127.0.0.1:{free_port()}"}},
                        http: {{endpoint: "127.0.0.1:{free_port()}"}}}},
             pipeline: {{workers: 2}}, state: {{data_dir: "{tmp_path}"}},
             registry: {{enabled: false}}, control: {{enabled: false}},
             correlate: {{enabled: false}}}}"""
    )
    spawned: list[int] = []

    def shards(status: dict[str, Any]) -> Any:
        s = status["shards"]
        each = s["each"][1]
        return s["down"], s["restarts"], s["restart_failures"], each["down"], each["pid"] > 0

    async def main() -> list[Any]:
        app = App(cfg)
        await app.start()
        pool = app.pool
        assert pool is not None
        backoff = _hold_backoff(pool)
        seen = [shards(app.status())]
        try:
            monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
            await _fail_restart(pool, spawned)
            seen.append(shards(app.status()))
            backoff.set()
            await until(lambda: pool._shards[1].alive)
            seen.append(shards(app.status()))
        finally:
            _kill_held(spawned)
            await app.shutdown()
        return seen

    assert asyncio.run(main()) == [
        ([], 0, 0, False, True),
        ([1], 1, 1, True, False),  # no process meanwhile
        ([], 1, 1, False, True),
    ]


def test_a_shard_dying_soon_after_its_restart_is_restarted_after_a_backoff(
    tmp_path: Path,
) -> None:
    """Shard 1 dies and is restarted at once; its replacement dies as soon as it is READY, and
    is restarted only after the backoff's next delay, which grows with each such death. (Before:
    the backoff began again from nothing at each death, so a shard dying soon after each start
    was restarted in a busy loop.)"""

    async def main() -> list[float]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        delays: list[float] = []

        async def recorded_sleep(delay: float) -> None:
            delays.append(delay)

        pool._backoff_sleep = recorded_sleep
        try:
            seen = []
            for _ in range(3):
                pid = pool.status()[1].pid
                os.kill(pid, signal.SIGKILL)

                def restarted(pid: int = pid) -> bool:
                    return pool._shards[1].alive and pool.status()[1].pid != pid

                await until(restarted)
                seen.append(len(delays))
            assert seen == [0, 1, 2]  # the first death after a start: restarted at once
            return delays
        finally:
            await pool.stop()

    first, second = asyncio.run(main())
    assert second >= first > 0  # [b/2, b] of a base that doubles: never smaller


def _ready_within(pool: ShardPool, seconds: float) -> None:
    pool.config = replace(
        pool.config, pipeline=replace(pool.config.pipeline, ready_timeout=seconds)
    )


def test_a_start_whose_shard_never_becomes_ready_fails_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard holds still before it restores (as on a stuck disk) and never says READY: the
    start fails with an error naming `pipeline.ready_timeout`, and no shard process is left.
    (Before: start() waited for it for ever, and `serve` never reached SERVING.)"""
    spawned: list[int] = []
    monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))

    async def main() -> str:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        _ready_within(pool, 0.5)
        try:
            with pytest.raises(pool_module.StartupError) as failed:
                await asyncio.wait_for(pool.start(), CLIENT_TIMEOUT)
            return str(failed.value)
        finally:
            _kill_held(spawned)

    message = asyncio.run(main())
    assert "did not restore its state" in message and "pipeline.ready_timeout" in message
    assert len(spawned) == 2
    for pid in spawned:  # killed and reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_restart_that_never_becomes_ready_is_killed_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 1 dies; its replacement holds still before READY (a restore that hangs). Past
    `pipeline.ready_timeout` it is killed and counted a failed restart, and the next attempt
    brings shard 1 back. (Before: the restart loop waited on it for ever, shard 1 down.)"""
    b = service_on(1)
    spawned: list[int] = []

    async def main() -> tuple[int, int]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        try:
            _ready_within(pool, 0.5)
            monkeypatch.setattr(pool_module, "_start_process", _first_held(spawned))
            os.kill(pool.status()[1].pid, signal.SIGKILL)
            await until(lambda: pool.status()[1].restart_failures == 1)
            _ready_within(pool, CLIENT_TIMEOUT)  # the next attempt may take its time
            await until(lambda: not pool.status()[1].down)
            assert pool._shards[1].alive and len(spawned) == 2
            consumed = await asyncio.wait_for(
                pool.submit_payload(request({b: 2}), PB), CLIENT_TIMEOUT
            )
            return consumed, spawned[0]
        finally:
            _kill_held(spawned)
            await pool.stop()

    consumed, hung = asyncio.run(main())
    assert consumed == 2
    with pytest.raises(ProcessLookupError):  # the hung one was killed and reaped
        os.kill(hung, 0)


def _first_part_cut(sock: Any, rid: int, parts: Any) -> None:
    """`worker._send_decoded` of a shard whose first DECODED ever is cut to 3 bytes (a part
    that does not parse); later ones are whole."""
    frames = [bytes(p) for p in parts] or [b""]
    if not getattr(_first_part_cut, "sent", False):
        _first_part_cut.sent = True  # type: ignore[attr-defined]  # per forked shard
        frames[0] = frames[0][:3]
    for i, frame in enumerate(frames):
        last = int(i == len(frames) - 1)
        wire.send_frames(sock, [wire.seq_frame(wire.Kind.DECODED, rid, last, frame)])


def test_a_routed_part_that_does_not_parse_falls_back_to_decoding_the_request_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A routed request's parts come back from both owners cut short (headers that do not
    parse): the pool frees what it can, has one shard decode the request whole, and the
    request is consumed, nothing lost and nothing twice. (Before 99b3612 the fallback read
    the parts' headers with `_header`, which raised on them: the request never finished.)"""
    a, b = service_on(0), service_on(1)
    monkeypatch.setattr(worker_module, "_send_decoded", _first_part_cut)

    async def main() -> tuple[int, ShardPool]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        try:
            got = await asyncio.wait_for(
                pool.submit_payload(request({a: 3, b: 3}), PB, now_ns=NOW), CLIENT_TIMEOUT
            )
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return got, pool
        finally:
            await pool.stop()

    got, pool = asyncio.run(main())
    assert got == 6 and (pool.routed, pool.routed_whole) == (1, 1)
    assert (pool.stats.records_consumed, pool.lost_records) == (6, 0)
    assert pool.queued_bytes == 0 and not pool._routed


@pytest.mark.parametrize("defect", ["_merged", "_arrive"])
def test_a_decoded_frame_the_pool_cannot_handle_still_answers_its_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    """A defect while the pool handles a DECODED frame (made here: `_merged` for a routed
    request, `_arrive` for one its owner decoded raises) answers the request "retry" and
    frees what the shards kept of it; the pool takes the next request as before. (Before:
    logged, and the request was never answered: its sender waited for its deadline.)"""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3}) if defect == "_merged" else request({b: 3})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    async def main() -> tuple[int | str, list[int], int]:
        pool = ShardPool(config(tmp_path), lambda events: None, persist=False)
        await pool.start()
        try:
            with monkeypatch.context() as m:
                m.setattr(ShardPool, defect, broken)
                answer = await _answer(pool, payload)
                await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            kept = await held(pool)
            resent = await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT)
            return answer, kept, resent
        finally:
            await pool.stop()

    answer, kept, resent = asyncio.run(main())
    records = 6 if defect == "_merged" else 3
    assert (answer, kept, resent) == ("retry", [0, 0], records)


def test_ordered_a_request_given_up_keeps_none_of_its_later_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordered (replay): a defect while the pool handles the first of a request's two
    batches answers it "retry" (`_give_up`) and its turn passes; its second batch, decoded
    after, is freed where it comes: nothing of it is held in the pool or in the shards.
    (Before: held for a turn that had passed, in the pool and in its decoder, for good: the
    pool was never idle again, so a flush waited for ever.)"""
    a, b = service_on(0), service_on(1)
    payload = request({a: 3, b: 3})  # more than a batch: decoded whole, in two batches
    real_release, real_on_frame = ShardPool._release_held, ShardPool._on_frame
    calls: list[str] = []

    def release_once_broken(self: ShardPool) -> None:
        calls.append("release")
        if calls.count("release") == 1:  # the first batch's: a defect
            raise RuntimeError("a defect")
        real_release(self)

    def on_frame(self: ShardPool, shard: Any, kind: wire.Kind, body: memoryview) -> None:
        if kind is wire.Kind.DECODED:
            calls.append("decoded")
        real_on_frame(self, shard, kind, body)

    async def main() -> tuple[int | str, list[int], int]:
        pool = await _ordered_pool(tmp_path, batch_max_records=4)
        try:
            with monkeypatch.context() as m:
                m.setattr(ShardPool, "_release_held", release_once_broken)
                m.setattr(ShardPool, "_on_frame", on_frame)
                answer = await _answer(pool, payload)
                await until(lambda: calls.count("decoded") == 2)
                await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            assert not pool._held
            kept = await held(pool)
            resent = await asyncio.wait_for(pool.submit_payload(payload, PB), CLIENT_TIMEOUT)
            return answer, kept, resent
        finally:
            await pool.stop()

    assert asyncio.run(main()) == ("retry", [0, 0], 6)


def test_ordered_a_defect_in_a_request_released_behind_another_holds_back_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordered (replay): request B's two batches wait their turn behind request A (its decoder
    held still); A's batch comes, and both go on, but B's first batch cannot be sequenced (a
    defect, made here). B is answered "retry" with nothing of it kept anywhere, and the pool
    goes on: idle, and B resent is consumed. (Before: the defect went up to the frame of A,
    B was never answered, its second batch stayed in its decoder, and every request after B
    waited its turn for ever.)"""
    a, b = service_on(0), service_on(1)
    first, second = request({a: 3}), request({b: 5})  # B: two batches of at most 4
    real = ShardPool._sequence_batch

    def broken_for_four(
        self: ShardPool, tmax: int, header: dict[str, Any], parts: memoryview, decoder: int
    ) -> None:
        if header["records"] == 4:  # B's first batch
            raise RuntimeError("a defect")
        real(self, tmax, header, parts, decoder)

    async def main() -> tuple[int | str, int | str, list[int], int]:
        pool = await _ordered_pool(tmp_path, batch_max_records=4)
        pid0 = pool.status()[0].pid
        try:
            os.kill(pid0, signal.SIGSTOP)
            answer_a = asyncio.ensure_future(_answer(pool, first))
            with monkeypatch.context() as m:
                m.setattr(ShardPool, "_sequence_batch", broken_for_four)
                answer_b = asyncio.ensure_future(_answer(pool, second))
                await until(lambda: len(pool._held.get(2, [])) == 2)  # B waits behind A
                os.kill(pid0, signal.SIGCONT)
                answers = await asyncio.gather(answer_a, answer_b)
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            kept = await held(pool)
            resent = await asyncio.wait_for(pool.submit_payload(second, PB), CLIENT_TIMEOUT)
            return answers[0], answers[1], kept, resent
        finally:
            _resume(pool, pid0)
            await pool.stop()

    assert asyncio.run(main()) == (3, "retry", [0, 0], 5)


def test_ordered_a_routed_request_given_up_lets_the_next_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ordered (replay): a routed request (one part held still in shard 0) with a request
    waiting its turn behind it; the last part comes and the pool cannot merge them (a defect,
    made here): the routed request is answered "retry" (`_give_up`) and the one behind it goes
    on at once. (Before: it waited for some other frame to come, and with none, for ever.)"""
    a, b = service_on(0), service_on(1)
    routed, behind = request({a: 3, b: 3}), request({b: 2})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    async def main() -> tuple[int | str, int | str, list[int]]:
        pool = await _ordered_pool(tmp_path)
        pid0 = pool.status()[0].pid
        try:
            os.kill(pid0, signal.SIGSTOP)
            with monkeypatch.context() as m:
                m.setattr(ShardPool, "_merged", broken)
                first = asyncio.ensure_future(_answer(pool, routed))
                await until(lambda: any(r.parts for r in pool._routed.values()))
                second = asyncio.ensure_future(_answer(pool, behind))
                await until(lambda: bool(pool._held.get(2)))  # its turn is after the first's
                os.kill(pid0, signal.SIGCONT)
                answers = await asyncio.gather(first, second)
            await asyncio.wait_for(pool.wait_idle(), CLIENT_TIMEOUT)
            return answers[0], answers[1], await held(pool)
        finally:
            _resume(pool, pid0)
            await pool.stop()

    assert asyncio.run(main()) == ("retry", 2, [0, 0])
