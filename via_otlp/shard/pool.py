"""The coordinator: starts the shards, feeds them, keeps the watermark, gathers their events.

It runs on the serving process's event loop and does I/O only: request bytes go to a shard to
be decoded (the least loaded), the decoded batches come back cut by owning shard and go on to
their owners (the decoding shard keeps its own part: it is told when to take it, HELD), and
each batch's events come back. A protobuf request is cut by owning shard before that, when its
ResourceLogs say whose they are (`Router.cut`: a bounded walk of the framing, only the
Resources parsed): each owner decodes and keeps its own records, and their parts go on as the
one batch a single decoder would have made (or, when they cannot stand for it, the request is
decoded whole after all). Every batch gets a sequence number; the
watermark after it is the one a single engine would have had (largest event time so far minus
the allowed lateness, never going back), and every shard moves to it (INTERFACES.md). Events
are dispatched per sequence number, in order and sorted, so the anomalies are the same for any
number of shards.

Flow control: bytes waiting for the shards and records each shard has not finished are
bounded; past a bound, or past the memory limit, `submit_payload` raises `QueueFullError`
(UNAVAILABLE + RetryInfo / 503 + Retry-After). Nothing accepted is dropped, unless a shard
crashes: it is restarted from its last snapshot (again after a backoff while restarts fail;
it is `down` until one is READY), its unfinished batches are counted as lost, and requests none of
whose batches went on yet (those it was decoding, those with records for a shard not alive,
and in ordered mode those whose batches wait for their turn) are answered "retry", so that
their resending counts nothing twice. `stop` lets what is in flight finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from via_otlp import memory
from via_otlp.backoff import Backoff, backoff_delay
from via_otlp.config import Config
from via_otlp.configload import to_plain
from via_otlp.detect.engine import EngineStats
from via_otlp.detect.profile import ProfileSummary, RecentBucket
from via_otlp.errors import InputError, StartupError
from via_otlp.model import AnomalyEvent
from via_otlp.patterns.stage import PatternStats, TemplateInfo
from via_otlp.receive.intake import IntakeStats, QueueFullError
from via_otlp.receive.normalise import IntakeCounts, NormaliseOptions
from via_otlp.receive.otlp_codec import Encoding, Repairs
from via_otlp.registry.patches import PatchRule, PatchSet
from via_otlp.registry.records import event_from_json
from via_otlp.shard.view import (
    merge_stats,
    profile_from_plain,
    recent_from_plain,
    template_from_plain,
)
from via_otlp.shard.wire import (
    Kind,
    Router,
    frame,
    frame_header,
    free_frame,
    held_frame,
    json_frame,
    seq_frame,
    shard_of,
    split_done,
    split_seq,
)
from via_otlp.telemetry.timing import Stage
from via_otlp.telemetry.timing import merge as merge_timings

_SHARD_RULES = (PatchRule.DROP, PatchRule.BLOCK, PatchRule.ALLOW)
log = logging.getLogger("via_otlp.shard")

_FRAME = struct.Struct("<IB")
_U32 = struct.Struct("<I")
_Q = struct.Struct("<q")
_KIND_ORDER = {"open": 0, "updated": 1, "resolved": 2}
EventSink = Callable[[list[AnomalyEvent]], None]


class SourceStore(Protocol):
    """Where sources' learned state is shared between instances (the registry)."""

    async def load_source_states(self, keys: Sequence[str]) -> dict[str, bytes]: ...
    async def claim_sources(self, keys: Sequence[str], instance: str) -> None: ...
    async def claimed_elsewhere(self, keys: Sequence[str], instance: str) -> list[str]: ...
    async def save_source_states(
        self, states: Sequence[tuple[str, bytes]], instance: str
    ) -> None: ...


# Bytes written to a shard's socket at a time when a large request goes to it.
SLICE = 1 << 20
# How long the first batch of a new source waits for its state from the registry.
LOAD_TIMEOUT = 5.0
# Decoded batches of one request gathered before they go on together (`_gather`) at most.
GATHER_MAX_BYTES = 32 << 20
# Between attempts to restart a shard whose restart failed: from 0.1 s, doubling up to 30 s.
RESTART_BACKOFF = Backoff.capped(0.1, 30.0)
# A shard that dies sooner than this after a restart was READY is restarted after the next
# delay of the backoff, not at once: one that dies soon after each start is not restarted in
# a busy loop. (After this long up, it starts from the first delay again.)
RESTART_STABLE = 60.0


def _event_order(e: AnomalyEvent) -> tuple[Any, ...]:
    return (e.time_ns, e.source.key, e.rhythm_hash, e.kind.value, _KIND_ORDER.get(e.state, 9))


@dataclass
class ShardStatus:
    """What the coordinator knows of one shard."""

    index: int
    pid: int = 0
    restarts: int = 0
    decoding_bytes: int = 0
    records_in_flight: int = 0
    bytes_in_flight: int = 0
    records_consumed: int = 0  # learnt from by this shard since the service began: the split
    restored_from: str = ""
    restore_seconds: float = 0.0
    down: bool = False  # dead: takes no records until restarted (READY; again after a backoff)
    restart_failures: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    last_snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Request:
    """A request being decoded: answered (`fut`) with its records once its last batch is
    sequenced. Its bytes stay charged to the shards decoding it (`charges`, in their
    `decoding_bytes`, so in `max_queued_bytes`) until then, also while the parts of a routed
    request wait for each other in their owners."""

    fut: asyncio.Future[int]
    decoder: int  # the shard decoding it whole; -1 for a routed request (`_Routed`)
    charges: dict[int, int]  # shard index → bytes charged to it
    records: int = 0
    sequenced: bool = False  # a batch of it went on: answering "retry" would duplicate it
    refused: bool = False  # answered "retry" while its decoder still decodes: batches freed


@dataclass
class _Routed:
    """A request cut by owning shard before decoding (`Router.cut`): each owner decodes its
    ResourceLogs and keeps its part, and the parts go on as one batch, as if one shard had
    decoded the request whole and kept its own part of it."""

    request: _Request
    payload: bytes  # the whole request: decoded by one shard if the parts cannot stand for it
    now_ns: int
    waiting: set[int]  # the owners still decoding their part
    parts: list[tuple[int, memoryview]] = field(default_factory=list)  # (shard, DECODED)
    failed: bool = False  # a part was not a request: the whole request is decoded to say why
    aborted: bool = False  # answered "retry" (an owner died): the parts are freed as they come


class _Shard:
    """The coordinator's end of one worker process."""

    def __init__(self, index: int) -> None:
        self.status = ShardStatus(index)
        self.process: subprocess.Popen[bytes] | _Forked | None = None
        self.sock: socket.socket | None = None  # our end to a shard forked ahead (`fork`)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.alive = False
        # Sequence numbers sent and not finished, with their record and byte counts.
        self.pending: dict[int, tuple[int, int]] = {}
        self.asked: set[int] = set()  # questions (`_results` ids) it has not answered
        self.backlog: deque[bytes | memoryview] = deque()
        self.draining: asyncio.Task[None] | None = None
        # When its last restart was READY, and the restart backoff's attempts until then.
        self.restarted_at: float | None = None
        self.attempt = 0

    def send(self, *pieces: bytes | memoryview) -> None:
        """Queue bytes for the shard, in order. Small frames are written now; a large piece
        is written by `_drain` in slices with the loop free between them (a 64 MiB request
        copied at once into the transport's buffer held the loop for a second)."""
        if self.writer is None or not self.alive:
            return
        idle = not self.backlog and (self.draining is None or self.draining.done())
        if idle and all(len(p) <= SLICE for p in pieces):
            for piece in pieces:
                self.writer.write(piece)
            return
        self.backlog.extend(pieces)
        if self.draining is None or self.draining.done():
            self.draining = asyncio.create_task(self._drain(), name="via-shard-send")

    async def _drain(self) -> None:
        writer = self.writer
        assert writer is not None
        try:
            while self.backlog:
                piece = memoryview(self.backlog.popleft()).cast("B")
                for start in range(0, len(piece), SLICE):
                    writer.write(piece[start : start + SLICE])
                    await writer.drain()
        except (ConnectionError, RuntimeError):
            self.backlog.clear()  # the shard is gone: its restart is handled by the reader


class ShardPool:
    """N shard processes behind one `submit_payload` (the servers' `IntakeFront`)."""

    def __init__(
        self,
        config: Config,
        sink: EventSink,
        stats: IntakeStats | None = None,
        *,
        ordered: bool = False,
        patches: Callable[[], PatchSet] | None = None,
        persist: bool = True,
        store: SourceStore | None = None,
        instance: str = "",
    ) -> None:
        self.config = config
        self.persist = persist  # restore and save snapshots (not in a replay)
        self.shards = config.pipeline.worker_count
        self.sink = sink
        self.dispatch = sink  # events that did not come from a shard go out the same way
        self.stats = stats or IntakeStats()
        self.ordered = ordered  # replay: batches in the order the requests were submitted
        self._shards = [_Shard(i) for i in range(self.shards)]
        self._ids = itertools.count(1)  # replies to questions
        self._last_rid = 0  # requests
        self._done_seqs: set[int] = set()
        self._sent_at: dict[tuple[int, int], float] = {}
        self._seq = itertools.count(1)
        self._lateness_ns = round(config.detect.allowed_lateness * 1e9)
        self._max_event_ns: int | None = None
        self._watermark = -1
        # Requests being decoded, and those of them routed by owning shard (`_Routed`).
        self._decoding: dict[int, _Request] = {}
        self._next_release = 1  # ordered mode: the next request id whose batches may go on
        # Decoded batches that wait for the rest of their request (`_gather`), or in ordered
        # mode also for the requests before it (`_release_held`).
        self._held: dict[int, list[tuple[bool, Decoded, int]]] = {}
        self._routed: dict[int, _Routed] = {}
        self.routed = 0  # requests decoded in parts by their owners
        self.routed_whole = 0  # of those, decoded whole after all (`_routed_part`)
        self._router = Router(
            NormaliseOptions.from_config(config.receive),
            self.shards,
            config.pipeline.batch_max_records,
        )
        # Sequence numbers not finished by every shard, and the events gathered for them.
        self._waiting: dict[int, int] = {}
        self._events: dict[int, list[AnomalyEvent]] = {}
        self._next_dispatch = 1
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._patches: PatchSet | None = None
        self._current_patches = patches  # the registry's patches in force, if any
        self.lost_records = 0
        # Sources some shard has state for; one not among them is looked up in the registry
        # (`load_states`) before its first batch, so an instance takes it over where another
        # left it.
        self.known: set[str] = set()
        self._store = store
        self.instance = instance
        self._gate: deque[tuple[int, bool, Decoded, int]] = deque()
        self._gate_task: asyncio.Task[None] | None = None
        self.sources_taken_over = 0
        self.sources_forgotten = 0
        self.rss_bytes = 0
        self._closing = False  # no new request is taken
        self._stopping = False  # STOP sent: no batch is sequenced any more
        self._backoff_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # (tests hold it)

    # -- lifecycle ---------------------------------------------------------------------------

    def fork(self) -> None:
        """Fork the shards now, if this process has no other thread yet (`start` uses them).

        `start` would fork them too, but the service starts the registry meanwhile, whose
        threads came first: a shard started while threads run is a fresh interpreter instead,
        which imports everything again (~0.35 s of CPU per shard before it is ready).
        """
        if threading.active_count() != 1:
            return
        for shard in self._shards:
            if shard.sock is None and shard.process is None:
                shard.process, shard.sock = _start_process()

    async def start(self) -> list[dict[str, Any]]:
        """Start every shard (forked ahead by `fork`, or now) and wait until each has
        restored its state."""
        try:
            ready = await asyncio.gather(*(self._spawn(s) for s in self._shards))
            await self.refresh()
        except BaseException:
            await self.kill()
            raise
        return list(ready)

    async def _spawn(self, shard: _Shard) -> dict[str, Any]:
        parent, shard.sock = shard.sock, None
        if parent is None or shard.process is None:
            shard.process, parent = _start_process()
        shard.status.pid = shard.process.pid
        shard.reader, shard.writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)
        init = {
            "config": to_plain(self.config),
            "index": shard.status.index,
            "shards": self.shards,
            "persist": self.persist,
        }
        timeout = self.config.pipeline.ready_timeout
        try:
            shard.writer.write(json_frame(Kind.INIT, init))
            got = await asyncio.wait_for(self._read_frame(shard), timeout)
        except TimeoutError:
            self._lost(shard)
            raise StartupError(
                f"shard {shard.status.index} did not restore its state within {timeout:g} s "
                "(pipeline.ready_timeout)"
            ) from None
        except BaseException:
            self._lost(shard)
            raise
        if got is None or got[0] is not Kind.READY:
            self._lost(shard)
            raise StartupError(
                f"shard {shard.status.index} did not start (exit {shard.process.poll()})"
            )
        ready = json.loads(bytes(got[1]))
        shard.status.restored_from = ready.get("restored_from", "")
        shard.status.restore_seconds = float(ready.get("seconds", 0.0))
        # Of its sources, known now are those its snapshot has: any other it had (learnt or
        # imported since, or an IMPORT it died before reading) is looked up again.
        index = shard.status.index
        self.known = {k for k in self.known if shard_of(k, self.shards) != index}
        self.known.update(ready.pop("sources", []))
        # Takes records only now: sent to it while it restores, they would be lost with it
        # if this attempt fails, though their requests were answered.
        shard.alive = True
        shard.status.down = False
        shard.task = asyncio.create_task(
            self._read_loop(shard), name=f"via-shard-{shard.status.index}"
        )
        return dict(ready)

    async def stop(self, grace: float = 5.0) -> None:
        """Let every shard finish what it was sent, write its snapshot and exit.

        No request is taken any more; those in flight get up to `grace` to be decoded and
        consumed. Then STOP goes out, and a batch decoded after it is not sequenced (its
        shards would never read it): its request is answered "retry", or, if part of it went
        on already, its records are counted lost. Batches a shard never finished count lost.
        """
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_idle(), grace)
        self._stopping = True
        waits = []
        for s in self._shards:
            if s.alive:
                rid = next(self._ids)
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._results[rid] = fut
                s.asked.add(rid)
                s.send(json_frame(Kind.STOP, {"id": rid}))
                waits.append(fut)
        if waits:
            done, _ = await asyncio.wait(waits, timeout=max(grace, 1.0) * 6)
            for f in done:
                with contextlib.suppress(Exception):
                    result = f.result()
                    if isinstance(result, dict) and "error" in result:
                        log.error("%s", result["error"])
        await self.kill(grace)
        for s in self._shards:  # sent, never finished (a shard that did not stop in time)
            self.lost_records += sum(records for records, _ in s.pending.values())
            s.pending.clear()
        for rid, req in list(self._decoding.items()):
            self._cut_short(rid, req)

    async def kill(self, grace: float = 2.0) -> None:
        for s in self._shards:
            s.alive = False
            if s.writer is not None:
                s.writer.close()
            if s.sock is not None:  # forked ahead, never started: it sees the end and exits
                s.sock.close()
                s.sock = None
            if s.task is not None:
                s.task.cancel()
        for s in self._shards:
            if s.process is None:
                continue
            try:
                await asyncio.wait_for(asyncio.to_thread(s.process.wait), grace)
            except TimeoutError:
                s.process.kill()
                await asyncio.to_thread(s.process.wait)
            s.process = None

    # -- intake ------------------------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        return sum(s.status.decoding_bytes + s.status.bytes_in_flight for s in self._shards)

    @property
    def records_in_flight(self) -> int:
        return sum(s.status.records_in_flight for s in self._shards)

    def full(self, nbytes: int) -> bool:
        """Whether a request of `nbytes` must wait: a shard behind, too many bytes, memory."""
        if self._closing:
            return True
        p = self.config.pipeline
        queued = self.queued_bytes
        if queued and queued + nbytes > p.max_queued_bytes:
            return True
        cap = self.config.receive.queue_max_records
        if any(s.status.records_in_flight >= cap for s in self._shards):
            return True
        return bool(p.max_rss and self.rss_bytes > p.max_rss)

    async def submit_payload(
        self,
        payload: bytes,
        encoding: Encoding,
        *,
        wait: bool = False,
        room_timeout: float | None = None,
        now_ns: int | None = None,
    ) -> int:
        """Decode a request in a shard and hand its records to their owners.

        Returns the records accepted once decoded; raises `InputError` when the bytes are not a
        request and `QueueFullError` when the service is full (unless `wait`: then it waits
        for room, `TimeoutError` past `room_timeout`; once sent, the request is answered).
        """
        async with asyncio.timeout(room_timeout if wait else None):
            while self.full(len(payload)):
                if not wait or self._closing:
                    raise QueueFullError(self.config.pipeline.retry_after)
                await self._wait_change()
        live = [s for s in self._shards if s.alive]
        if not live:
            raise QueueFullError(self.config.pipeline.retry_after)
        # Each ResourceLogs to the shard that owns its source: the request is decoded once, in
        # parts, and no decoded part travels from one shard to another.
        cut = None
        if encoding is Encoding.PROTOBUF and self.shards > 1:
            cut = self._router.cut(payload)
        owners = [k for k, pieces in enumerate(cut or []) if pieces]
        if any(not self._shards[k].alive for k in owners):
            # An owner is dead or down: its records could not go on (`_refused`).
            raise QueueFullError(self.config.pipeline.retry_after)
        if self._current_patches is not None:
            # Before the request, so a DROP patch applies to every batch decoded after it.
            self.push_patches(self._current_patches())
        self._last_rid += 1
        rid = self._last_rid
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        now = time.time_ns() if now_ns is None else now_ns
        if len(owners) > 1:
            assert cut is not None
            sizes = {k: sum(map(len, cut[k])) for k in owners}
            req = self._decoding[rid] = _Request(fut, -1, {})
            self._routed[rid] = _Routed(req, payload, now, set(owners))
            self.routed += 1
            for k in owners:
                self._charge(req, k, sizes[k])
                self._send_decode(self._shards[k], rid, now, encoding, sizes[k], *cut[k])
            return await fut
        # One owner decodes its own records (none travel); else the least busy decodes it whole.
        shard = self._shards[owners[0]] if len(owners) == 1 else _least_loaded(live)
        req = self._decoding[rid] = _Request(fut, shard.status.index, {})
        self._charge(req, shard.status.index, len(payload))
        self._send_decode(shard, rid, now, encoding, len(payload), payload)
        return await fut

    def _charge(self, req: _Request, index: int, nbytes: int) -> None:
        req.charges[index] = req.charges.get(index, 0) + nbytes
        self._shards[index].status.decoding_bytes += nbytes

    def _discharge(self, req: _Request, index: int | None = None) -> None:
        """Take the request's bytes off shard `index` (every shard's when None)."""
        for k in list(req.charges) if index is None else [index]:
            self._shards[k].status.decoding_bytes -= req.charges.pop(k, 0)

    @staticmethod
    def _send_decode(
        shard: _Shard,
        rid: int,
        now_ns: int,
        encoding: Encoding,
        size: int,
        *pieces: bytes | memoryview,
    ) -> None:
        enc = b"\x00" if encoding is Encoding.PROTOBUF else b"\x01"
        head = frame_header(seq_frame(Kind.DECODE, rid, now_ns, enc), size)
        if len(pieces) > 1 and size <= SLICE:
            shard.send(b"".join((head, *pieces)))  # one write, not one a ResourceLogs run
        else:
            shard.send(head, *pieces)

    def _routed_part(
        self, shard: _Shard, rid: int, last: bool, payload: memoryview, failed: bool = False
    ) -> None:
        """A DECODED (or FAILED) frame of a routed request's part. Once every part is in, they
        go on as one decoded batch, or, when they cannot stand for the request decoded whole
        (a part not a request, more than one batch, a record for another shard, a value cut
        for its depth), are freed and one shard decodes the request whole. Of a request
        answered "retry" (`_abort_routed`), the part is freed at once."""
        r = self._routed[rid]
        k = shard.status.index
        if len(payload):
            r.parts.append((k, payload))
        r.failed |= failed
        if last or failed:
            r.waiting.discard(k)
        if r.aborted:
            self._drop_routed(rid, r)
            return
        if r.waiting:
            return
        merged = None
        if not r.failed:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                merged = self._merged(r.parts)
        del self._routed[rid]  # (only now: `_give_up` frees the parts if merging failed)
        if merged is None:
            for holder, part in r.parts:
                self._free_parts(holder, _header_or_none(part))
            self.routed_whole += 1
            self._decode_whole(rid, r)
            return
        # Its bytes stay charged to the owners until the batch is sequenced (`_decoded`).
        decoder = r.parts[0][0] if r.parts else k
        if self.ordered:
            self._held.setdefault(rid, []).append((True, merged, decoder))
            self._release_held()
        else:
            self._arrive(rid, True, merged, decoder)

    def _abort_routed(self, index: int) -> None:
        """Shard `index` died: each routed request with a part there is answered "retry", and
        the parts the other owners kept are freed (as they come, for those still decoding)."""
        for rid, r in list(self._routed.items()):
            if index not in r.waiting and all(k != index for k, _ in r.parts):
                continue
            r.parts = [(k, part) for k, part in r.parts if k != index]  # gone with it
            r.waiting.discard(index)
            self._abort(rid, r)

    def _abort(self, rid: int, r: _Routed) -> None:
        """Answer routed request `rid` "retry" (once: none of it goes on) and free what its
        owners kept (`_drop_routed`)."""
        if not r.aborted:
            r.aborted = True
            if self._decoding.pop(rid, None) is not None and not r.request.fut.done():
                r.request.fut.set_exception(QueueFullError(self.config.pipeline.retry_after))
        self._drop_routed(rid, r)

    def _drop_routed(self, rid: int, r: _Routed) -> None:
        """An aborted routed request: free the parts in, take the bytes of the owners that
        are done off their charge, and forget it once no owner is decoding."""
        for holder, part in r.parts:
            self._free_parts(holder, _header_or_none(part))
        r.parts.clear()
        for k in [k for k in r.request.charges if k not in r.waiting]:
            self._discharge(r.request, k)
        if not r.waiting:
            del self._routed[rid]

    def _merged(self, parts: list[tuple[int, memoryview]]) -> Decoded | None:
        """The decoded batch of the whole request from its parts' (None if they cannot
        stand for it: then the request is decoded whole)."""
        heads: list[tuple[int, int, dict[str, Any]]] = []
        for k, payload in parts:  # (only non-empty parts are kept: `_routed_part`)
            tmax, header, _ = _parsed(payload)
            if any(header["part_bytes"]) or any(k == h[0] for h in heads):
                return None  # a record for another shard, or a second batch of one shard
            if int(header["repairs"]) & Repairs.DEEP_VALUE:
                return None  # values cut for their depth: repaired on the whole, as before
            heads.append((k, tmax, header))
        if not heads:
            return memoryview(b"")
        records = sum(int(h["records"]) for _, _, h in heads)
        if records > self.config.pipeline.batch_max_records:
            return None  # decoded whole, it would be cut into several batches
        counts = IntakeCounts()
        repairs = 0
        for _, _, h in heads:
            counts.add(IntakeCounts(**h["counts"]))
            repairs |= int(h["repairs"])
        header = {
            "records": records,
            "counts": vars(counts).copy(),
            "repairs": repairs,
            "part_records": [
                sum(int(h["part_records"][i]) for _, _, h in heads) for i in range(self.shards)
            ],
            "part_sources": [
                [key for _, _, h in heads for key in h["part_sources"][i]]
                for i in range(self.shards)
            ],
            "part_bytes": [0] * self.shards,
            "holders": [
                [k, h["held"], h.get("held_bytes", 0)]
                for k, _, h in heads
                if h.get("held") is not None
            ],
        }
        return _Merged(max(t for _, t, _ in heads), header)

    def _decode_whole(self, rid: int, r: _Routed) -> None:
        """A routed request whose parts could not stand for it: one shard decodes it whole
        (and answers, for bytes that are not a request, as it would have at once)."""
        req = r.request
        self._discharge(req)
        live = [s for s in self._shards if s.alive]
        if not live:
            self._decode_failed(rid, QueueFullError(self.config.pipeline.retry_after))
            return
        shard = _least_loaded(live)
        req.decoder = shard.status.index
        self._charge(req, shard.status.index, len(r.payload))
        self._send_decode(shard, rid, r.now_ns, Encoding.PROTOBUF, len(r.payload), r.payload)

    def _free_parts(self, decoder: int, header: Any) -> None:
        """Free the parts the shards kept of a batch that will not be sequenced (FREE): never
        raises (a shard whose pipe is gone lost its part with its state)."""
        if not isinstance(header, dict):
            return
        try:
            holders = _holders(header, decoder)
        except (KeyError, TypeError, ValueError):
            return  # a header this broken names no part a shard could find
        for k, (hid, _) in holders.items():
            # (a shard number or held id out of range is a defect upstream: nothing to free)
            with contextlib.suppress(Exception):
                self._shards[k].send(free_frame(hid))

    async def wait_idle(self) -> None:
        """Until every request and batch sent so far is finished."""
        while self._decoding or self._routed or self._waiting or self._held or self._gate:
            await self._wait_change()

    async def tick(self, now_ns: int) -> None:
        """Wall clock: every shard lets silence close buckets."""
        self._broadcast_sequenced(lambda seq: json_frame(Kind.TICK, {"seq": seq, "now_ns": now_ns}))

    async def flush(self) -> None:
        """End of a replay: every shard closes the buckets the input reached."""
        await self.wait_idle()
        self._broadcast_sequenced(lambda seq: json_frame(Kind.FLUSH, {"seq": seq}))
        await self.wait_idle()

    def _broadcast_sequenced(self, make: Callable[[int], bytes]) -> None:
        seq = next(self._seq)
        live = [s for s in self._shards if s.alive]
        self._waiting[seq] = len(live)
        self._events[seq] = []
        for s in live:
            s.pending[seq] = (0, 0)
            s.send(make(seq))
        if not live:
            self._finish_seq(seq)

    def push_patches(self, patches: PatchSet) -> None:
        """Give the shards the patches applied where records are: DROP (templates known),
        BLOCK (before templating) and ALLOW (which wins over both)."""
        if patches is self._patches:
            return
        self._patches = patches
        drops = [_patch_json(p) for p in patches.patches if p.rule in _SHARD_RULES]
        for s in self._shards:
            s.send(frame(Kind.PATCHES, json.dumps(drops).encode()))

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every shard writes its snapshot (at this point of its stream); their reports."""
        return await self._ask_all(lambda rid: json_frame(Kind.SNAPSHOT, {"id": rid}))

    async def query(self, what: str, **args: Any) -> list[Any]:
        """Ask every live shard (`stats`, `profiles`, `profile`, `templates`, `schema_rows`)."""
        return await self._ask_all(
            lambda rid: json_frame(Kind.QUERY, {"id": rid, "what": what, "args": args})
        )

    async def _ask_all(self, make: Callable[[int], bytes]) -> list[Any]:
        futs = []
        for s in self._shards:
            if not s.alive:
                continue
            rid = next(self._ids)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._results[rid] = fut
            s.asked.add(rid)
            s.send(make(rid))
            futs.append(fut)
        return list(await asyncio.gather(*futs))

    # -- reading from the shards -------------------------------------------------------------

    async def _read_frame(self, shard: _Shard) -> tuple[Kind, memoryview] | None:
        assert shard.reader is not None
        try:
            head = await shard.reader.readexactly(_FRAME.size)
            length, kind = _FRAME.unpack(head)
            body = await shard.reader.readexactly(length - 1) if length > 1 else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return Kind(kind), memoryview(body)

    async def _read_loop(self, shard: _Shard) -> None:
        while True:
            got = await self._read_frame(shard)
            if got is None:
                break
            kind, body = got
            try:
                self._on_frame(shard, kind, body)
            except Exception:
                log.exception("shard %d: cannot handle a %s frame", shard.status.index, kind.name)
                with contextlib.suppress(Exception):
                    self._give_up(shard.status.index, kind, body)
            self._notify()
        if not self._closing:
            await self._crashed(shard)
        elif shard.alive:  # it died while the pool stops: not restarted, nothing waits on it
            # (one that answered STOP and exited, as it should, is not down)
            shard.status.down = not self._stopping or bool(shard.asked)
            self._lost(shard)

    def _give_up(self, decoder: int, kind: Kind, body: memoryview) -> None:
        """A DECODED frame that could not be handled (a defect here): its request is answered
        now, "retry" or with the part of it that went on, never left waiting for ever; the
        parts the shards kept for it are freed (later frames of it find it gone: freed too;
        a FREE after its part was sequenced finds nothing there)."""
        if kind is not Kind.DECODED:
            return
        rid, _, payload = split_seq(body)
        r = self._routed.get(rid)
        if r is not None:
            self._abort(rid, r)
            if self.ordered:  # its turn may be the next: those behind it wait for it
                self._release_held()
            return
        self._free_parts(decoder, _header_or_none(payload))
        for _, held, holder in self._held.pop(rid, []):
            self._free_parts(holder, _header_or_none(held))
        entry = self._decoding.get(rid)
        if entry is not None:
            self._cut_short(rid, entry)
        if self.ordered:
            self._release_held()

    def _on_frame(self, shard: _Shard, kind: Kind, body: memoryview) -> None:
        if kind is Kind.DONE:
            seq, consumed, dropped, missing, events = split_done(body)
            records, nbytes = shard.pending.pop(seq, (0, 0))
            sent = self._sent_at.pop((shard.status.index, seq), None)
            if sent is not None:
                # From handing the batch over to the shard having learnt from it.
                self.stats.latency.observe(Stage.QUEUE, time.perf_counter() - sent)
            shard.status.records_in_flight -= records
            shard.status.bytes_in_flight -= nbytes
            if missing:  # held by the shard before a restart
                self.lost_records += records
            self.stats.records_consumed += consumed
            shard.status.records_consumed += consumed
            self.stats.records_dropped_by_patch += dropped
            if events:
                self._events.setdefault(seq, []).extend(
                    event_from_json(e) for e in json.loads(bytes(events))
                )
            self._shard_done(seq)
        elif kind is Kind.DECODED:
            rid, last, payload = split_seq(body)
            if rid in self._routed:
                self._routed_part(shard, rid, bool(last), payload)
            elif self.ordered and rid < self._next_release:
                # Its turn passed (answered already, `_give_up`): none of it goes on, and held
                # it would wait for a turn that never comes.
                self._free_parts(shard.status.index, _header_or_none(_read(payload)))
            elif self.ordered:
                batch = (bool(last), _read(payload), shard.status.index)
                self._held.setdefault(rid, []).append(batch)
                self._release_held()
            else:
                self._gather(rid, bool(last), _read(payload), shard.status.index)
        elif kind is Kind.EXPORTED:
            rid, _, payload = split_seq(body)
            shard.asked.discard(rid)
            fut = self._results.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(payload)
        elif kind is Kind.FAILED:
            doc = json.loads(bytes(body))
            if doc["id"] in self._routed:
                self._routed_part(shard, doc["id"], True, memoryview(b""), failed=True)
            else:
                self._decode_failed(doc["id"], InputError(doc["error"]))
        elif kind is Kind.RESULT:
            doc = json.loads(bytes(body))
            shard.asked.discard(doc["id"])
            fut = self._results.pop(doc["id"], None)
            if fut is not None and not fut.done():
                if "error" in doc:
                    fut.set_exception(RuntimeError(doc["error"]))
                else:
                    fut.set_result(doc["result"])

    def _gather(self, rid: int, last: bool, payload: Decoded, decoder: int) -> None:
        """Unordered: a request's batches go on together once its last is in, as in ordered
        mode, so a decoder that dies before that leaves nothing of it sequenced and its
        "retry" duplicates nothing. Past GATHER_MAX_BYTES gathered (a request of many large
        batches) they go on as they come, as before: its memory stays bounded."""
        gathered = self._held.get(rid)
        if gathered is None and last:
            self._arrive(rid, last, payload, decoder)  # one batch: nothing to wait for
            return
        if gathered is None:
            gathered = self._held[rid] = []
        gathered.append((last, payload, decoder))
        if last or sum(_weight(p) for _, p, _ in gathered) > GATHER_MAX_BYTES:
            del self._held[rid]
            self._arrive_all(rid, gathered)

    def _arrive_all(self, rid: int, batches: list[tuple[bool, Decoded, int]]) -> None:
        """Batches of request `rid` that go on together: none does unless all can (a shard
        one of them has records for is not alive, or the pool stops: `_refused`). Else the
        request is answered "retry" with nothing of it gone on, as its first batch alone
        would be (`_decoded`), instead of its later batches' records for that shard being
        lost once the first went on."""
        if len(batches) > 1 and (self._stopping or not all(s.alive for s in self._shards)):
            entry = self._decoding.get(rid)
            heads = [(_header_or_none(payload), decoder) for _, payload, decoder in batches]
            if (
                entry is not None
                and not entry.sequenced
                and any(h is not None and self._refused(h) for h, _ in heads)
            ):
                for header, decoder in heads:
                    self._free_parts(decoder, header)
                self._retry(rid, entry, coming=not batches[-1][0])
                return
        for one in batches:
            self._arrive(rid, *one)

    def _release_held(self) -> None:
        """Ordered mode: pass decoded batches on in request order, each request's all at
        once when its last is in: a decoder that dies before that leaves nothing of its
        request gone on, so the "retry" it is answered duplicates nothing."""
        while self._next_release <= self._last_rid:
            rid = self._next_release
            batches = self._held.get(rid)
            routed = self._routed.get(rid)
            # (A routed request answered "retry" holds nothing back: none of it goes on, and
            # its owners may finish decoding their parts long after, or never.)
            coming = rid in self._decoding or (routed is not None and not routed.aborted)
            if coming and not (batches and batches[-1][0]):
                return  # more batches of this request to come
            self._arrive_all(rid, self._held.pop(rid, []))
            self._next_release += 1

    def _arrive(self, rid: int, last: bool, payload: Decoded, decoder: int) -> None:
        """A decoded batch, in order: on to `_decoded`, after any of its sources that no shard
        knows were looked up in the registry (batches behind it wait, to keep the order)."""
        if self._store is None or (not self._gate and not self._unknown(payload)):
            self._decoded(rid, last, payload, decoder)
            return
        self._gate.append((rid, last, payload, decoder))
        if self._gate_task is None or self._gate_task.done():
            self._gate_task = asyncio.create_task(self._take_over(), name="via-shard-takeover")

    def _unknown(self, payload: Decoded) -> list[str]:
        header = _header_or_none(payload)
        if header is None:
            return []
        keys = (k for part in header.get("part_sources", []) for k in part)
        return sorted({k for k in keys if k not in self.known})

    async def _take_over(self) -> None:
        assert self._store is not None
        while self._gate:
            rid, last, payload, decoder = self._gate[0]
            unknown = self._unknown(payload)
            if unknown:
                try:
                    states = await asyncio.wait_for(
                        self._store.load_source_states(unknown), LOAD_TIMEOUT
                    )
                    # Only sources whose owner is alive: an IMPORT to one dead or down (until a
                    # restart is READY) would be dropped, and its batch, refused (`_refused`),
                    # come back resent with the source known, learnt from scratch after all.
                    states = {k: b for k, b in states.items() if self._owner(k).alive}
                    if states:
                        await self._store.claim_sources(sorted(states), self.instance)
                except Exception as exc:  # the registry away: learn the source from scratch
                    log.warning("cannot load the state of %d new sources: %s", len(unknown), exc)
                    states = {}
                for key, blob in sorted(states.items()):
                    self._owner(key).send(frame(Kind.IMPORT, blob))
                    self.sources_taken_over += self._owner(key).alive
                # Known once handed to a live owner (else looked up again when resent).
                self.known.update(k for k in unknown if self._owner(k).alive)
            self._gate.popleft()
            self._decoded(rid, last, payload, decoder)
            self._notify()

    def _owner(self, key: str) -> _Shard:
        """The shard that owns source `key`."""
        return self._shards[shard_of(key, self.shards)]

    async def share(self) -> int:
        """Copy the state of the sources that changed to the registry, and forget those that
        another instance took over meanwhile (so their silence here is no anomaly). Returns
        the sources written."""
        assert self._store is not None
        moved = await self._store.claimed_elsewhere(sorted(self.known), self.instance)
        if moved:
            self.forget(moved)
        gone = set(moved)
        states = [(k, b) for k, b in await self.export_sources() if k not in gone]
        await self._store.save_source_states(states, self.instance)
        return len(states)

    def forget(self, keys: list[str]) -> None:
        """Drop what the shards learned of `keys` (another instance owns them now)."""
        by_shard: dict[int, list[str]] = {}
        for key in keys:
            by_shard.setdefault(shard_of(key, self.shards), []).append(key)
        for index, mine in by_shard.items():
            self._shards[index].send(json_frame(Kind.FORGET, {"keys": mine}))
        self.known.difference_update(keys)
        self.sources_forgotten += len(keys)
        log.info("forgot %d sources another instance took over", len(keys))

    async def export_sources(self, everything: bool = False) -> list[tuple[str, bytes]]:
        """Each source's learned state, for the registry: those with records since the last
        export (or all), as `handoff.encode_source` blobs."""
        out: list[tuple[str, bytes]] = []
        for payload in await self._ask_all(
            lambda rid: json_frame(Kind.EXPORT, {"id": rid, "all": everything})
        ):
            (hlen,) = _U32.unpack_from(payload)
            head = json.loads(bytes(payload[_U32.size : _U32.size + hlen]))
            offset = _U32.size + hlen
            for key, size in zip(head["keys"], head["sizes"], strict=True):
                out.append((key, bytes(payload[offset : offset + size])))
                offset += size
        return out

    def _decoded(self, rid: int, last: bool, payload: Decoded, decoder: int) -> None:
        """A batch of request `rid` came back decoded: sequence it and send it to its owners.
        The request is answered after its last batch, or at once if a batch of it cannot be
        sequenced (a defect: `_drop_batch`): it must not wait forever.

        Nothing goes on of a request already answered "retry" (its decoder died), nor, while
        none of it went on, of one that the shards could not all take (the pool stops, or a
        shard it has records for is down): that one is answered "retry" now, so its sender
        resends it whole and nothing is lost or counted twice."""
        entry = self._decoding.get(rid)
        try:
            self._go_on(rid, last, payload, decoder, entry)
        except Exception:
            # A defect here: its batch is dropped and its request answered now, so neither the
            # parts the shards kept nor, in ordered mode, the requests behind it wait for ever.
            log.exception("cannot pass on a decoded batch of request %d", rid)
            self._drop_batch(rid, last, payload, decoder, entry)
        finally:
            if last and entry is not None and self._decoding.pop(rid, None) is not None:
                self._discharge(entry)
                if not entry.fut.done():
                    entry.fut.set_result(entry.records)

    def _go_on(
        self, rid: int, last: bool, payload: Decoded, decoder: int, entry: _Request | None
    ) -> None:
        """Sequence a decoded batch of request `rid` and send it to its owners, unless none
        of the request may go on (see `_decoded`)."""
        if not isinstance(payload, _Merged) and not len(payload):
            return
        tmax, header, parts = _parsed(payload)
        if entry is None or entry.refused or (not entry.sequenced and self._refused(header)):
            self._turn_away(rid, last, decoder, header, entry)
            return
        if self._stopping:  # part of it went on: the rest cannot, and is lost
            self._free_held(decoder, header)
            return
        for part in header.get("part_sources", []):
            self.known.update(part)
        self._sequence_batch(tmax, header, parts, decoder)
        entry.records += header["records"]
        entry.sequenced = True

    def _drop_batch(
        self, rid: int, last: bool, payload: Decoded, decoder: int, entry: _Request | None
    ) -> None:
        """A batch that could not go on (a defect): what the shards kept of it is freed, and
        its request answered "retry" if none of it went on, else with the records that did
        (the rest counted lost); its later batches, if any, are freed as they come."""
        if entry is not None and self._decoding.get(rid) is not entry:
            entry = None  # answered already
        if entry is not None and entry.sequenced and not entry.fut.done():
            entry.fut.set_result(entry.records)
        self._turn_away(rid, last, decoder, _header_or_none(payload), entry)

    def _turn_away(
        self, rid: int, last: bool, decoder: int, header: Any, entry: _Request | None
    ) -> None:
        """A batch none of which goes on: what the shards kept of it is freed (its records
        counted lost if part of its request went on: after a defect), and its request, if
        still waiting, answered "retry" (`_retry`: at its last batch if more are coming)."""
        if entry is not None and entry.sequenced:
            self._free_held(decoder, header)
        else:
            self._free_parts(decoder, header)
        if entry is not None:
            self._retry(rid, entry, coming=not last)

    def _refused(self, header: dict[str, Any]) -> bool:
        """Whether a decoded batch cannot go on whole: the pool stops, or a shard it has
        records for is not alive (dead, or down until a restart is READY)."""
        if self._stopping:
            return True
        part_records = header.get("part_records") or ()
        return any(n and not s.alive for s, n in zip(self._shards, part_records, strict=False))

    def _retry(self, rid: int, req: _Request, coming: bool = False) -> None:
        """Answer request `rid` "retry" (none of it went on) and take its bytes off: now, or,
        while its decoder still decodes more of it (`coming`), once its last batch is in
        (`_decoded`; its batches are freed as they come). Until then those bytes are still
        being decoded: they count in `max_queued_bytes`, and in ordered mode the requests
        after it keep waiting their turn rather than pass its later batches."""
        if not req.fut.done():
            req.fut.set_exception(QueueFullError(self.config.pipeline.retry_after))
        if coming:
            req.refused = True
            return
        self._decoding.pop(rid, None)
        self._discharge(req)

    def _cut_short(self, rid: int, req: _Request) -> None:
        """Request `rid` will get no more batches (its decoder died, or the pool stopped):
        answered "retry" if none of it went on, else with the records that did (the sender
        must not resend them: they would count twice). The rest was never decoded, so it is
        counted nowhere."""
        if not req.sequenced:
            self._retry(rid, req)
            return
        self._decoding.pop(rid, None)
        self._discharge(req)
        if not req.fut.done():
            req.fut.set_result(req.records)

    def _free_held(self, decoder: int, header: Any) -> None:
        """A batch that will not be sequenced: the parts the shards that decoded it kept are
        freed there (FREE), and the records of every part are counted lost (none was sent)."""
        if not isinstance(header, dict):
            return
        with contextlib.suppress(Exception):
            self.lost_records += sum(int(n) for n in header["part_records"])
        with contextlib.suppress(Exception):
            self._free_parts(decoder, header)

    def _sequence_batch(
        self, tmax: int, header: dict[str, Any], parts: memoryview, decoder: int
    ) -> None:
        # Everything read from the header first: past it, frames go out and nothing can fail.
        part_bytes = [int(x) for x in header["part_bytes"]]
        part_records = [int(x) for x in header["part_records"]]
        if len(part_bytes) != self.shards or len(part_records) != self.shards:
            raise ValueError(f"a batch cut for {len(part_bytes)} shards, not {self.shards}")
        holders = _holders(header, decoder)
        counts = IntakeCounts(**header["counts"])
        records = int(header["records"])
        repairs = Repairs(header["repairs"])
        if any(not 0 <= k < self.shards or not 0 <= h < 1 << 64 for k, (h, _) in holders.items()):
            raise ValueError(f"parts held as {holders} (of {self.shards} shards)")
        self.stats.normalised.add(counts)
        self.stats.records_accepted += records
        self.stats.count_repairs(repairs)
        if not records:
            return
        if self._max_event_ns is None or tmax > self._max_event_ns:
            self._max_event_ns = tmax
        self._watermark = max(self._watermark, self._max_event_ns - self._lateness_ns)
        seq = next(self._seq)
        live = [s for s in self._shards if s.alive]
        self._waiting[seq] = len(live)
        self._events[seq] = []
        offset = 0
        for s in self._shards:
            k = s.status.index
            size, records = part_bytes[k], part_records[k]
            part = parts[offset : offset + size]
            offset += size
            if not s.alive:
                self.lost_records += records
                continue
            held = holders.get(k)  # its own part: it kept it
            if held is not None:
                size = held[1]  # weighed as if it had travelled
            s.pending[seq] = (records, size)
            if records:
                self._sent_at[(k, seq)] = time.perf_counter()
            s.status.records_in_flight += records
            s.status.bytes_in_flight += size
            if held is not None:
                s.send(held_frame(seq, self._watermark, held[0]))
            else:
                s.send(frame_header(seq_frame(Kind.BATCH, seq, self._watermark), len(part)), part)
        if not live:
            self._finish_seq(seq)

    def _decode_failed(self, rid: int, error: Exception) -> None:
        entry = self._decoding.pop(rid, None)
        if entry is None:
            return
        self._discharge(entry)
        if not entry.fut.done():
            entry.fut.set_exception(error)
        if self.ordered:
            self._release_held()

    def _shard_done(self, seq: int) -> None:
        left = self._waiting.get(seq)
        if left is None:
            return
        if left <= 1:
            self._finish_seq(seq)
        else:
            self._waiting[seq] = left - 1

    def _finish_seq(self, seq: int) -> None:
        """Every shard finished `seq`: dispatch the events of the finished prefix, in order."""
        self._waiting.pop(seq, None)
        self._done_seqs.add(seq)
        while self._next_dispatch in self._done_seqs:
            done = self._next_dispatch
            self._done_seqs.discard(done)
            events = self._events.pop(done, [])
            if events:
                events.sort(key=_event_order)
                self.sink(events)
            self._next_dispatch += 1

    def _lost(self, shard: _Shard) -> None:
        """Shard `shard` is not alive any more (it died, or a restart failed before READY):
        the batches it owed count lost, and each request it was decoding, or had a routed
        part of, is answered "retry" with its charge taken off (or, if part of it went on
        already, with that part: `_cut_short`). Every way a shard stops
        being alive comes here, so no request waits for an answer that cannot come."""
        st = shard.status
        shard.alive = False
        for seq, (records, _) in list(shard.pending.items()):
            self.lost_records += records
            self._sent_at.pop((st.index, seq), None)
            self._shard_done(seq)
        shard.pending.clear()
        st.records_in_flight = st.bytes_in_flight = 0
        for rid in shard.asked:  # a question it will never answer (STOP, a query, ...)
            fut = self._results.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(f"shard {st.index} died"))
        shard.asked.clear()
        for rid, req in list(self._decoding.items()):
            if req.decoder == st.index:
                self._cut_short(rid, req)
        self._abort_routed(st.index)
        # Batches decoded but not gone on yet (a request's go on together, once its last is
        # in: `_gather`, `_release_held`). Those of a request answered "retry", or with a part
        # the dead shard kept, are dropped (and the request answered "retry"): none went on.
        for rid, batches in list(self._held.items()):
            waiting = self._decoding.get(rid)
            if waiting is not None and not any(
                st.index in _holders(_header_or_none(p) or {}, d) for _, p, d in batches
            ):
                continue
            del self._held[rid]
            for _, p, d in batches:
                self._free_parts(d, _header_or_none(p))
            if waiting is not None:
                self._retry(rid, waiting, coming=not batches[-1][0])
        if self.ordered:
            self._release_held()
        self._notify()

    async def _crashed(self, shard: _Shard) -> None:
        """A shard died: count it, fail what it held, restart it from its last snapshot
        (again and again, after a growing delay, while the restart fails: it is `down`
        meanwhile, and requests with records for it are answered "retry")."""
        st = shard.status
        code = shard.process.poll() if shard.process is not None else None
        log.error("shard %d (pid %d) died (exit %s): restarting it from its last snapshot",
                  st.index, st.pid, code)  # fmt: skip
        st.restarts += 1
        st.down = True
        self._lost(shard)
        if shard.process is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(shard.process.wait)
        attempt = 0
        since = shard.restarted_at
        if since is not None and time.monotonic() - since < RESTART_STABLE:
            attempt = shard.attempt  # it died soon after its last restart: no busy loop
            delay = backoff_delay(attempt, RESTART_BACKOFF)
            attempt += 1
            log.error("shard %d died %.1f s after its restart: restarting it in %.1f s",
                      st.index, time.monotonic() - since, delay)  # fmt: skip
            await self._backoff_sleep(delay)
        while not self._closing:
            try:
                await self._spawn(shard)
            except Exception as exc:
                delay = backoff_delay(attempt, RESTART_BACKOFF)
                attempt += 1
                st.restart_failures += 1
                # No process while down (/status showed the failed attempt's). Set with the
                # failure it goes with, before any await: a /status read between the two said
                # "one restart failed" beside the dead attempt's pid.
                st.pid = 0
                if shard.writer is not None:
                    shard.writer.close()
                log.error("shard %d could not be restarted (%s): trying again in %.1f s",
                          st.index, exc, delay)  # fmt: skip
                if shard.process is not None:
                    with contextlib.suppress(Exception):
                        shard.process.kill()
                        await asyncio.to_thread(shard.process.wait)
                await self._backoff_sleep(delay)
                continue
            shard.restarted_at, shard.attempt = time.monotonic(), attempt
            if self._patches is not None:
                patches, self._patches = self._patches, None
                self.push_patches(patches)
            return

    # -- status ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Update each shard's counters and the memory in use (for admission and status)."""
        results = await self.query("stats")
        live = [s for s in self._shards if s.alive]
        for s, r in zip(live, results, strict=False):
            s.status.stats = r
        self.rss_bytes = memory.rss_of() + sum(int(r.get("rss", 0)) for r in results)

    def status(self) -> list[ShardStatus]:
        return [s.status for s in self._shards]

    # The questions `/status` and the control API ask, as `Pipeline` answers them too.

    @property
    def queue_depth(self) -> int:
        return self.records_in_flight

    @property
    def queue_capacity(self) -> int:
        return self.config.receive.queue_max_records * self.shards

    def latency(self) -> dict[str, Any]:
        """Stage timings of this process and of every shard (as of the last refresh)."""
        shards = [s.status.stats["latency"] for s in self._shards if "latency" in s.status.stats]
        return merge_timings([self.stats.latency.snapshot(), *shards])

    def engine_stats(self) -> EngineStats:
        return merge_stats(EngineStats, (s.status.stats.get("detect", {}) for s in self._shards))

    def pattern_stats(self) -> PatternStats:
        return merge_stats(PatternStats, (s.status.stats.get("patterns", {}) for s in self._shards))

    @property
    def rhythm_hashes(self) -> int:
        return self.engine_stats().profiles

    @property
    def events_emitted(self) -> int:
        return int(getattr(self.sink, "emitted", 0))

    @property
    def events_suppressed(self) -> int:
        return int(getattr(self.sink, "suppressed", 0))

    @property
    def events_by_kind(self) -> Counter[tuple[str, str]]:
        by_kind = getattr(self.sink, "by_kind", None)
        return by_kind if isinstance(by_kind, Counter) else Counter()

    @property
    def body_bytes(self) -> int:
        return self.queued_bytes

    async def profiles(self) -> list[ProfileSummary]:
        out = [profile_from_plain(d) for part in await self.query("profiles") for d in part]
        out.sort(key=lambda p: p.rhythm_hash)
        return out

    async def profile(self, rhythm_hash: str) -> tuple[ProfileSummary | None, list[RecentBucket]]:
        for found in await self.query("profile", rhythm_hash=rhythm_hash):
            if found is not None:
                recent = [recent_from_plain(r) for r in found["recent"]]
                return profile_from_plain(found["summary"]), recent
        return None, []

    async def templates(self) -> list[TemplateInfo]:
        return [template_from_plain(d) for part in await self.query("templates") for d in part]

    async def top_rhythms(self, limit: int) -> dict[str, int]:
        totals = sorted(
            ((p.total_count, p.rhythm_hash) for p in await self.profiles()), reverse=True
        )
        return {h: n for n, h in totals[:limit]}

    def _notify(self) -> None:
        self._changed.set()

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()


def _patch_json(p: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(p)
    d["rule"] = p.rule.value
    return d


class _Forked:
    """A shard forked from this process: what `subprocess.Popen` offers, for a pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        # `wait` runs in a thread while the loop may `poll` (a failed start reports the exit
        # code while `kill` waits): one reaps the child, the other must not ask again.
        self._reaping = threading.Lock()

    def poll(self) -> int | None:
        with self._reaping:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                    pid, status = self.pid, 0
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _start_process() -> tuple[subprocess.Popen[bytes] | _Forked, socket.socket]:
    """A shard process, and our end of its socket."""
    parent, child = socket.socketpair()
    try:
        if threading.active_count() == 1:
            # No thread yet (the servers start after the shards): a fork starts a shard
            # with everything imported, in milliseconds instead of a second of imports.
            return _fork_worker(parent, child), parent
        # A restart while the servers run: a fresh interpreter.
        process = subprocess.Popen(
            [sys.executable, "-m", "via_otlp.shard.worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
            start_new_session=False,
        )
        return process, parent
    finally:
        child.close()


def _fork_worker(parent: socket.socket, child: socket.socket) -> _Forked:
    """Fork a shard that serves `child`; the parent keeps `parent`."""
    from via_otlp.shard import worker

    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 70
    try:
        parent.close()
        signal.set_wakeup_fd(-1)  # the serving loop's signal pipe is not ours
        code = worker.serve_forked(child)
    finally:
        os._exit(code)


def _least_loaded(live: list[_Shard]) -> _Shard:
    """The shard to decode a request whole: the fewest bytes being decoded, then records."""
    return min(live, key=lambda s: (s.status.decoding_bytes, s.status.records_in_flight))


def _holders(header: dict[str, Any], decoder: int) -> dict[int, tuple[int, int]]:
    """The parts of a decoded batch that the shards that decoded it kept: shard → (held id,
    bytes it weighs). One decoder ("held"), or the owners of a routed request ("holders")."""
    if "holders" in header:
        return {int(k): (int(hid), int(size)) for k, hid, size in header["holders"]}
    if header.get("held") is None:
        return {}
    return {decoder: (int(header["held"]), int(header.get("held_bytes", 0)))}


_NO_PARTS = memoryview(b"")


@dataclass
class _Merged:
    """A decoded batch kept parsed: a DECODED payload read once as it arrives (its header is
    asked for again on its way: sources to look up, sequencing), or the batch of a routed
    request made of its parts' headers (`_merged`; all its parts are held by their owners)."""

    tmax: int
    header: dict[str, Any]
    parts: memoryview = _NO_PARTS  # the encoded parts for the shards that did not keep theirs


# A decoded batch: a DECODED payload (empty: a request of no records), or one kept parsed.
Decoded = memoryview | _Merged


def _parsed(payload: Decoded) -> tuple[int, dict[str, Any], memoryview]:
    """The largest event time, the header and the encoded parts of a (non-empty) batch;
    ValueError for one that does not parse (too short for its framing, or a header that is
    not a JSON object), so every caller catches one exception."""
    if isinstance(payload, _Merged):
        return payload.tmax, payload.header, payload.parts
    try:
        (hlen,) = _U32.unpack_from(payload, _Q.size)
        (tmax,) = _Q.unpack_from(payload)
    except struct.error as exc:
        raise ValueError(f"decoded batch of {len(payload)} bytes: {exc}") from None
    start = _Q.size + _U32.size
    header = json.loads(bytes(payload[start : start + hlen]))
    if not isinstance(header, dict):
        raise ValueError("decoded batch header is not an object")
    return tmax, header, payload[start + hlen :]


def _weight(payload: Decoded) -> int:
    """The bytes a decoded batch holds here (its encoded parts)."""
    return len(payload.parts) if isinstance(payload, _Merged) else len(payload)


def _read(payload: memoryview) -> Decoded:
    """A DECODED payload parsed once (an empty one, or one that does not parse, stays as it
    is: `_decoded` then fails on it where its request is answered all the same)."""
    if not len(payload):
        return payload
    try:
        return _Merged(*_parsed(payload))
    except (ValueError, TypeError):
        return payload


def _header_or_none(payload: Decoded) -> dict[str, Any] | None:
    """The header of a decoded batch (None for an empty one, or one that does not parse)."""
    try:
        return _header(payload)
    except (ValueError, TypeError):
        return None


def _header(payload: Decoded) -> dict[str, Any] | None:
    """The JSON header of a decoded batch (None for an empty one)."""
    if not isinstance(payload, _Merged) and not len(payload):
        return None
    return _parsed(payload)[1]
