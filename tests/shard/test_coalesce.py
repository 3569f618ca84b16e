"""A shard that consumes its waiting batches together (`Shard.consume_many`) ends where
consuming them one by one ends: the same events, in the same order, and the same learnt state;
and a group is bounded in frames, bytes and records."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from pathlib import Path

import pytest

from via_otlp.config import Config, parse_config
from via_otlp.model import LogBatch
from via_otlp.receive.intake import QueueFullError
from via_otlp.receive.otlp_codec import Encoding
from via_otlp.shard import worker
from via_otlp.shard.wire import Kind, frame, json_frame, seq_frame, split_seq
from via_otlp.shard.worker import Shard
from via_otlp.simulate.generate import generate
from via_otlp.simulate.scenario import parse_scenario

# Dense in event time (many batches per 10 s bucket), so that most batches can be coalesced.
SCENARIO = """{
  name: "coalesce", seed: 11, duration: "30m",
  sources: [
    { service: "web", namespace: "shop", templates: [
        { name: "page", text: "Rendered page /{word} in {ms}ms", rate: 20 },
        { name: "err", text: "Internal error on /{word}: {hex}", rate: 0.5, severity: "ERROR" } ] },
    { service: "search", namespace: "shop", templates: [
        { name: "query", text: "Search for {word} returned {int} results", rate: 15 } ] },
    { service: "mailer", namespace: "shop", templates: [
        { name: "sent", text: "Mail {hex} sent to {user}", rate: 10, users: 50,
          attributes: { "user.id": "{user}" } } ] },
    { service: "billing", namespace: "bank", templates: [
        { name: "charge", text: "Charged card for order {int}", rate: 10 } ] },
  ],
  anomalies: [
    { kind: "spike", source: "web", template: "err", at: "20m", duration: "3m", factor: 40 },
    { kind: "silence", source: "search", at: "24m", duration: "3m" },
    { kind: "new_template", source: "billing", at: "27m", duration: "2m", severity: "ERROR",
      rate: 2, text: "Card processor timed out for order {int}" },
  ],
}"""

Frame = tuple[int, int, worker.Payload]


def config(tmp_path: Path, max_profiles: int = 100_000, per_request: int = 5) -> Config:
    """Requests cut into batches of `per_request` records at most."""
    return parse_config(
        f"""{{pipeline: {{workers: 2, batch_max_records: {per_request}}}, state: {{data_dir: "{tmp_path}"}},
             detect: {{warmup: "10m", max_profiles: {max_profiles}}},
             registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )


def frames_for(cfg: Config, index: int, decoder: Shard | None = None) -> list[Frame]:
    """The BATCH frames shard `index` of 2 gets for the scenario, with the coordinator's
    watermarks; with a `decoder` (shard `index`), its own parts as it held them (HELD)."""
    scenario = parse_scenario(SCENARIO)
    now_ns = scenario.start_ns + scenario.buckets * scenario.bucket_ns + 3600 * 10**9
    hold = decoder is not None
    decoder = decoder or Shard(cfg, 0, 2)
    lateness = round(cfg.detect.allowed_lateness * 1e9)
    out: list[Frame] = []
    newest, watermark, seq = None, -1, 0
    for g in generate(scenario).requests(chunk=1):  # a request per bucket
        raw = g.request.SerializeToString()
        for blob in decoder.decode(memoryview(raw), Encoding.PROTOBUF, now_ns, hold=hold):
            (tmax,) = struct.unpack_from("<q", blob)
            (hlen,) = struct.unpack_from("<I", blob, 8)
            head = json.loads(blob[12 : 12 + hlen])
            if not head["records"]:
                continue
            newest = tmax if newest is None else max(newest, tmax)
            watermark = max(watermark, newest - lateness)
            offset = 12 + hlen + sum(head["part_bytes"][:index])
            seq += 1
            if hold and "held" in head:
                assert head["part_bytes"][index] == 0  # not encoded: it stays in the decoder
                part = decoder.held.pop(head["held"])
                # It weighs in the coordinator's byte bound as if it had travelled.
                assert head["held_bytes"] >= sum(map(len, part.body)) > 0
                out.append((seq, watermark, part))
                continue
            out.append((seq, watermark, memoryview(blob)[offset : offset + head["part_bytes"][index]]))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def sent_frames(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Frame]]:
    """Per shard index, the frames it is sent (`frames_for` without a decoder), made once for
    the module: they depend on the scenario and the batching, which no test changes, not on
    `max_profiles` (checked equal, byte for byte) nor on the data directory."""
    cfg = config(tmp_path_factory.mktemp("decoder"))
    return {index: frames_for(cfg, index) for index in (0, 1)}


def run(shard: Shard, frames: list[Frame], chunk: int) -> list[dict[str, object]]:
    dones = []
    for i in range(0, len(frames), chunk):
        dones += shard.consume_many(frames[i : i + chunk])
    shard.pipeline.finish()
    dones.append({"seq": "end", "events": shard.take_events()})
    return dones


def state(shard: Shard) -> str:
    """The learnt state, but for the count of engine observations (fewer when coalesced)."""
    text = json.dumps(shard.pipeline.snapshot(), sort_keys=True, default=repr)
    return re.sub(r'"batches": \d+', "", text)


@pytest.mark.parametrize("max_profiles", [100_000, 12])
def test_coalesced_batches_give_what_one_by_one_gives(
    tmp_path: Path, max_profiles: int, sent_frames: dict[int, list[Frame]]
) -> None:
    for index in (0, 1):
        cfg = config(tmp_path, max_profiles)
        frames = sent_frames[index]
        one = Shard(cfg, index, 2)
        together = Shard(cfg, index, 2)
        expected = run(one, frames, 1)
        got = run(together, frames, 16)
        assert one.coalesced == 0
        if max_profiles > 12:
            with_records = sum(1 for _, _, p in frames if p is not None and len(p))
            assert together.coalesced >= with_records // 4, "little was coalesced: no test"
        assert got == expected
        assert any(d["events"] for d in expected), "no events: no test"
        assert state(together) == state(one)
        # One engine observation per group: fewer than batches, as many as groups.
        e1, e2 = one.pipeline.engine.stats(), together.pipeline.engine.stats()
        assert e2.records == e1.records
        assert e2.batches == e1.batches - together.coalesced


def test_a_group_holds_at_most_its_bound_in_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent_frames: dict[int, list[Frame]]
) -> None:
    monkeypatch.setattr(worker, "MAX_COALESCED_RECORDS", 60)
    cfg = config(tmp_path)
    frames = sent_frames[0]
    shard = Shard(cfg, 0, 2)
    sizes: list[list[int]] = []
    consume_group = shard.pipeline.consume_group

    def spy(batches: list[LogBatch], watermark_ns: int | None = None) -> None:
        sizes.append([len(b) for b in batches])
        consume_group(batches, watermark_ns)

    monkeypatch.setattr(shard.pipeline, "consume_group", spy)
    dones = run(shard, frames, 16)
    assert sum(map(sum, sizes)) == sum(int(d.get("records", 0)) for d in dones)  # type: ignore[call-overload]
    assert max(map(len, sizes)) > 1, "nothing was coalesced: no test"
    assert max(map(sum, sizes)) <= 60


def test_only_whole_waiting_batch_frames_are_drained() -> None:
    a, b = socket.socketpair()
    try:
        body = b"x" * 100
        for seq in range(1, 60):
            a.sendall(frame(Kind.BATCH, seq_frame(Kind.BATCH, seq, 7)[5:] + body))
        a.sendall(json_frame(Kind.TICK, {"seq": 60, "now_ns": 0}))
        got = worker.waiting_batches(b, 0)
        assert [s for s, _, _ in got] == list(range(1, worker.MAX_COALESCED_FRAMES))
        got = worker.waiting_batches(b, 0)
        assert [s for s, _, _ in got] == list(range(worker.MAX_COALESCED_FRAMES, 60))
        assert all(isinstance(p, memoryview) and bytes(p) == body and w == 7 for _, w, p in got)
        assert worker.waiting_batches(b, 0) == []  # a TICK is next: it stays for the loop
        kind, tick = worker.recv_frame(b) or (None, b"")
        assert kind is Kind.TICK and json.loads(bytes(tick))["seq"] == 60
        assert worker.waiting_batches(b, 0) == []  # nothing waiting: no wait either
        a.sendall(frame(Kind.BATCH, seq_frame(Kind.BATCH, 61, 7)[5:] + body))
        big = worker.MAX_COALESCED_BYTES - 50
        assert worker.waiting_batches(b, big) == []  # over the byte bound
    finally:
        a.close()
        b.close()


def test_decode_frames_between_waiting_batches_are_decoded_on_the_way() -> None:
    """Routed requests put a DECODE between every two HELD frames of a shard: handed to the
    decoder as they come, they do not end the group (nor are they lost or reordered)."""
    a, b = socket.socketpair()
    try:
        body = b"x" * 100
        for seq in range(1, 4):
            a.sendall(frame(Kind.BATCH, seq_frame(Kind.BATCH, seq, 7)[5:] + body))
            a.sendall(seq_frame(Kind.DECODE, 100 + seq, 0, b"\x00" + body))
        a.sendall(json_frame(Kind.TICK, {"seq": 9, "now_ns": 0}))
        decoded: list[int] = []
        got = worker.waiting_batches(b, 0, decode=lambda f: decoded.append(split_seq(f)[0]))
        assert [s for s, _, _ in got] == [1, 2, 3] and decoded == [101, 102, 103]
        assert worker.waiting_batches(b, 0) == []  # the TICK is next
        kind, _ = worker.recv_frame(b) or (None, b"")
        assert kind is Kind.TICK
        a.sendall(seq_frame(Kind.DECODE, 104, 0, b"\x00"))
        a.sendall(frame(Kind.BATCH, seq_frame(Kind.BATCH, 4, 7)[5:] + body))
        assert worker.waiting_batches(b, 0) == []  # without a decoder, a DECODE ends the group
    finally:
        a.close()
        b.close()


def test_parts_the_decoder_held_give_what_their_bytes_give(
    tmp_path: Path, sent_frames: dict[int, list[Frame]]
) -> None:
    # The decoding shard keeps its own part of each batch (no encoding, no round trip through
    # the coordinator); consumed, it must be the batch its bytes would have been.
    cfg = config(tmp_path)
    decoder = Shard(cfg, 1, 2)
    held = frames_for(cfg, 1, decoder)
    assert sum(isinstance(p, LogBatch) for _, _, p in held) > 10, "nothing held: no test"
    assert not decoder.held
    by_bytes, by_held = Shard(cfg, 1, 2), decoder  # the decoder consumes what it held
    assert run(by_held, held, 16) == run(by_bytes, sent_frames[1], 16)
    assert state(by_held) == state(by_bytes)


def test_a_part_held_by_a_shard_before_its_restart_is_lost_not_consumed(tmp_path: Path) -> None:
    shard = Shard(config(tmp_path), 0, 2)
    dones = shard.consume_many([(1, 5, None), (2, 6, memoryview(b""))])
    assert [(d["seq"], d["records"], d.get("missing", False)) for d in dones] == [
        (1, 0, True),
        (2, 0, False),
    ]


def test_held_ids_of_two_shards_of_one_pid_do_not_meet() -> None:
    """A restarted shard may get its predecessor's pid: its HELD ids must not start where the
    predecessor's did (they started at pid << 32), or a HELD frame meant for a part the
    predecessor kept could take one of the new shard's parts instead of being counted lost."""
    bases = {worker.held_id_base() for _ in range(8)}
    assert len(bases) == 8
    assert all(b % (1 << 32) == 0 and 0 <= b < 1 << 63 for b in bases)  # a u64 on the wire
    a, b = Shard(Config(), 0, 2), Shard(Config(), 0, 2)
    assert next(a._held_ids) // (1 << 32) != next(b._held_ids) // (1 << 32)


def _decoded_payload(header: dict[str, object]) -> memoryview:
    head = json.dumps(header).encode()
    return memoryview(struct.pack("<q", 5) + struct.pack("<I", len(head)) + head)


def test_a_batch_that_cannot_be_sequenced_frees_the_part_its_decoder_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An exception while the coordinator passes a decoded batch on must not leave the
    decoding shard holding its part forever (no HELD frame will ever name it): it is sent
    FREE, and the shard drops it. Its request is answered at once: "retry" if none of it went
    on (nothing lost: the sender resends it whole), else with the records that did (the rest
    counted lost). (Before: the exception went on up, a request of more batches was left
    unanswered, and in ordered mode every request behind it waited for ever.)"""
    from via_otlp.shard import pool as pool_mod
    from via_otlp.shard.wire import held_id

    pool = pool_mod.ShardPool(config(tmp_path), sink=lambda events: None)
    for s in pool._shards:
        s.alive = True  # as if started: what they are sent is recorded below
    sent: list[tuple[int, bytes]] = []
    monkeypatch.setattr(
        pool_mod._Shard, "send", lambda self, *p: sent.append((self.status.index, b"".join(p)))
    )
    loop = asyncio.new_event_loop()
    futs = {rid: loop.create_future() for rid in (1, 2, 3)}
    for rid, fut in futs.items():  # requests being decoded by shard 0
        pool._decoding[rid] = pool_mod._Request(fut, 0, {})
    good = {"records": 8, "counts": {"records": 8}, "repairs": 0, "part_records": [5, 3],
            "part_sources": [[], []], "part_bytes": [0, 0], "held": 77, "held_bytes": 400}  # fmt: skip
    pool._decoded(1, False, _decoded_payload(good), 0)
    kinds = [(i, Kind(struct.unpack_from("<IB", f)[1])) for i, f in sent]
    assert kinds == [(0, Kind.HELD), (1, Kind.BATCH)] and pool.lost_records == 0
    sent.clear()
    bad = {**good, "counts": {"records": 8, "not_a_count": 1}, "held": 78}
    pool._decoded(2, False, _decoded_payload(bad), 0)  # its first batch: more to come
    assert len(sent) == 1 and sent[0][0] == 0
    _, kind = struct.unpack_from("<IB", sent[0][1])
    free = memoryview(sent[0][1])[5:]
    assert kind == Kind.FREE and held_id(free) == 78
    assert isinstance(futs[2].exception(), QueueFullError) and pool.lost_records == 0
    # Its later batches are freed as they come, sequenced never; answered, it is forgotten.
    sent.clear()
    pool._decoded(2, True, _decoded_payload({**good, "held": 81}), 0)
    assert [Kind(struct.unpack_from("<IB", f)[1]) for _, f in sent] == [Kind.FREE]
    assert 2 not in pool._decoding and pool.lost_records == 0
    # The shard drops the part the FREE frame names, and only it.
    shard = Shard(config(tmp_path), 0, 2)
    shard.held = {78: LogBatch(), 79: LogBatch()}
    shard.free(free)
    assert list(shard.held) == [79]
    # A decoder that kept nothing is sent nothing; and a decoder whose pipe is gone does not
    # turn the cleanup into a second error.
    sent.clear()
    pool._decoded(3, True, _decoded_payload({**bad, "held": None}), 0)
    assert sent == [] and isinstance(futs[3].exception(), QueueFullError)

    def dead(self: object, *p: bytes) -> None:
        raise BrokenPipeError

    # A batch of a request part of which went on: answered with that part, the rest lost.
    try:
        fut: asyncio.Future[int] = loop.create_future()
        pool._decoding[4] = pool_mod._Request(fut, 0, {0: 100})
        pool._shards[0].status.decoding_bytes = 100
        pool._decoded(4, False, _decoded_payload(good), 0)
        monkeypatch.setattr(pool_mod._Shard, "send", dead)
        pool._decoded(4, True, _decoded_payload({**bad, "held": 80}), 0)
        assert fut.result() == 8 and 4 not in pool._decoding
        assert pool._shards[0].status.decoding_bytes == 0
    finally:
        loop.close()
    assert pool.lost_records == 8 and list(pool._decoding) == [1]  # its last is to come


@pytest.mark.parametrize("broken", ["held", "repairs", "later"])
def test_a_batch_that_cannot_go_on_counts_nothing_twice_and_loses_nothing_unsaid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, broken: str
) -> None:
    """Defects in a decoded batch's header, each answered without an exception leaving the
    pool: a held id that is not a number (the cleanup itself must not fail: before, it raised
    again and, in ordered mode, every request after it waited for ever); a bad `repairs`
    value (nothing counted accepted before it was read: the resend would count twice); a
    defect in the middle batch of three, after the first went on (the later batch's records
    are counted lost too, not only the failing one's)."""
    from via_otlp.shard import pool as pool_mod

    pool = pool_mod.ShardPool(config(tmp_path), sink=lambda events: None, ordered=True)
    for s in pool._shards:
        s.alive = True
    monkeypatch.setattr(pool_mod._Shard, "send", lambda self, *p: None)
    loop = asyncio.new_event_loop()
    futs = {rid: loop.create_future() for rid in (1, 2)}
    for rid, fut in futs.items():
        pool._decoding[rid] = pool_mod._Request(fut, 0, {})
    pool._last_rid = 2
    good = {"records": 8, "counts": {"records": 8}, "repairs": 0, "part_records": [5, 3],
            "part_sources": [[], []], "part_bytes": [0, 0], "held": 77, "held_bytes": 400}  # fmt: skip
    bad = {**good, "held": "x"} if broken == "held" else {**good, "repairs": "x"}
    batches = [bad] if broken != "later" else [good, {**good, "counts": {"x": 1}}, good]
    pool._held[1] = [
        (i == len(batches) - 1, pool_mod._read(_decoded_payload(h)), 0)
        for i, h in enumerate(batches)
    ]
    pool._held[2] = [(True, pool_mod._read(_decoded_payload(good)), 0)]
    try:
        pool._release_held()  # request 1's batches, then request 2's, in turn
        assert pool._next_release == 3 and not pool._held and not pool._decoding
        assert futs[2].result() == 8  # the request behind it went on
        if broken == "later":
            assert futs[1].result() == 8  # what went on
            assert (pool.stats.records_accepted, pool.lost_records) == (16, 16)
        else:
            assert isinstance(futs[1].exception(), QueueFullError)  # resent whole
            assert (pool.stats.records_accepted, pool.lost_records) == (8, 0)
    finally:
        loop.close()
