"""One shard: a worker process that owns the learned state of the sources that hash to it.

It does the CPU work the serving process must not: it decodes and normalises requests (any
shard decodes any request, and returns the records cut by owning shard; of a request the
coordinator cut by owning shard before decoding, only its own ResourceLogs), and for its own
sources it templates, applies DROP patches, samples schemas, runs the engine to the watermark
it is told, and writes its snapshot. It reads one stream of frames in order, so a snapshot
holds exactly the batches before it. Started as ``python -m via_otlp.shard.worker FD``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from via_otlp import memory, recovery
from via_otlp.config import Config
from via_otlp.configload import load_dataclass, to_plain
from via_otlp.errors import InputError
from via_otlp.model import AnomalyEvent, LogBatch
from via_otlp.pipeline import Pipeline
from via_otlp.receive.normalise import HexIds, IntakeCounts, NormaliseOptions, Normaliser
from via_otlp.receive.otlp_codec import Encoding, Repairs, decode
from via_otlp.receive.otlp_json import batches_from_json
from via_otlp.registry.patches import Patch, PatchRule, PatchSet
from via_otlp.registry.records import event_to_json
from via_otlp.shard import handoff
from via_otlp.shard.snapshots import SnapshotWriter
from via_otlp.shard.wire import (
    ROUTE_MAX_BYTES,
    Kind,
    decode_batch,
    done_frame,
    encode_batch,
    held_id,
    json_frame,
    recv_frame,
    send_frames,
    seq_frame,
    shard_of,
    split_batch,
    split_seq,
)
from via_otlp.state import load_snapshot
from via_otlp.telemetry.timing import Stage

log = logging.getLogger("via_otlp.shard")

ENCODINGS = (Encoding.PROTOBUF, Encoding.JSON)
_U32 = struct.Struct("<I")
_EMPTY = memoryview(b"")
# A batch for `consume_many`: encoded (BATCH), decoded here (HELD), or None (held no more).
Payload = memoryview | LogBatch | None
_FRAME_HEAD = struct.Struct("<IB")
_HELD_RECORD_BYTES = 64  # a record's columns besides its body, about as encode_batch writes them


def snapshot_path(data_dir: str | Path, index: int, shards: int) -> Path:
    """Where shard `index` of `shards` keeps its snapshot."""
    return Path(data_dir) / "shards" / f"shard-{index}-of-{shards}.snap"


def held_id_base() -> int:
    """Where a shard's HELD ids start: 31 bits from the system's random source (not the
    `random` module, whose state forked shards share) above a 32-bit counter."""
    return (int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF) << 32


def held_weight(batch: LogBatch) -> int:
    """Bytes a held part counts for in the coordinator's `max_queued_bytes` bound (its bodies,
    trace ids, unique ids and template hints, and a fixed share per record), though it never
    travels: kept parts must not escape the bound that an encoded part is held to."""
    ids = batch.trace_id
    id_bytes = ids.nbytes if isinstance(ids, HexIds) else sum(map(len, ids))
    texts = sum(map(len, batch.body)) + sum(map(len, batch.unique_id))
    return texts + sum(map(len, batch.template_hint)) + id_bytes + _HELD_RECORD_BYTES * len(batch)


class Shard:
    """The state and the message handlers of one shard (no sockets: `run` feeds it)."""

    def __init__(self, config: Config, index: int, shards: int) -> None:
        self.config = config
        self.index = index
        self.shards = shards
        self.events: list[AnomalyEvent] = []
        self.patches = PatchSet()
        self.pipeline = Pipeline(
            config, sink=self.events.extend, drop_filter=self._drop, block_filter=self._block
        )
        self.normaliser = Normaliser(NormaliseOptions.from_config(config.receive))
        self.path = snapshot_path(config.state.data_dir, index, shards)
        self.dropped = 0
        self.snapshots = 0
        self.changed: set[str] = set()  # sources with records since their state was exported
        self.coalesced = 0  # batches consumed together with the one before them
        self._writer: SnapshotWriter | None = None
        # Parts of batches this shard decoded for itself, kept here until the coordinator
        # sequences them (a HELD frame): they never travel to it and back. Ids start from 31
        # random bits, so a restarted shard (even under its predecessor's pid, which the system
        # may hand out again) all but never takes a HELD meant for its predecessor for its own.
        self.held: dict[int, LogBatch] = {}
        self._held_ids = itertools.count(held_id_base())

    # -- state -------------------------------------------------------------------------------

    def restore(self) -> dict[str, Any]:
        """Load this shard's snapshot, or take its sources from older state (other shard
        counts, the single-process state.json)."""
        started = time.monotonic()
        loaded = load_snapshot(self.path)
        source = "none"
        if loaded is not None:
            self.pipeline.restore(loaded[0])
            source = "snapshot"
            keys = handoff.tree_source_keys(loaded[0])
        else:
            source = handoff.migrate(self.pipeline, self.config, self.index, self.shards)
            keys = handoff.source_keys(self.pipeline) if source != "none" else []
        return {
            "shard": self.index,
            "restored_from": source,
            "profiles": self.pipeline.rhythm_hashes,
            "seconds": round(time.monotonic() - started, 3),
            "sources": keys,
        }

    def writer(self, close_in_child: tuple[int, ...] = ()) -> SnapshotWriter:
        """The shard's snapshot writer (made once: it forks a child per interval)."""
        if self._writer is None:
            meta = {"shard": self.index, "shards": self.shards}
            self._writer = SnapshotWriter(self.path, meta, self.pipeline.snapshot, close_in_child)
        return self._writer

    def save(self) -> dict[str, Any]:
        """Start the interval's snapshot (written by a forked child: the shard goes on)."""
        report = self.writer().start()
        self.snapshots = self.writer().written
        return report

    def save_final(self) -> dict[str, Any]:
        """The snapshot at shutdown, written before the shard exits."""
        report = self.writer().save_now()
        self.snapshots = self.writer().written
        return report

    # -- work --------------------------------------------------------------------------------

    def _block(self, batch: LogBatch) -> LogBatch:
        kept, blocked = self.patches.apply_blocks(batch)
        self.dropped += blocked
        return kept

    def _drop(self, batch: LogBatch) -> LogBatch:
        kept, dropped = self.patches.apply_drops(batch)
        self.dropped += dropped
        return kept

    def decode(
        self, payload: memoryview, encoding: Encoding, now_ns: int, *, hold: bool = False
    ) -> Iterator[bytes]:
        """A request cut into batches, each as a DECODED payload (with records per shard),
        one at a time: a large request is never held as all its batches at once. Raises
        `InputError` before the first batch when the bytes are not a request. With `hold`,
        this shard's own part stays here (`held`, its id in the header as "held") instead of
        being encoded: the coordinator sends a HELD frame for it where a BATCH would go."""
        raw = bytes(payload)
        max_records = self.config.pipeline.batch_max_records
        timings = self.pipeline.stats.latency
        batches: Iterator[tuple[LogBatch, IntakeCounts]]
        if encoding is Encoding.JSON:
            # Straight from the JSON to columns (receive/otlp_json.py), no protobuf message.
            cuts, repairs = batches_from_json(raw, self.normaliser, now_ns, max_records)
            batches = iter(cuts)
        else:
            message, repairs = decode(raw, encoding)
            batches = self.normaliser.batches(
                message, now_ns, raw, max_records, parsed_from_raw=not repairs
            )
        while True:
            started = time.perf_counter()
            got = next(batches, None)
            if got is None:
                break
            timings.observe(Stage.NORMALISE, time.perf_counter() - started)
            batch, counts = got
            parts = split_batch(batch, self.shards)
            own = parts[self.index] if hold else None
            if own is not None:
                parts[self.index] = None
            blobs = [encode_batch(p) if p is not None else b"" for p in parts]
            if own is not None:
                parts[self.index] = own
            header = {
                "records": len(batch),
                "counts": vars(counts).copy(),  # (flat: what `asdict` gives, without its walk)
                "repairs": int(repairs),
                "part_records": [len(p) if p is not None else 0 for p in parts],
                "part_sources": [
                    [x.key for x in p.sources] if p is not None else [] for p in parts
                ],
                "part_bytes": [len(b) for b in blobs],
            }
            if own is not None:
                hid = next(self._held_ids)
                self.held[hid] = own
                header["held"] = hid
                # What it weighs in the coordinator's byte bound, as its encoding would have.
                header["held_bytes"] = held_weight(own)
            tmax = max(batch.time_ns) if len(batch) else -1  # (ints: no array made for it)
            head = json.dumps(header, separators=(",", ":")).encode()
            yield struct.pack("<q", tmax) + _U32.pack(len(head)) + head + b"".join(blobs)
            repairs = Repairs.NONE  # counted once per request

    def free(self, body: memoryview) -> None:
        """A FREE frame: a part kept here whose batch the coordinator could not sequence."""
        self.held.pop(held_id(body), None)

    def consume(self, payload: memoryview, watermark_ns: int) -> int:
        if len(payload):
            batch = self._prepared(payload)
            self.pipeline.consume(batch, watermark_ns)
            return len(batch)
        if watermark_ns >= 0:
            self.pipeline.advance(watermark_ns)
        return 0

    def _prepared(self, got: memoryview | LogBatch) -> LogBatch:
        """A batch ready for the pipeline: decoded if it came encoded (a held part did not),
        its sources marked changed, then through intake (patches, templates)."""
        batch = got if isinstance(got, LogBatch) else decode_batch(got)
        self.changed.update(src.key for src in batch.sources)
        return self.pipeline.intake.process(batch)

    def consume_many(self, frames: list[tuple[int, int, Payload]]) -> list[dict[str, Any]]:
        """BATCH frames (sequence, watermark, payload: the encoded batch, or the held part a
        HELD frame named, None if this shard holds no such part) that were waiting, consumed in
        as few groups as give the same result as one by one (`Pipeline.absorbs`): the
        per-batch work of templating, rhythm hashing and the engine is paid once per group.
        One DONE each; a group's events go with its last."""
        done: list[dict[str, Any]] = []
        group: list[LogBatch] = []
        records = watermark = 0
        pipeline = self.pipeline

        def flush() -> None:
            if group:
                pipeline.consume_group(group, watermark)
                done[-1]["events"] = self.take_events()
                self.coalesced += len(group) - 1
                group.clear()

        for seq, wm, got in frames:
            dropped = self.dropped
            if got is None or not len(got):
                if group and pipeline.absorbs(watermark, records):
                    watermark = wm  # nothing of this shard's: the watermark moves with the group
                    done.append({"seq": seq, "records": 0, "dropped": 0, "events": []})
                else:
                    flush()
                    self.consume(_EMPTY, wm)
                    events = self.take_events()
                    done.append({"seq": seq, "records": 0, "dropped": 0, "events": events})
                if got is None:  # a part its predecessor held: lost with it
                    done[-1]["missing"] = True
                continue
            batch = self._prepared(got)
            merges, splits = pipeline.patterns.take_merges(), pipeline.patterns.take_splits()
            joins = (
                bool(group)
                and not merges
                and not splits
                and records + len(batch) <= MAX_COALESCED_RECORDS
                and len(batch) > 0
                and bool(group[-1].trace_id) == bool(batch.trace_id)  # (samples or none)
                and pipeline.absorbs(watermark, records + len(batch))
            )
            if not joins:
                flush()
                records = 0
                pipeline.engine.merged(merges)  # as `consume` would, before its batch
                pipeline.engine.split(splits)
            group.append(batch)
            records += len(batch)
            watermark = wm
            done.append({"seq": seq, "records": len(batch), "dropped": self.dropped - dropped,
                         "events": []})  # fmt: skip
        flush()
        return done

    def export(self, everything: bool) -> bytes:
        """The state of the sources that changed since the last export (or of all)."""
        keys = handoff.source_keys(self.pipeline) if everything else sorted(self.changed)
        self.changed.clear()
        blobs = (
            [handoff.encode_source(self.pipeline, k) for k in keys] if handoff.can_split() else []
        )
        head = json.dumps({"keys": keys[: len(blobs)], "sizes": [len(b) for b in blobs]}).encode()
        return _U32.pack(len(head)) + head + b"".join(blobs)

    def take_over(self, blob: memoryview) -> None:
        """Add a source's state from elsewhere (another instance, through the registry)."""
        key, tree = handoff.decode_source(blob)
        handoff.import_sources(self.pipeline, tree)
        log.info("shard %d took source %s over with %d profiles", self.index, key,
                 len(tree.get("engine", {}).get("profiles", []) or []))  # fmt: skip

    def take_events(self) -> list[dict[str, Any]]:
        events = [event_to_json(e) for e in self.events]
        self.events.clear()
        return events

    def set_patches(self, doc: list[dict[str, Any]]) -> None:
        patches = []
        for d in doc:
            d = dict(d)
            d["rule"] = PatchRule(d["rule"])
            patches.append(Patch(**d))
        self.patches = PatchSet(patches)

    def query(self, what: str, args: dict[str, Any]) -> Any:
        p = self.pipeline
        if what == "stats":
            return {
                "patterns": to_plain(p.patterns.stats()),
                "detect": to_plain(p.engine.stats()),
                "dropped_by_patch": self.dropped,
                "snapshots": self.snapshots,
                "coalesced": self.coalesced,
                "held": len(self.held),  # parts kept for a HELD frame not yet come
                "snapshot": self._snapshot_status(),
                "schemas": len(p.schemas.sources()),
                "rss": memory.rss_of(),
                "latency": p.stats.latency.snapshot(),
            }
        if what == "profiles":
            return [to_plain(s) for s in p.engine.profiles()]
        if what == "profile":
            summary = p.engine.profile(args["rhythm_hash"])
            if summary is None:
                return None
            recent = p.engine.recent_buckets(args["rhythm_hash"]) or []
            return {"summary": to_plain(summary), "recent": [to_plain(r) for r in recent]}
        if what == "templates":
            return [to_plain(t) for t in p.patterns.templates()]
        if what == "schema_rows":
            return [to_plain(r) for r in p.schemas.take_dirty()]
        if what in ("recovery_info", "recover"):  # crash safety (via_otlp/recovery.py)
            return recovery.handle(p, what, args, owns=self._owns)
        raise ValueError(f"unknown query {what!r}")

    def _snapshot_status(self) -> dict[str, Any]:
        w = self._writer
        if w is None:
            return {}
        w.poll()
        return {**w.last, "writing": w.writing, "skipped": w.skipped, "failed": w.failed}

    def _owns(self, source_key: str) -> bool:
        return shard_of(source_key, self.shards) == self.index


# After a request this large, the allocator's free memory goes back to the system: a 64 MiB
# export of tiny records left the shard that decoded it 330 MiB larger for good.
_TRIM_AFTER = 8 * 1024 * 1024
# DECODE frames decoded among waiting batches at most: those of routed requests (larger ones
# wait for the loop, which gives their memory back).
_INLINE_DECODE_MAX = ROUTE_MAX_BYTES + 64


# Bounds of one coalesced group: the batches already waiting are drained up to these, so the
# latency and memory a group adds stay those of a few batches.
MAX_COALESCED_RECORDS = 8192
MAX_COALESCED_BYTES = 8 * 1024 * 1024
MAX_COALESCED_FRAMES = 32


def batch_item(shard: Shard, kind: Kind, body: memoryview) -> tuple[int, int, Payload]:
    """A BATCH or HELD frame as `consume_many` takes it (a HELD part leaves `shard.held`)."""
    seq, wm, payload = split_seq(body)
    if kind is Kind.HELD:
        return seq, wm, shard.held.pop(held_id(payload), None)
    return seq, wm, payload


def waiting_batches(
    sock: socket.socket,
    nbytes: int,
    shard: Shard | None = None,
    decode: Callable[[memoryview], None] | None = None,
) -> list[tuple[int, int, Payload]]:
    """The BATCH (and, given the `shard`, HELD) frames that have already arrived after one of
    `nbytes` (whole frames only, within the bounds above): read now, so that `consume_many`
    works on them together. Given `decode`, DECODE frames (of requests routed by owning shard,
    one between every two HELD frames) are handed to it on the way instead of ending the
    group: decoding is no step of the pipeline, so it may come before the batches waiting."""
    out: list[tuple[int, int, Payload]] = []
    decoded = 0
    while len(out) + 1 < MAX_COALESCED_FRAMES and decoded < MAX_COALESCED_FRAMES:
        try:
            head = sock.recv(_FRAME_HEAD.size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if len(head) < _FRAME_HEAD.size:
            break
        length, kind = _FRAME_HEAD.unpack(head)
        if kind == Kind.DECODE and decode is not None and length < _INLINE_DECODE_MAX:
            got = recv_frame(sock)
            if got is None:
                break
            decode(got[1])
            decoded += 1
            continue
        batch = kind == Kind.BATCH or (kind == Kind.HELD and shard is not None)
        if not batch or nbytes + length > MAX_COALESCED_BYTES:
            break
        got = recv_frame(sock)
        if got is None:
            break
        nbytes += length
        out.append(batch_item(shard, got[0], got[1]) if shard is not None else split_seq(got[1]))
    return out


def _send_decoded(sock: socket.socket, rid: int, parts: Iterator[bytes]) -> None:
    """Send a request's DECODED frames as they are made (the last one marked as such)."""
    held: bytes | None = None
    for part in parts:
        if held is not None:
            send_frames(sock, [seq_frame(Kind.DECODED, rid, 0, held)])
        held = part
    send_frames(sock, [seq_frame(Kind.DECODED, rid, 1, held or b"")])


def run(sock: socket.socket) -> int:
    """Serve frames until STOP or until the serving process goes away."""
    first = recv_frame(sock)
    if first is None or first[0] is not Kind.INIT:
        return 2
    init = json.loads(bytes(first[1]))
    config = load_dataclass(Config, init["config"])
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    memory.release_large_blocks()  # a bucket close's temporaries go back between ticks
    shard = Shard(config, int(init["index"]), int(init["shards"]))
    persist = bool(init.get("persist", True))
    ready = shard.restore() if persist else {"shard": shard.index, "restored_from": "none",
                                             "profiles": 0, "seconds": 0.0}  # fmt: skip
    send_frames(sock, [json_frame(Kind.READY, ready)])
    writer = shard.writer(close_in_child=(sock.fileno(),)) if persist else None

    def on_decode(body: memoryview) -> None:
        """A DECODE frame: decoded, its batches sent back (DECODED), or FAILED."""
        rid, now_ns, rest = split_seq(body)
        try:
            parts = shard.decode(rest[1:], ENCODINGS[rest[0]], now_ns, hold=True)
            _send_decoded(sock, rid, parts)
        except InputError as exc:
            send_frames(sock, [json_frame(Kind.FAILED, {"id": rid, "error": str(exc)})])

    while True:
        got = recv_frame(sock)
        if writer is not None and writer.writing:
            writer.poll()  # collect a snapshot child that finished
        if got is None:
            return 0  # the serving process is gone: nothing to answer to
        kind, body = got
        if kind is Kind.BATCH or kind is Kind.HELD:
            item = batch_item(shard, kind, body)
            frames = [item, *waiting_batches(sock, len(body), shard, on_decode)]
            dones = shard.consume_many(frames)
            send_frames(sock, [done_frame(d) for d in dones])
        elif kind is Kind.FREE:
            shard.free(body)
        elif kind is Kind.DECODE:
            large = len(body) >= _TRIM_AFTER
            on_decode(body)
            del got, body
            if large:
                memory.trim()  # give the request's memory back to the system
        elif kind is Kind.TICK:
            doc = json.loads(bytes(body))
            shard.pipeline.tick(int(doc["now_ns"]))
            done = {"seq": doc["seq"], "records": 0, "events": shard.take_events()}
            send_frames(sock, [done_frame(done)])
            memory.trim()  # a bucket close's temporaries: ~250 B a profile held till a snapshot
        elif kind is Kind.FLUSH:
            doc = json.loads(bytes(body))
            shard.pipeline.finish()
            done = {"seq": doc["seq"], "records": 0, "events": shard.take_events()}
            send_frames(sock, [done_frame(done)])
        elif kind is Kind.SNAPSHOT or kind is Kind.STOP:
            doc = json.loads(bytes(body))
            try:
                if not persist:
                    result: Any = {"bytes": 0}
                elif kind is Kind.STOP:
                    result = shard.save_final()
                else:
                    result = shard.save()
            except OSError as exc:
                result = {"error": f"cannot save {shard.path}: {exc}"}
            send_frames(sock, [json_frame(Kind.RESULT, {"id": doc["id"], "result": result})])
            if kind is Kind.STOP:
                return 0
        elif kind is Kind.EXPORT:
            doc = json.loads(bytes(body))
            send_frames(sock, [seq_frame(Kind.EXPORTED, doc["id"], 0, shard.export(doc["all"]))])
        elif kind is Kind.IMPORT:
            try:
                shard.take_over(body)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("shard %d: cannot take a source over: %s", shard.index, exc)
        elif kind is Kind.FORGET:
            keys = json.loads(bytes(body))["keys"]
            handoff.forget_sources(shard.pipeline, keys)
            shard.changed.difference_update(keys)
        elif kind is Kind.PATCHES:
            shard.set_patches(json.loads(bytes(body)))
        elif kind is Kind.QUERY:
            doc = json.loads(bytes(body))
            try:
                result = shard.query(doc["what"], doc.get("args") or {})
                reply = {"id": doc["id"], "result": result}
            except Exception as exc:  # a bad query must not kill the shard
                reply = {"id": doc["id"], "error": str(exc)}
            send_frames(sock, [json_frame(Kind.RESULT, reply)])


def _ignore_stop_signals() -> None:
    # The serving process handles SIGINT/SIGTERM and stops the shards in order: a Ctrl-C that
    # reaches the whole process group must not kill a shard before its final snapshot.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def serve_forked(sock: socket.socket) -> int:
    """A shard forked from the serving process (see `pool._fork_worker`)."""
    _ignore_stop_signals()
    try:
        return run(sock)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the serving process closed our socket (a start that failed): nobody to answer
    except BaseException:
        log.exception("shard failed")
        return 70
    finally:
        sock.close()


def main() -> int:
    _ignore_stop_signals()
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        return run(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
