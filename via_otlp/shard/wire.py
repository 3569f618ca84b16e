"""What travels between the serving process and its shards: framed messages over a socket pair.

A frame is ``u32 length | u8 kind | payload``. Control messages are small JSON documents;
request bytes travel as they came; normalised batches travel as length-prefixed sections
(`encode_batch`: strings joined by NUL into one UTF-8 blob, numbers as arrays), never
pickled. Splitting a batch by owning shard happens here too.
"""

from __future__ import annotations

import enum
import json
import socket
import struct
from operator import itemgetter
from typing import Any, cast

import numpy as np
import xxhash
from google.protobuf.message import DecodeError
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from via_otlp.model import AttributeSample, LogBatch, Source
from via_otlp.receive.normalise import HexIds, IntakeCounts, NormaliseOptions, Normaliser
from via_otlp.receive.wire import resource_logs_spans

_FRAME = struct.Struct("<IB")
_SEQ = struct.Struct("<qq")  # (sequence number or request id, watermark / time)
_HELD_ID = struct.Struct("<Q")
_DONE = struct.Struct("<qqqB")


class Kind(enum.IntEnum):
    """Frame kinds. Main → shard: INIT … STOP; shard → main: READY … FAILED."""

    INIT = 1  # json: config, shard index, shard count, paths
    DECODE = 2  # (request id, now_ns) + u8 encoding + request bytes
    BATCH = 3  # (sequence, watermark) + encoded batch ("" for none: advance only)
    TICK = 4  # json: now_ns
    FLUSH = 5  # json: {} (end of a replay)
    SNAPSHOT = 6  # json: {"id": n}
    PATCHES = 7  # json: the DROP patches
    QUERY = 8  # json: {"id": n, "what": ..., ...}
    STOP = 9  # json: {} — snapshot and exit
    EXPORT = 10  # json: {"id": n, "all": bool} — sources' state for the registry
    IMPORT = 11  # blob of `handoff.encode_source`: take a source over
    FORGET = 12  # json: {"keys": [...]} — another instance took these sources over
    HELD = 13  # (sequence, watermark) + u64 id: a BATCH of the part the shard kept (DECODED)
    FREE = 14  # u64 id: a part the shard kept that will never be sequenced (drop it)
    READY = 20  # json: what the shard restored
    DECODED = 21  # (request id, max event time) + json header + encoded batches per shard
    DONE = 22  # (sequence, records, dropped) + u8 missing + json events (none: no bytes)
    RESULT = 23  # json: {"id": n, "result": ...}
    FAILED = 24  # json: {"id": n, "error": ...} for a request that could not be decoded
    EXPORTED = 25  # (id, 0) + u32 header length + json header {"keys", "sizes"} + blobs


def shard_of(source_key: str, shards: int) -> int:
    """The shard that owns a source: a stable hash of its key (the same in every process)."""
    return xxhash.xxh64_intdigest(source_key.encode("utf-8")) % shards if shards > 1 else 0


# Bounds of the cut before decoding (`Router`): it runs on the serving process's event loop,
# which does I/O only, so its work must not grow with the input. Larger requests, or ones
# with more fields or Resource bytes, are decoded whole by one shard as before.
ROUTE_MAX_BYTES = 4 << 20
ROUTE_MAX_FIELDS = 1024  # ResourceLogs and the fields inside them walked (~20 bytes read each)
# Resource bytes parsed (their attributes are a Python loop); those remembered cost nothing.
ROUTE_MAX_RESOURCE_BYTES = 16 << 10
ROUTE_MAX_PARSES = 32  # Resources parsed (not remembered) for one request
# Resources whose owner is remembered by their bytes: this many bytes at most, each counted
# with an allowance for its entry (Kubernetes Resources of 1-4 KiB are remembered too).
_OWNER_CACHE_BYTES = 4 << 20
_OWNER_ENTRY_BYTES = 128


class Router:
    """Cuts protobuf requests by owning shard before they are decoded (`cut`)."""

    def __init__(
        self, options: NormaliseOptions, shards: int, max_records: int | None = None
    ) -> None:
        self.normaliser = Normaliser(options)
        self.shards = shards
        # More LogRecords than this (a batch): decoded whole, since the parts could not stand
        # for the request and would be decoded twice.
        self.max_records = max_records
        self._owners: dict[bytes, int] = {}  # a Resource's bytes → the shard owning its source
        self._owner_bytes = 0  # their size, as `_OWNER_CACHE_BYTES` counts it

    def owner(self, resource: bytes) -> int:
        """The shard that owns the source of the Resource `resource` (its bytes), as decoding
        gives it. Raises `DecodeError` (or `ValueError`) when the bytes do not parse."""
        found = self._owners.get(resource)
        if found is not None:
            return found
        attributes = Resource.FromString(resource).attributes
        # The normaliser's own rule, so a record's source is the one its decoder will give it.
        source = self.normaliser.resource_source(attributes, IntakeCounts())
        owner = shard_of(source.key, self.shards)
        weight = len(resource) + _OWNER_ENTRY_BYTES
        if self._owner_bytes + weight > _OWNER_CACHE_BYTES:
            self._owners.clear()
            self._owner_bytes = 0
        self._owners[resource] = owner
        self._owner_bytes += weight
        return owner

    def cut(self, data: bytes) -> list[list[memoryview]] | None:
        """The protobuf request `data` cut by owning shard, before it is decoded: each shard's
        ResourceLogs, in order, as the pieces of a request of their own (none for a shard that
        owns none; neighbours joined). Only the framing is walked and only the Resources are
        parsed, at most ROUTE_MAX_PARSES and ROUTE_MAX_RESOURCE_BYTES of them not remembered
        from before (the walk stops there). None when the bytes are not plainly ResourceLogs with Resources that parse,
        or exceed the bounds above: one shard then decodes the request whole (and says what
        is wrong with it)."""
        if len(data) > ROUTE_MAX_BYTES:
            return None
        view = memoryview(data)
        pieces: list[list[memoryview]] = [[] for _ in range(self.shards)]
        last, run_start, run_end = -1, 0, 0
        owners: list[int] = []  # of each ResourceLogs, as the walk passes it
        parses = parsed_bytes = 0

        def keep(resource: bytes) -> bool:
            nonlocal parses, parsed_bytes
            k = self._owners.get(resource, -1)
            if k < 0:
                parses += 1
                parsed_bytes += len(resource)
                if parses > ROUTE_MAX_PARSES or parsed_bytes > ROUTE_MAX_RESOURCE_BYTES:
                    return False  # many Resources not seen before: decoded whole
                k = self.owner(resource)
            owners.append(k)
            return True

        try:
            spans = resource_logs_spans(
                # (The Resources' bytes are bounded by the request's: only those parsed count.)
                data,
                ROUTE_MAX_FIELDS,
                ROUTE_MAX_BYTES,
                self.max_records,
                keep,
            )
            if spans is None:
                return None
            for (start, end, _), k in zip(spans, owners, strict=True):
                if k != last or start != run_end:
                    if last >= 0:
                        pieces[last].append(view[run_start:run_end])
                    last, run_start = k, start
                run_end = end
        except (DecodeError, RecursionError, ValueError):
            return None
        if last >= 0:
            pieces[last].append(view[run_start:run_end])
        return pieces


# -- frames ------------------------------------------------------------------------------------


def frame(kind: Kind, payload: bytes | memoryview = b"") -> bytes:
    return _FRAME.pack(len(payload) + 1, kind) + bytes(payload)


def frame_header(head: bytes, more: int) -> bytes:
    """`head` (a whole frame) grown by `more` bytes that the caller sends right after it."""
    length, kind = _FRAME.unpack_from(head)
    return _FRAME.pack(length + more, kind) + head[_FRAME.size :]


def json_frame(kind: Kind, doc: Any) -> bytes:
    return frame(kind, json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def seq_frame(kind: Kind, a: int, b: int, payload: bytes = b"") -> bytes:
    return frame(kind, _SEQ.pack(a, b) + payload)


def held_frame(seq: int, watermark: int, held_id: int) -> bytes:
    """A HELD frame: sequence `seq` for the part the decoding shard kept as `held_id`."""
    return seq_frame(Kind.HELD, seq, watermark, _HELD_ID.pack(held_id))


def free_frame(held_id: int) -> bytes:
    """A FREE frame: the part the decoding shard kept as `held_id` will never get a HELD."""
    return frame(Kind.FREE, _HELD_ID.pack(held_id))


def held_id(payload: memoryview) -> int:
    """The id a HELD frame's payload (after `split_seq`) or a FREE frame's names."""
    return int(_HELD_ID.unpack_from(payload)[0])


def done_frame(done: dict[str, Any]) -> bytes:
    """A DONE frame: fixed fields packed, the events (JSON) only if any: most batches have
    none, and the serving loop reads one DONE per shard and batch."""
    events = done.get("events")
    tail = json.dumps(events, separators=(",", ":")).encode("utf-8") if events else b""
    fixed = _DONE.pack(
        done["seq"], done["records"], done.get("dropped", 0), bool(done.get("missing"))
    )
    return frame(Kind.DONE, fixed + tail)


def split_done(payload: memoryview) -> tuple[int, int, int, bool, memoryview]:
    """A DONE frame's sequence, records consumed, records dropped, whether the part was
    missing, and its events' JSON (empty: none)."""
    seq, records, dropped, missing = _DONE.unpack_from(payload)
    return seq, records, dropped, bool(missing), payload[_DONE.size :]


def split_seq(payload: memoryview) -> tuple[int, int, memoryview]:
    a, b = _SEQ.unpack_from(payload)
    return a, b, payload[_SEQ.size :]


def send_frames(sock: socket.socket, frames: list[bytes]) -> None:
    sock.sendall(b"".join(frames) if len(frames) > 1 else frames[0])


def recv_exact(sock: socket.socket, n: int) -> memoryview | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return view


def recv_frame(sock: socket.socket) -> tuple[Kind, memoryview] | None:
    """The next frame, or None when the other side closed."""
    head = recv_exact(sock, _FRAME.size)
    if head is None:
        return None
    length, kind = _FRAME.unpack(head)
    body = recv_exact(sock, length - 1) if length > 1 else memoryview(b"")
    if body is None:
        return None
    return Kind(kind), body


# -- batches -----------------------------------------------------------------------------------
#
# A batch is a fixed sequence of sections, each `u32 length | bytes`, after a magic: no header
# to write or parse (as a JSON header and tree walk it was a third of a travelling batch's cost).
# Numbers are raw little-endian arrays; string columns `u8 mode | u32 count` then their values
# (NUL-joined UTF-8, or a JSON list when a value holds a NUL); nested data (sources, attribute
# samples, the severity names) one JSON text each.

_BATCH_MAGIC = b"VIB1"
_LEN = struct.Struct("<I")
_STR = struct.Struct("<BI")  # mode, count
_IDS = struct.Struct("<BII")  # mode, count, width
_ALL_EMPTY, _JOINED, _LISTED = 0, 1, 2  # string column modes
_NO_IDS, _PACKED, _LENGTHS = 0, 1, 2  # trace id column modes
_SEP = "\0"
_SECTIONS = 10


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _strings(values: list[str]) -> bytes:
    """A string column: its values NUL-joined, or a JSON list if a value holds a NUL."""
    if not any(values):
        return _STR.pack(_ALL_EMPTY, len(values))
    joined = _SEP.join(values)
    if joined.count(_SEP) != len(values) - 1:
        return _STR.pack(_LISTED, len(values)) + _json_bytes(values)
    return _STR.pack(_JOINED, len(values)) + joined.encode("utf-8", "surrogatepass")


def _unstrings(section: memoryview) -> list[str]:
    mode, n = _STR.unpack_from(section)
    if mode == _ALL_EMPTY:
        return [""] * n
    data = bytes(section[_STR.size :])
    if mode == _LISTED:
        values = json.loads(data)
    else:
        values = data.decode("utf-8", "surrogatepass").split(_SEP)
    if mode not in (_JOINED, _LISTED) or not isinstance(values, list) or len(values) != n:
        raise ValueError(f"string column of {n} values does not read as such (mode {mode})")
    return values


def _trace_ids(ids: Any) -> bytes:
    """Ids of one width as one blob (packed `HexIds` as they are), else lengths and a blob."""
    packed = ids.blob() if isinstance(ids, HexIds) else None
    if packed is not None and packed[1]:
        return _IDS.pack(_PACKED, len(ids), packed[1]) + packed[0]
    raw: list[bytes] = ids.raw if isinstance(ids, HexIds) else [bytes.fromhex(t) for t in ids]
    lengths = list(map(len, raw))
    if not any(lengths):
        return _IDS.pack(_NO_IDS, len(raw), 0)
    if lengths.count(lengths[0]) == len(lengths):
        return _IDS.pack(_PACKED, len(raw), lengths[0]) + b"".join(raw)
    widths = np.asarray(lengths, dtype=np.uint32).tobytes()
    return _IDS.pack(_LENGTHS, len(raw), 0) + widths + b"".join(raw)


def _untrace_ids(section: memoryview) -> HexIds:
    mode, n, width = _IDS.unpack_from(section)
    data = section[_IDS.size :]
    if mode == _NO_IDS:
        return HexIds([b""] * n)
    if mode == _PACKED and len(data) == n * width:
        return HexIds.packed(bytes(data), width, n)  # split into ids only if asked
    if mode != _LENGTHS or len(data) < 4 * n:
        raise ValueError(f"trace id column of {n} ids does not read as such (mode {mode})")
    ends = np.cumsum(np.frombuffer(data, np.uint32, n), dtype=np.int64).tolist()
    blob = bytes(data[4 * n :])
    if (ends[-1] if ends else 0) != len(blob):
        raise ValueError(f"trace id column of {n} ids does not read as such (mode {mode})")
    return HexIds([blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)])


def encode_batch(batch: LogBatch) -> bytes:
    """A normalised batch (before templating) as bytes."""
    vocab = list(dict.fromkeys(batch.severity))
    code = {s: i for i, s in enumerate(vocab)}
    sections = (
        _json_bytes([[s.key, s.attributes] for s in batch.sources]),
        np.asarray(batch.source_index, dtype=np.int32).tobytes(),
        _json_bytes(vocab),
        np.fromiter(map(code.__getitem__, batch.severity), np.uint16, len(batch)).tobytes(),
        np.asarray(batch.time_ns, dtype=np.int64).tobytes(),
        _strings(batch.body),
        _trace_ids(batch.trace_id),
        _strings(batch.unique_id),
        _strings(batch.template_hint),
        _json_bytes([
            [s.source_index, s.log_attributes, s.resource_attributes, s.record_index]
            for s in batch.attribute_samples
        ]),
    )  # fmt: skip
    out = [_BATCH_MAGIC]
    for section in sections:
        out += (_LEN.pack(len(section)), section)
    return b"".join(out)


def _sections(data: bytes | memoryview) -> list[memoryview]:
    """The sections of an encoded batch; ValueError when it is not one."""
    view = memoryview(data)
    if view[: len(_BATCH_MAGIC)] != _BATCH_MAGIC:
        raise ValueError("not an encoded batch")
    out = []
    at = len(_BATCH_MAGIC)
    while at < len(view):
        if at + _LEN.size > len(view):
            raise ValueError("encoded batch is truncated")
        (n,) = _LEN.unpack_from(view, at)
        at += _LEN.size
        if at + n > len(view):
            raise ValueError("encoded batch is truncated")
        out.append(view[at : at + n])
        at += n
    if len(out) != _SECTIONS:
        raise ValueError(f"encoded batch has {len(out)} sections, not {_SECTIONS}")
    return out


def decode_batch(data: bytes | memoryview) -> LogBatch:
    """The batch `encode_batch` wrote."""
    try:
        sources, source_index, vocab, sev, times, body, trace, unique, hint, samples = _sections(
            data
        )
        vocab_names = json.loads(bytes(vocab))
        return LogBatch(
            sources=[
                Source(k, tuple((a, b) for a, b in attrs))
                for k, attrs in json.loads(bytes(sources))
            ],
            source_index=np.frombuffer(source_index, np.int32).tolist(),
            severity=[vocab_names[i] for i in np.frombuffer(sev, np.uint16).tolist()],
            body=_unstrings(body),
            time_ns=np.frombuffer(times, np.int64).tolist(),
            trace_id=cast(list[str], _untrace_ids(trace)),
            unique_id=_unstrings(unique),
            template_hint=_unstrings(hint),
            attribute_samples=[
                AttributeSample(
                    int(si), tuple((a, b) for a, b in la), tuple((a, b) for a, b in ra), int(ri)
                )
                for si, la, ra, ri in json.loads(bytes(samples))
            ],
        )
    except struct.error as exc:
        raise ValueError(f"encoded batch: {exc}") from None


def _take(col: Any, idx: list[int], runs: list[tuple[int, int]] | None) -> Any:
    """`col`'s values at `idx` (a list, or `HexIds`); by slices when `runs` are given."""
    if not col:
        return []
    if isinstance(col, HexIds):
        packed = col.blob()
        if packed is None or not packed[1]:
            return HexIds(list(_take(col.raw, idx, runs)))
        blob, w = packed  # gathered from the blob, in C: no id is split out of it
        if runs is not None:
            data = b"".join([blob[a * w : b * w] for a, b in runs])
        else:
            data = np.frombuffer(blob, np.uint8).reshape(-1, w)[idx].tobytes()
        return HexIds.packed(data, w, len(idx))
    if runs is not None:
        out: list[Any] = []
        for a, b in runs:
            out += col[a:b]
        return out
    if len(idx) == 1:
        return [col[idx[0]]]
    return list(itemgetter(*idx)(col))


def _runs(idx: np.ndarray) -> list[tuple[int, int]] | None:
    """`idx` (ascending) as [start, end) runs of consecutive records, when they are few: a
    source's records come in one run per scope, and slices copy in C."""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    if len(breaks) * 8 > len(idx):
        return None
    starts = idx[np.concatenate(([0], breaks))]
    ends = idx[np.concatenate((breaks - 1, [len(idx) - 1]))] + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def split_batch(batch: LogBatch, shards: int) -> list[LogBatch | None]:
    """The batch's records by owning shard (None where a shard gets none), in record order.

    Each part lists only its own sources; attribute samples follow their records. Index
    columns are remapped in numpy, the others copied by slices (or `itemgetter`): no Python
    loop over records (the split was a twentieth of a two-shard pipeline's CPU).
    """
    owner = [shard_of(s.key, shards) for s in batch.sources]
    if len(set(owner)) <= 1:
        parts: list[LogBatch | None] = [None] * shards
        if len(batch):
            parts[owner[0]] = batch
        return parts
    owners = np.asarray(owner, dtype=np.int64)
    source_index = np.asarray(batch.source_index, dtype=np.int64)
    rec_owner = owners[source_index]
    # A source's index among its owner's sources (`local`), a record's among its owner's.
    local = np.zeros(len(owner), dtype=np.int64)
    rec_local = np.zeros(len(source_index), dtype=np.int64)
    out: list[LogBatch | None] = []
    for k in range(shards):
        mine = np.flatnonzero(owners == k)
        idx = np.flatnonzero(rec_owner == k)
        local[mine] = np.arange(len(mine))
        rec_local[idx] = np.arange(len(idx))
        if len(idx) == 0:
            out.append(None)
            continue
        keep = idx.tolist()
        runs = _runs(idx)
        part = LogBatch(
            sources=[batch.sources[i] for i in mine.tolist()],
            source_index=local[source_index[idx]].tolist(),
            severity=_take(batch.severity, keep, runs),
            body=_take(batch.body, keep, runs),
            time_ns=_take(batch.time_ns, keep, runs),
            trace_id=_take(batch.trace_id, keep, runs),
            unique_id=_take(batch.unique_id, keep, runs),
            template_hint=_take(batch.template_hint, keep, runs),
            attribute_samples=[
                AttributeSample(
                    int(local[s.source_index]), s.log_attributes, s.resource_attributes,
                    int(rec_local[s.record_index]),
                )
                for s in batch.attribute_samples
                if rec_owner[s.record_index] == k
            ],
        )  # fmt: skip
        out.append(part)
    return out
