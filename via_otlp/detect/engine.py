"""The detect engine: event-time buckets, a watermark, profiles, tests and episodes.

Records fall into buckets by their own timestamps. The watermark is the largest event time seen
minus `allowed_lateness` (in `serve`, also the wall clock minus it, through `tick`, so silence is
seen); a bucket closes when the watermark passes its end, in order. A record for a bucket that
already closed is *late*: it is counted and folded into the oldest open bucket, not dropped.
Replay is driven by event time alone, so a day replayed in seconds gives the anomalies it gave
live (as long as live ticks never overtook the records; a batch moves the watermark once).

Work is done per group, not per record: a batch is grouped by (profile, bucket) with numpy,
and each group updates its profile once. Everything is deterministic: same input, same events,
and a snapshot taken between two batches restores to exactly the same future.

>>> from via_otlp.model import LogBatch, Source
>>> src = Source.from_attributes((("service.name", "checkout"),))
>>> def batch(t_s, n):
...     return LogBatch(sources=[src], source_index=[0] * n, severity=["ERROR"] * n,
...         body=["x"] * n, time_ns=[int(t_s * 1e9)] * n, trace_id=[""] * n, unique_id=[""] * n,
...         template_id=["T1"] * n, template=["Payment declined for order <*>"] * n,
...         rhythm_hash=["00000000000000aa"] * n)
>>> eng = Engine(DetectConfig(warmup=600))
>>> events = []
>>> for minute in range(120):            # two hours of a steady 2 per 10 s bucket...
...     for b in range(6):
...         events += eng.observe(batch(minute * 60 + b * 10 + 1, 2))
>>> events += eng.observe(batch(7201, 48))  # ...then 48 in one bucket
>>> events += eng.flush()
>>> [(e.kind.value, e.state.value) for e in events]
[('spike', 'open')]
>>> events[0].explanation
"checkout: 'Payment declined for order <*>' 288/min, usually 12±8.5/min"
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from via_otlp.detect.cardinality import describe
from via_otlp.detect.codec import as_array, check_version, leaf
from via_otlp.detect.config import DetectConfig
from via_otlp.detect.episodes import (
    SEVERITY_NOVELTY_SCORE,
    Episode,
    boosted,
    episode_id,
    number_text,
    rate_text,
    rose_a_band,
)
from via_otlp.detect.hll import compact, estimate_packed, pack, packed_slots, registers_of
from via_otlp.detect.novelty import SEVERITY_RANK, evidence, most_severe
from via_otlp.detect.profile import (
    Alarm,
    ProfileSummary,
    ProfileTable,
    RecentBucket,
    Verdict,
)
from via_otlp.detect.samples import (
    EMPTY_ID_HASH,
    TraceSamples,
    as_held,
    hash_ids,
    join_ids,
    pick_ids,
)
from via_otlp.detect.upgrade import upgrade_engine
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, LogBatch, Source
from via_otlp.patterns.rhythm import rhythm_hash

if TYPE_CHECKING:
    from via_otlp.patterns.stage import TemplateMerge, TemplateSplit


_KIND_ORDER = {k: i for i, k in enumerate(AnomalyKind)}


def _hash_ids(uids: list[str]) -> np.ndarray:
    """``xxh64_intdigest(uid.encode())`` of every id, as uint64 (in C where it is built)."""
    return hash_ids(uids, "strict")


def _pick(seq: Sequence[str], idx: np.ndarray) -> tuple[str, ...]:
    """``tuple(seq[i] for i in idx)``, in C (trace ids kept as bytes say it themselves)."""
    if len(idx) == 0:
        return ()
    hex_at = getattr(seq, "hex_at", None)
    if hex_at is not None:
        return tuple(hex_at(idx))
    if len(idx) == 1:
        return (seq[int(idx[0])],)
    return itemgetter(*idx.tolist())(seq)


def _slots_of(index: dict[str, int], hashes: Sequence[str]) -> np.ndarray:
    """Each hash's slot in `index`, -1 where it has none: all looked up in one C call
    (`itemgetter`, a quarter faster than a `get` per hash), by `get` when one is missing.

    >>> _slots_of({"a": 3, "b": 5}, ["b", "a", "b"]).tolist(), _slots_of({"a": 3}, ["a", "c"]).tolist()
    ([5, 3, 5], [3, -1])
    """
    n = len(hashes)
    if n > 1:
        try:
            return np.fromiter(itemgetter(*hashes)(index), dtype=np.int64, count=n)
        except KeyError:
            pass
    return np.fromiter(map(index.get, hashes, repeat(-1)), dtype=np.int64, count=n)


def _held(row: list[Any]) -> list[int]:
    """A held new pattern's [first bucket, records] from a snapshot row [rhythm hash, ...]."""
    return [int(row[1]), int(row[2]) if len(row) > 2 else 0]


def _stable_order(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``argsort(key, kind="stable")`` and `key` in that order, for a non-negative int64 `key`:
    one plain sort of key·2^b + position (the positions make every value distinct, so the
    order is the stable one), several times faster than a stable argsort of a batch.

    >>> [a.tolist() for a in _stable_order(np.array([3, 1, 3, 0, 1]))]
    [[3, 1, 4, 0, 2], [0, 1, 1, 3, 3]]
    >>> _stable_order(np.array([1 << 61, 5, 1 << 61]))[0].tolist()  # (no room: argsort)
    [1, 0, 2]
    """
    m = len(key)
    bits = max(1, (m - 1).bit_length())
    if int(key.max()) >= 1 << (62 - bits):  # (a batch spread over eons: no room for positions)
        sort = np.argsort(key, kind="stable")
        return sort, key[sort]
    s = np.sort((key << bits) | np.arange(m, dtype=np.int64))
    return s & ((1 << bits) - 1), s >> bits


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique(x)`` for int64, by a sort (several times faster for a few thousand)."""
    if len(x) == 0:
        return x
    x = np.sort(x)
    return x[np.concatenate(([True], x[1:] != x[:-1]))]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters for a status page."""

    profiles: int
    profiles_learning: int
    evictions_idle: int
    evictions_capacity: int
    records: int
    late_records: int
    dropped_records: int
    batches: int
    buckets_closed: int
    buckets_skipped: int
    open_buckets: int
    open_episodes: int
    episodes_opened: int
    episodes_resolved: int
    watermark_ns: int
    max_event_ns: int


_MAX_SPLITS = 10_000  # splits waiting for their template's first records (oldest dropped)
_FOLD_AT = 1 << 17  # pending trace id candidates an open bucket holds before folding them
# Pending candidates past which a bucket folds them early, so that the slots whose samples are
# complete are known (`_OpenBucket.full`) and take no more candidates: a busy bucket's later
# batches then cost nothing there. It goes on folding early while that completes slots; once a
# fold completes none (ids absent, or one id repeated), it waits for `_FOLD_AT` as before.
# An early fold also waits for as many candidates as the bucket holds samples: with many
# profiles each fold completes a few slots only and costs as much as the samples held (their
# sorted keys are rebuilt), so folds get fewer as the samples grow (a few per bucket, not one
# per batch). Pending memory stays under the samples' own and `_FOLD_AT`.
_FOLD_SOON = 1 << 11


@dataclass(slots=True)
class _OpenBucket:
    """What arrived for one not-yet-closed bucket."""

    counts: np.ndarray
    with_id: np.ndarray  # per slot: records that carried a unique id
    # Distinct ids of every profile as packed (slot, register, rank) triples (`hll.pack`):
    # `regs` is compacted, `pending` holds the batches' triples not merged into it yet.
    regs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pending_regs: list[np.ndarray] = field(default_factory=list)
    pending_reg_count: int = 0
    # The folded trace id samples: per slot, its first `k` distinct non-empty ids (`samples`).
    traces: TraceSamples = field(default_factory=TraceSamples)
    # Trace id candidates not folded into the samples yet: per batch, the first few records of
    # each group as (slot, trace id) in record order, empty ids left out, ids as `pick_ids`
    # gives them. Folding waits until samples are read (an alarm, a snapshot), or until many wait.
    pending_slots: list[np.ndarray] = field(default_factory=list)
    pending_tids: list[np.ndarray] = field(default_factory=list)
    pending_hashes: list[np.ndarray | None] = field(default_factory=list)  # strs' `hash_ids`
    pending: int = 0
    # Per slot: its folded samples are complete (`k` of them), so no later candidate can
    # change them (samples are a slot's first `k` distinct ids); set by `fold`.
    full: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    fold_early: bool = True  # folding at `_FOLD_SOON` still completes slots

    def grow(self, cap: int) -> None:
        if len(self.counts) < cap:
            pad = cap - len(self.counts)
            self.counts = np.concatenate([self.counts, np.zeros(pad)])
            self.with_id = np.concatenate([self.with_id, np.zeros(pad)])

    def add_registers(self, packed: np.ndarray) -> None:
        """Add a batch's (slot, register, rank) triples; merged lazily, amortised O(n log n)."""
        self.pending_regs.append(packed)
        self.pending_reg_count += len(packed)
        if self.pending_reg_count > max(1 << 16, 2 * len(self.regs)):
            self.compacted()

    def compacted(self) -> np.ndarray:
        """Every distinct-id sketch of the bucket, compacted (one triple per slot and register)."""
        if self.pending_regs:
            self.regs = compact(np.concatenate([self.regs, *self.pending_regs]))
            self.pending_regs, self.pending_reg_count = [], 0
        return self.regs

    def add_candidates(
        self,
        slots: np.ndarray,
        tids: np.ndarray,
        k: int,
        hashes: np.ndarray | None = None,
        keep: np.ndarray | None = None,
    ) -> None:
        """Candidates (slot, trace id) in record order: `tids` as `pick_ids` gives them (its
        `hashes`, and `keep`: the mask of `slots` whose ids they are, the others empty), or an
        object array of strs (held as 16 bytes here where they are lower hex)."""
        if tids.ndim == 1 and hashes is None and keep is None:
            tids, hashes, keep = as_held(tids)
        self.traces.see(slots)  # an entry once a group was seen, ids or not
        self.pending_slots.append(slots if keep is None else slots[keep])
        self.pending += len(self.pending_slots[-1])  # (records without an id are not candidates)
        self.pending_tids.append(tids)
        self.pending_hashes.append(hashes)
        soon = max(_FOLD_SOON, self.traces.n)
        if self.pending > _FOLD_AT or (self.fold_early and self.pending > soon):
            self.fold_early = self.fold(k) > 0

    def saturated(self, slots: np.ndarray) -> np.ndarray:
        """Whether each of `slots` has its samples complete already (`full`)."""
        full = self.full
        if not len(full):
            return np.zeros(len(slots), dtype=bool)
        inside = slots < len(full)
        out = np.zeros(len(slots), dtype=bool)
        out[inside] = full[slots[inside]]
        return out

    def fold(self, k: int) -> int:
        """Fold the pending candidates into the samples (per slot, its first `k` distinct ids),
        and mark the slots whose samples are now complete (`full`); how many."""
        if not self.pending_slots:
            return 0
        ps = np.concatenate(self.pending_slots)
        pt, ph = join_ids(self.pending_tids, self.pending_hashes)
        self.pending_slots, self.pending_tids, self.pending_hashes = [], [], []
        self.pending = 0
        traces = self.traces
        added = traces.take(ps, pt, k, ph)
        done = _sorted_unique(added[traces.count[added] >= k])  # (they held fewer before)
        if len(done):
            top = int(done[-1]) + 1
            if len(self.full) < top:
                self.full = np.concatenate([self.full, np.zeros(top - len(self.full), bool)])
            self.full[done] = True
        return len(done)

    @property
    def samples(self) -> dict[int, list[str]]:
        """The folded samples by slot (an entry for every slot seen, ids or not)."""
        return self.traces.by_slot(None)

    def samples_of(self, slots: set[int] | None, k: int) -> dict[int, list[str]]:
        """The samples of `slots` (None: of all), pending candidates folded first.

        A slot's entry exists once a group of it was seen, even if none of its ids was set.
        """
        self.fold(k)
        if slots is None:
            return self.traces.by_slot(None)
        want = np.zeros(len(self.traces.seen), dtype=bool)
        idx = np.fromiter(slots, dtype=np.int64, count=len(slots))
        want[idx[idx < len(want)]] = True
        return self.traces.by_slot(want)

    def forget(self, slots: np.ndarray) -> None:
        """Drop everything of evicted `slots` (their slots may be reused)."""
        for i, ps in enumerate(self.pending_slots):
            m = np.isin(ps, slots)
            if m.any():
                self.pending -= int(np.count_nonzero(m))
                self.pending_slots[i] = ps[~m]
                self.pending_tids[i] = self.pending_tids[i][~m]
                h = self.pending_hashes[i]
                self.pending_hashes[i] = None if h is None else h[~m]
        regs = self.compacted()
        if len(regs):
            self.regs = regs[~np.isin(packed_slots(regs), slots)]
        self.traces.forget(slots)
        inside_full = slots[slots < len(self.full)]
        self.full[inside_full] = False  # a reused slot starts without samples
        inside = slots[slots < len(self.counts)]
        self.counts[inside] = 0.0
        self.with_id[inside] = 0.0

    def to_tree(self, bucket: int, slots: np.ndarray | None, k: int) -> dict[str, Any]:
        """This bucket as a tree; with `slots`, only theirs, renumbered 0.. in that order."""
        self.fold(k)
        regs = self.compacted()
        if slots is None:
            nz = np.flatnonzero((self.counts != 0) | (self.with_id != 0))
            pos = nz
            samples = self.traces.by_slot(None)
        else:
            slots = slots[slots < len(self.counts)]
            keep = (self.counts[slots] != 0) | (self.with_id[slots] != 0)
            nz, pos = slots[keep], np.flatnonzero(keep)
            renum = dict(zip(slots.tolist(), range(len(slots)), strict=True))
            rs = packed_slots(regs)
            m = np.isin(rs, slots)
            new_slot = np.array([renum[x] for x in rs[m].tolist()], dtype=np.int64)
            regs = (new_slot << 24) | (regs[m] & 0xFFFFFF)
            samples = {renum[s]: v for s, v in self.traces.by_slot(None).items() if s in renum}
        return {
            "bucket": bucket,
            "slots": pos.astype(np.int64),
            "counts": leaf(self.counts[nz]),
            "with_id": leaf(self.with_id[nz]),
            "regs": leaf(regs),
            "samples": [[s, list(v)] for s, v in sorted(samples.items())],
        }

    def add_tree(self, tree: dict[str, Any], slot_of: np.ndarray) -> None:
        """Add a `to_tree` bucket whose slot i is `slot_of[i]` here."""
        pos = slot_of[as_array(tree["slots"], np.int64)]
        self.counts[pos] += as_array(tree["counts"], np.float64)
        self.with_id[pos] += as_array(tree["with_id"], np.float64)
        regs = as_array(tree["regs"], np.int64)
        if len(regs):
            self.add_registers((slot_of[regs >> 24] << 24) | (regs & 0xFFFFFF))
        rows = tree["samples"]
        if not rows:
            return
        here = [int(slot_of[int(s)]) for s, _ in rows]
        self.traces.see(np.array(here, dtype=np.int64))
        ps = np.array([s for s, (_, v) in zip(here, rows, strict=True) for _ in v], np.int64)
        pt = np.empty(len(ps), dtype=object)
        pt[:] = [t for _, v in rows for t in v]
        if len(ps):  # (each id its slot does not hold yet, however many it holds)
            tids, hashes, keep = as_held(pt)
            self.traces.take(ps if keep is None else ps[keep], tids, np.iinfo(np.int64).max, hashes)


class Engine:
    """Turns LogBatches (with rhythm hashes filled) into anomaly episode events."""

    # 4: a tree of raw arrays, distinct ids as packed registers (1-3 are no longer read)
    VERSION = 4

    def __init__(self, config: DetectConfig) -> None:
        if not isinstance(config, DetectConfig):
            raise TypeError(f"config: must be a DetectConfig, got {type(config).__name__}")
        self.config = config
        self._bucket_ns = config.bucket_ns
        self._lateness_ns = round(config.allowed_lateness * 1e9)
        self._cooldown = max(1, config.buckets(config.cooldown))
        self._ttl = max(1, config.buckets(config.idle_ttl))
        self._gap_buckets = config.buckets(config.max_gap)
        self._source_warmup_ns = round(config.novelty.source_warmup * 1e9)
        self._hold = config.buckets(config.novelty.hold)
        self._hold_max = max(self._hold, config.buckets(config.novelty.hold_max))
        self._init_state()

    def _init_state(self) -> None:
        self._table = ProfileTable(self.config)
        self._open: dict[int, _OpenBucket] = {}
        self._next_close: int | None = None  # the oldest bucket not closed yet
        self._max_event_ns: int | None = None
        self._watermark_ns: int | None = None
        self._episodes: dict[tuple[str, AnomalyKind], Episode] = {}
        self._sources: dict[str, tuple[Source, int]] = {}  # key → (source, first seen ns)
        # Evicted rhythm hashes → their source key: not novel if they return.
        self._forgotten: dict[str, str] = {}
        # Held new patterns (`novelty`): slot → [bucket of its first records, records in the
        # buckets closed since].
        self._novel: dict[int, list[int]] = {}
        # (source key, template id) of templates the miner split off a known one, until their
        # profile is made (`split`); not kept in snapshots (they are used within a batch or two).
        self._splits: dict[tuple[str, str], None] = {}
        self._c = dict.fromkeys(
            ("records", "late_records", "dropped_records", "batches", "buckets_closed", "buckets_skipped", "evictions_idle",
             "evictions_capacity", "episodes_opened", "episodes_resolved"), 0,
        )  # fmt: skip

    # -- intake ------------------------------------------------------------------------------

    def observe(
        self, batch: LogBatch, *, watermark_ns: int | None = None, parts: np.ndarray | None = None
    ) -> list[AnomalyEvent]:
        """Ingest a batch (grouped by profile and bucket); return events of buckets it closed.

        Records are added first, then the watermark moves, then buckets close. The watermark is
        the newest event time seen minus `allowed_lateness`, or `watermark_ns` when given: a
        sharded pipeline passes every shard the watermark one engine would have had after this
        batch, so the anomalies do not depend on how sources are spread over shards.

        `parts` (each record's batch number, ascending) marks several batches observed as one
        (a shard's coalesced backlog, only when `absorbs` said so): trace samples and template
        texts are then taken per batch, so the result is the one of observing them in turn.
        """
        n = len(batch)
        if n == 0:
            return [] if watermark_ns is None else self.advance(watermark_ns)
        self._c["batches"] += 1
        self._c["records"] += n
        t = np.asarray(batch.time_ns, dtype=np.int64)
        b = t // self._bucket_ns
        events: list[AnomalyEvent] = []
        if self._next_close is None:
            # The first batch starts the clock. A record older than the idle TTL before its
            # newest one cannot matter to any profile, and a bogus one (time 1970) must not make
            # the engine close fifty years of buckets: such records count as late.
            newest = (
                int(b.max())
                if watermark_ns is None
                else (watermark_ns + self._lateness_ns) // self._bucket_ns
            )
            self._next_close = max(int(b.min()), newest - self._ttl)
        late = b < self._next_close
        n_late = int(np.count_nonzero(late))
        if n_late:
            self._c["late_records"] += n_late
            b = np.maximum(b, self._next_close)

        # Rhythm hash → profile slot (one dict look-up per record, in C); new hashes make profiles.
        hashes = batch.rhythm_hash
        table = self._table
        rec_slot = _slots_of(table.index, hashes)
        if int(rec_slot.min()) < 0:
            # Only the records without a profile are coded (their hashes in order of first
            # appearance): a batch with a few new patterns no longer codes all its records.
            miss = np.flatnonzero(rec_slot < 0)
            missing = [hashes[i] for i in miss.tolist()]
            uniq = dict.fromkeys(missing)
            code_of = {h: i for i, h in enumerate(uniq)}
            codes = np.fromiter(map(code_of.__getitem__, missing), np.int64, count=len(miss))
            slot_of_code = np.full(len(uniq), -1, dtype=np.int64)
            known = rec_slot[rec_slot >= 0]  # the batch's profiles: never evicted for room
            events += self._create(batch, codes, miss, slot_of_code, known, t, b)
            rec_slot[miss] = slot_of_code[codes]
        pos = np.flatnonzero(rec_slot >= 0)
        if len(pos) < n:  # more new patterns than max_profiles allows: counted, not a crash
            self._c["dropped_records"] += n - len(pos)

        if len(pos):
            self._group(batch, t, b, rec_slot, pos, parts)

        tmax = int(t.max())
        if self._max_event_ns is None or tmax > self._max_event_ns:
            self._max_event_ns = tmax
        events += self._advance(tmax - self._lateness_ns if watermark_ns is None else watermark_ns)
        return events

    def _group(
        self,
        batch: LogBatch,
        t: np.ndarray,
        b: np.ndarray,
        rec_slot: np.ndarray,
        pos: np.ndarray,
        parts: np.ndarray | None = None,
    ) -> None:
        """Add the records at `pos` to their open buckets, grouped by (slot, bucket)."""
        table = self._table
        # Group by (slot, bucket): one sort, then per-group reductions.
        whole = len(pos) == len(b)  # (every record has a profile, as usual: no copies)
        bp = b if whole else b[pos]
        bmin = int(bp.min())
        span = int(bp.max()) - bmin + 1
        key = (rec_slot if whole else rec_slot[pos]) * span + (bp - bmin)
        sort, sk = _stable_order(key)
        order = sort if whole else pos[sort]  # record positions, grouped (in record order)
        starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        cnt = np.diff(np.append(starts, len(pos)))
        gkey = sk[starts]
        g_slot = gkey // span
        g_bucket = gkey % span + bmin
        g_tmax = np.maximum.reduceat(t[order], starts)

        if span == 1:  # the usual batch: one bucket, so one group per slot
            table.last_seen_ns[g_slot] = np.maximum(table.last_seen_ns[g_slot], g_tmax)
            table.last_bucket[g_slot] = np.maximum(table.last_bucket[g_slot], bmin)
            table.total[g_slot] += cnt
            acc = self._bucket(bmin)
            acc.counts[g_slot] += cnt
        else:
            np.maximum.at(table.last_seen_ns, g_slot, g_tmax)
            np.maximum.at(table.last_bucket, g_slot, g_bucket)
            np.add.at(table.total, g_slot, cnt)
            for bk in np.unique(g_bucket).tolist():
                acc = self._bucket(bk)
                m = g_bucket == bk
                acc.counts[g_slot[m]] += cnt[m]
        if parts is not None:
            self._group_parts(batch, parts, order, sk, span, bmin)
        elif batch.template:
            # Per slot, the first record of the batch: the first record of its first group.
            first_of_group = order[starts]
            if span == 1:
                self._refresh_templates(batch.template, g_slot, first_of_group)
            else:
                by_slot = np.flatnonzero(np.concatenate(([True], g_slot[1:] != g_slot[:-1])))
                first = np.minimum.reduceat(first_of_group, by_slot)
                self._refresh_templates(batch.template, g_slot[by_slot], first)

        max_samples = self.config.max_sample_trace_ids
        if max_samples and batch.trace_id and parts is None:
            self._sample_traces(batch.trace_id, order, starts, cnt, g_slot, g_bucket, max_samples)
        if batch.unique_id and any(batch.unique_id):
            self._count_unique(batch.unique_id, order, starts, cnt, g_slot, g_bucket)

    def _group_parts(
        self, batch: LogBatch, parts: np.ndarray, order: np.ndarray, sk: np.ndarray, span: int,
        bmin: int,
    ) -> None:  # fmt: skip
        """`_group`'s trace samples and template texts for coalesced batches: per group and
        batch (a group's records are in record order, so its batches come in turn), as
        observing the batches one by one would have taken them."""
        po = parts[order]
        sub = np.flatnonzero(np.concatenate(([True], (sk[1:] != sk[:-1]) | (po[1:] != po[:-1]))))
        s_slot = sk[sub] // span
        if batch.template:
            # Per slot, the first record of the last batch that has it: sort the sub-groups
            # by (slot, batch, -record) and take each slot's last.
            s_rec = order[sub]
            o = np.lexsort((-s_rec, po[sub], s_slot))
            ss = s_slot[o]
            last = np.flatnonzero(np.append(ss[1:] != ss[:-1], True))
            self._refresh_templates(batch.template, ss[last], s_rec[o][last])
        max_samples = self.config.max_sample_trace_ids
        if max_samples and batch.trace_id:
            s_cnt = np.diff(np.append(sub, len(order)))
            s_bucket = sk[sub] % span + bmin
            self._sample_traces(batch.trace_id, order, sub, s_cnt, s_slot, s_bucket, max_samples)

    def _refresh_templates(
        self, templates: list[str], slots: np.ndarray, first: np.ndarray
    ) -> None:
        """Keep each profile's template text current: a template that generalised since the
        profile was created (a new ``<*>``) keeps its id, so its rhythm hash, but reads better.

        `slots` are the batch's profiles (each once) and `first` their first records."""
        texts = self._table.template
        now = _pick(templates, first)
        had = _pick(texts, slots)
        if now == had:
            return
        changed = np.flatnonzero(np.array(now, dtype=object) != np.array(had, dtype=object))
        for i in changed.tolist():
            texts[int(slots[i])] = now[i]

    def _bucket(self, bk: int) -> _OpenBucket:
        acc = self._open.get(bk)
        cap = self._table.capacity
        if acc is None:
            acc = self._open[bk] = _OpenBucket(np.zeros(cap), np.zeros(cap))
        else:
            acc.grow(cap)
        return acc

    def _create(
        self,
        batch: LogBatch,
        codes: np.ndarray,
        rows: np.ndarray,
        slot_of_code: np.ndarray,
        protect: np.ndarray,
        t: np.ndarray,
        b: np.ndarray,
    ) -> list[AnomalyEvent]:
        """Profiles for the new rhythm hashes: the records `rows` of `batch` have none, and
        `codes` numbers their hashes in order of first appearance; each new profile's slot goes
        to `slot_of_code` (-1 stays where `max_profiles` leaves no room). `protect`: the slots
        of the batch's other records, which an eviction for room must spare."""
        events: list[AnomalyEvent] = []
        first = np.full(len(slot_of_code), len(codes), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(codes), dtype=np.int64))
        first = rows[first]  # each new hash's first record in the batch
        new_codes = np.arange(len(slot_of_code))
        table = self._table
        free = self.config.max_profiles - len(table)
        if len(new_codes) > free:
            need = len(new_codes) - free
            k = max(need, self.config.max_profiles // 100)
            victims = table.least_recent(k, protect)
            events += self._evict(victims.tolist(), "evictions_capacity", self._next_close or 0)
            room = self.config.max_profiles - len(table)
            new_codes = new_codes[: max(0, room)]  # the rest are dropped (and counted) by observe
        warm = self._source_warmup_ns
        for code in new_codes.tolist():
            i = int(first[code])
            src = batch.sources[batch.source_index[i]]
            rh = batch.rhythm_hash[i]
            ti = int(t[i])
            known = self._sources.get(src.key)
            if known is None:
                if len(self._sources) >= 4 * self.config.max_profiles:
                    self._sources.pop(next(iter(self._sources)))
                known = self._sources[src.key] = (src, ti)
            bk = int(b[i])
            slot = table.add(
                rh, known[0], batch.template_id[i], batch.template[i], batch.severity[i], ti, bk
            )
            slot_of_code[code] = slot
            if rh in self._forgotten:
                del self._forgotten[rh]
            elif (src.key, batch.template_id[i]) in self._splits:
                del self._splits[(src.key, batch.template_id[i])]  # a word's new value (`split`)
            elif ti - known[1] >= warm and not self._known_template(
                src.key, batch.template_id[i], batch.severity[i]
            ):
                self._novel[slot] = [bk, 0]
        return events

    def _known_template(self, source_key: str, template_id: str, severity: str) -> bool:
        """Whether the template has (or had) a profile at another severity that is not new itself:
        a known pattern at a new severity is not a new pattern."""
        index, held = self._table.index, self._novel
        for sev in SEVERITY_RANK:
            if sev != severity:
                rh = rhythm_hash(source_key, sev, template_id)
                slot = index.get(rh)
                if (slot is not None and slot not in held) or rh in self._forgotten:
                    return True
        return False

    def split(self, splits: Iterable[TemplateSplit]) -> None:
        """Templates the miner made for a word variable's new value (`PatternStage.take_splits`):
        a known pattern, not a new one; they merge back once the word has enough values."""
        for sp in splits:
            self._splits[(sp.source_key, sp.new_id)] = None
            if len(self._splits) > _MAX_SPLITS:
                del self._splits[next(iter(self._splits))]

    def merged(self, merges: Iterable[TemplateMerge]) -> None:
        """Templates the miner merged into older ones (`PatternStage.take_merges`): a held new
        pattern that was only a split of a known one is dropped, and its rhythm hashes, if they
        come (records templated before the merge), are not new."""
        table = self._table
        for m in merges:
            for old_rh, _ in m.rhythm:
                slot = table.index.get(old_rh)
                if slot is None:
                    self.remember(old_rh, m.source_key)
                else:
                    self._novel.pop(slot, None)
            for slot in [s for s in self._novel if table.template_id[s] == m.old_id]:
                src = table.source[slot]
                if src is not None and src.key == m.source_key:
                    del self._novel[slot]

    def _sample_traces(
        self,
        tids: list[str],
        order: np.ndarray,
        starts: np.ndarray,
        cnt: np.ndarray,
        g_slot: np.ndarray,
        g_bucket: np.ndarray,
        k: int,
    ) -> None:
        """Each group's first `k` records are candidates for its bucket's sample trace ids,
        unless its slot's samples in that bucket are complete (`_OpenBucket.full`): then none
        of its records could be one, and they are not even hex-encoded."""
        take = np.minimum(cnt, k)
        if int(g_bucket.min()) == int(g_bucket.max()):
            saturated = self._open[int(g_bucket[0])].saturated(g_slot)
        else:
            saturated = np.zeros(len(g_slot), dtype=bool)
            for bk in np.unique(g_bucket).tolist():
                m = g_bucket == bk
                saturated[m] = self._open[bk].saturated(g_slot[m])
        if saturated.any():
            keep = ~saturated
            if not keep.any():
                return
            order_groups = np.flatnonzero(keep)
            starts, cnt, g_slot, g_bucket = (
                starts[order_groups], cnt[order_groups], g_slot[order_groups],
                g_bucket[order_groups],
            )  # fmt: skip
            take = take[order_groups]
        total = int(take.sum())
        ends = np.cumsum(take)
        within = np.arange(total, dtype=np.int64) - np.repeat(ends - take, take)
        rec = order[np.repeat(starts, take) + within]
        c_slot = np.repeat(g_slot, take)
        c_tid, c_hash, kept = pick_ids(tids, rec)  # (16 bytes each, or strs with their hashes)
        if int(g_bucket.min()) == int(g_bucket.max()):
            self._open[int(g_bucket[0])].add_candidates(c_slot, c_tid, k, c_hash, kept)
            return
        c_bucket = np.repeat(g_bucket, take)
        held = c_bucket if kept is None else c_bucket[kept]
        for bk in np.unique(g_bucket).tolist():
            m, mh = c_bucket == bk, held == bk
            self._open[bk].add_candidates(
                c_slot[m], c_tid[mh], k, None if c_hash is None else c_hash[mh],
                None if kept is None else kept[m],
            )  # fmt: skip

    def _count_unique(
        self,
        uids: list[str],
        order: np.ndarray,
        starts: np.ndarray,
        cnt: np.ndarray,
        g_slot: np.ndarray,
        g_bucket: np.ndarray,
    ) -> None:
        """Distinct ids of the batch into each group's bucket sketch: one vectorised update.

        Every record's id is hashed, in C (mapping ids to distinct codes first cost more than
        the hashes it saved: a Python loop over the distinct ids); all hashes are split into
        HyperLogLog registers at once, and the (slot, register, rank) triples of each bucket
        are appended in one step (`_OpenBucket.add_registers`): no Python work per group or per
        record.
        """
        # (the empty id hashes too, in C, and is then left out by `keep`: the records whose
        # hash is the empty id's are empty ids, unless another id has that hash: then they are
        # looked at one by one)
        hashed = _hash_ids(uids)
        present = hashed != EMPTY_ID_HASH
        if not present.all():
            maybe = np.flatnonzero(~present)
            if "".join(_pick(uids, maybe)):
                present[maybe] = [bool(uids[i]) for i in maybe.tolist()]
        hv, keep = hashed[order], present[order]
        group = np.repeat(np.arange(len(starts), dtype=np.int64), cnt)
        gk = group[keep]
        idx, rho = registers_of(hv[keep], self.config.cardinality.precision)
        packed = pack(g_slot[gk], idx, rho)
        per_group = np.bincount(gk, minlength=len(starts)).astype(np.float64)
        if int(g_bucket.min()) == int(g_bucket.max()):
            acc = self._open[int(g_bucket[0])]
            acc.with_id[g_slot] += per_group
            acc.add_registers(_sorted_unique(packed))
            return
        rec_bucket = g_bucket[gk]
        for bk in np.unique(g_bucket).tolist():
            acc = self._open[bk]
            m = g_bucket == bk
            np.add.at(acc.with_id, g_slot[m], per_group[m])
            acc.add_registers(_sorted_unique(packed[rec_bucket == bk]))

    # -- time --------------------------------------------------------------------------------

    def tick(self, now_ns: int, max_buckets: int | None = None) -> list[AnomalyEvent]:
        """Serve mode: the wall clock says `now_ns`; close buckets the lateness allows.

        `max_buckets` bounds the work of one call (after a long silence there can be thousands
        of buckets to close); the next calls carry on where this one stopped.
        """
        if self._next_close is None:
            return []
        target = int(now_ns) - self._lateness_ns
        if max_buckets is None:
            return self._advance(target)
        capped = min(target, (self._next_close + max_buckets) * self._bucket_ns)
        return self._advance(capped, horizon_ns=target)  # a gap is skipped whole, past the cap

    def absorbs(self, watermark_ns: int, records: int) -> bool:
        """Whether a batch observed with `watermark_ns` and the next one may be observed as one
        (`observe(parts=...)`) with the same result: the watermark between them closes no
        bucket (so nothing the second reads changes), and `records` new profiles would fit
        (no eviction for room). False before the first records (the first batch starts the
        clock)."""
        return (
            self._next_close is not None
            and len(self._table) > 0
            and (self._next_close + 1) * self._bucket_ns > watermark_ns
            and len(self._table) + records <= self.config.max_profiles
        )

    def advance(self, watermark_ns: int) -> list[AnomalyEvent]:
        """Move the watermark to `watermark_ns` (never back) and close the buckets it passes.

        For a sharded pipeline: the shards that got no records of a batch still see event time
        move. An engine that has seen nothing yet starts its clock here.
        """
        wm = int(watermark_ns)
        if self._next_close is None:
            self._next_close = wm // self._bucket_ns
            self._watermark_ns = wm
            return []
        return self._advance(wm)

    def flush(self, max_event_ns: int | None = None) -> list[AnomalyEvent]:
        """End of a replay: close every bucket up to the one holding the last event.

        That last bucket is usually cut short by the end of the input: it is closed as
        *partial* (judged for spikes, never for drops, and not learnt from), so the end of a
        file never looks like traffic falling away. A sharded pipeline passes the newest event
        time of the whole input (`max_event_ns`), so every shard ends on the same bucket.
        """
        newest = self._max_event_ns if max_event_ns is None else int(max_event_ns)
        if self._next_close is None or newest is None:
            return []
        last = newest // self._bucket_ns
        events: list[AnomalyEvent] = []
        while self._next_close <= last:
            events += self._skip_gap(last)
            events += self._close(self._next_close, partial=self._next_close == last)
        return events

    def _advance(self, watermark_ns: int, horizon_ns: int | None = None) -> list[AnomalyEvent]:
        if self._watermark_ns is None or watermark_ns > self._watermark_ns:
            self._watermark_ns = watermark_ns
        events: list[AnomalyEvent] = []
        assert self._next_close is not None
        wm = self._watermark_ns
        if len(self._table) == 0 and not self._open:
            self._next_close = max(self._next_close, wm // self._bucket_ns)
            return events
        gap_end = max(wm, horizon_ns or 0) // self._bucket_ns
        while (self._next_close + 1) * self._bucket_ns <= wm:
            events += self._skip_gap(gap_end)
            if (self._next_close + 1) * self._bucket_ns <= wm:
                events += self._close(self._next_close)
        return events

    def _skip_gap(self, end: int) -> list[AnomalyEvent]:
        """Step over a gap in event time: more than `max_gap` empty buckets from the next one to
        close up to `end` (exclusive) or the first bucket holding records, in one step.

        Such a jump means nothing was observed (a restart after downtime, a replay with hours
        missing; a silence while serving is closed bucket by bucket as the wall clock moves), so
        it is neither judged nor learnt as silence: baselines resume where they stopped. Profiles
        idle past `idle_ttl` at its end are evicted first. The cost is O(profiles), not
        O(buckets x profiles): a day's gap at 20,000 profiles was 8,640 closes.
        """
        first = self._next_close
        if first is None or self._gap_buckets <= 0:
            return []
        stop = min((b for b in self._open if b >= first), default=end)
        stop = min(stop, end)
        if stop - first <= self._gap_buckets:
            return []
        self._table.skip(first, stop)
        self._next_close = stop
        self._c["buckets_skipped"] += stop - first
        idle = self._table.idle(stop, self._ttl)
        return self._evict(idle.tolist(), "evictions_idle", stop) if len(idle) else []

    # -- closing a bucket --------------------------------------------------------------------

    def _close(self, bk: int, partial: bool = False) -> list[AnomalyEvent]:
        table = self._table
        acc = self._open.pop(bk, None)
        cap = table.capacity
        counts = np.zeros(cap)
        distinct = np.zeros(cap)
        with_id = np.zeros(cap)
        regs = np.zeros(0, dtype=np.int64)
        if acc is not None:
            counts[: len(acc.counts)] = acc.counts
            with_id[: len(acc.with_id)] = acc.with_id
            regs = acc.compacted()
            slots, est = estimate_packed(regs, self.config.cardinality.precision)
            distinct[slots] = est
        self._next_close = bk + 1
        self._c["buckets_closed"] += 1
        verdict = table.close(bk, counts, distinct, partial, with_id)
        alarms = list(verdict.alarms)
        if not partial:
            alarms += self._id_windows(bk, regs, verdict)
        if self._novel:
            alarms += self._novelty(bk, counts)
        alarms.sort(key=lambda a: (table.rhythm_hash[a.slot], _KIND_ORDER[a.kind]))
        samples: dict[int, list[str]] = {}
        if acc is not None and alarms:
            k = self.config.max_sample_trace_ids
            samples = acc.samples_of({a.slot for a in alarms}, k)
        events = self._episodes_step(bk, verdict, alarms, samples)
        idle = table.idle(bk, self._ttl)
        if len(idle):
            events += self._evict(idle.tolist(), "evictions_idle", bk)
        return events

    def _id_windows(self, bk: int, regs: np.ndarray, verdict: Verdict) -> list[Alarm]:
        """Distinct ids over windows (`via_otlp.detect.cardinality`): the bucket's registers
        merged into each profile's window of recent ids; an alarm where fresh ids add up."""
        table = self._table
        active = table.live & (table.first_bucket <= bk)
        active &= table.rate.n >= max(1, table.warmup_buckets)
        w = table.ids.close(bk, regs, active)
        calm = verdict.settled[AnomalyKind.CARDINALITY]
        calm &= w.calm
        already = {a.slot for a in verdict.alarms if a.kind is AnomalyKind.CARDINALITY}
        alarms = []
        for s in w.hit.nonzero()[0].tolist():
            if s in already:
                continue
            seen = float(table.ids.run_seen[s])
            note = describe(float(w.observed[s]), seen, float(w.share[s]))
            alarms.append(
                Alarm(s, AnomalyKind.CARDINALITY, float(w.score[s]), 0.0, float(w.expected[s]),
                      float(w.observed[s]), float(w.share[s]), 0.0, note=note)
            )  # fmt: skip
        return alarms

    def _novelty(self, bk: int, counts: np.ndarray) -> list[Alarm]:
        """Judge the held new patterns at the close of bucket `bk` (`via_otlp.detect.novelty`):
        an alarm for each template whose evidence reached the threshold after the hold (one for
        all its severities), given up after `hold_max`, held otherwise."""
        table = self._table
        groups: dict[tuple[str, str], list[int]] = {}
        for slot, held in self._novel.items():
            if held[0] <= bk:
                held[1] += int(counts[slot])
                src = table.source[slot]
                assert src is not None
                groups.setdefault((src.key, table.template_id[slot]), []).append(slot)
        due = {
            g: s for g, s in groups.items() if bk - min(self._novel[x][0] for x in s) >= self._hold
        }
        if not due:
            return []
        nv = self.config.novelty
        singles, found = self._discoveries(bk)
        tau = max(1.0, nv.discovery / self.config.bucket)
        floor = self.config.bucket / nv.incident_gap
        alarms: list[Alarm] = []
        for (key, _), slots in due.items():
            first = min(self._novel[s][0] for s in slots)
            seen = sum(self._novel[s][1] for s in slots)
            top = slots[most_severe([table.severity[s] for s in slots])]
            known = self._sources.get(key)
            born = first if known is None else known[1] // self._bucket_ns
            age = min(bk + 1 - born, self._ttl)
            more = max(0, seen - 1)
            recent = found.get(key, 0.0) / (tau * -math.expm1(-age / tau))
            m = bk - first + 1
            e = evidence(table.severity[top], singles[key], nv.prior, age, more, m, floor, recent)
            if e >= nv.threshold:
                score = SEVERITY_NOVELTY_SCORE.get(table.severity[top], 50.0)
                p = 10.0**-e
                alarms.append(Alarm(top, AnomalyKind.NOVELTY, score, p, 0.0, seen, 0.0, 0.0))
            elif bk - first < self._hold_max:
                continue
            for s in slots:
                del self._novel[s]
        return alarms

    def _discoveries(self, bk: int) -> tuple[Counter[str], dict[str, float]]:
        """Per source key, over its patterns that are not held new ones: those seen exactly once,
        and those first seen lately, weighted exp(-age / `novelty.discovery`)."""
        table, held = self._table, self._novel
        tau = max(1.0, self.config.novelty.discovery / self.config.bucket)
        w = np.exp(-np.maximum(bk - table.first_bucket, 0) / tau)
        idx = np.flatnonzero(table.live & ((table.total == 1) | (w > 1e-3))).tolist()
        singles: Counter[str] = Counter()
        found: dict[str, float] = {}
        for s in idx:
            if s in held:
                continue
            key = table.source[s].key  # type: ignore[union-attr]
            found[key] = found.get(key, 0.0) + float(w[s])
            if table.total[s] == 1:
                singles[key] += 1
        return singles, found

    def _episodes_step(
        self, bk: int, verdict: Verdict, alarms: list[Alarm], samples: dict[int, list[str]]
    ) -> list[AnomalyEvent]:
        table = self._table
        events: list[AnomalyEvent] = []
        hot: set[tuple[str, AnomalyKind]] = set()
        k = self.config.max_sample_trace_ids
        for a in alarms:
            rh = table.rhythm_hash[a.slot]
            if a.kind is AnomalyKind.DRIFT:
                masking = AnomalyKind.SPIKE if a.direction > 0 else AnomalyKind.DROP
                if (rh, masking) in self._episodes:
                    continue  # the spike/drop episode already tells this story
            key = (rh, a.kind)
            hot.add(key)
            ep = self._episodes.get(key)
            new_samples = samples.get(a.slot, [])
            if ep is None:
                score = (
                    a.score
                    if a.kind is AnomalyKind.NOVELTY
                    else boosted(a.score, table.severity[a.slot])
                )
                ep = Episode(
                    episode_id(rh, a.kind, bk), rh, a.kind, bk, bk, 0, score, a.expected, a.observed,
                    a.baseline_mean, a.baseline_std, self._explain(a), list(new_samples[:k]), score,
                )  # fmt: skip
                self._episodes[key] = ep
                self._c["episodes_opened"] += 1
                events.append(self._event(ep, EpisodeState.OPEN, bk))
            else:
                ep.last_hot_bucket = bk
                ep.calm_buckets = 0
                score = boosted(a.score, table.severity[a.slot])
                if score > ep.score:
                    ep.score = score
                    ep.expected, ep.observed = a.expected, a.observed
                    reported = ep.reported if ep.reported >= 0 else ep.open_score
                    if rose_a_band(score, reported):
                        ep.reported = score
                        events.append(self._event(ep, EpisodeState.UPDATED, bk))
                for tid in new_samples:
                    if len(ep.sample_trace_ids) >= k:
                        break
                    if tid not in ep.sample_trace_ids:
                        ep.sample_trace_ids.append(tid)
        for key, ep in list(self._episodes.items()):
            if key in hot:
                continue
            slot = table.index.get(ep.rhythm_hash)
            if slot is None:
                continue
            if bool(verdict.settled[ep.kind][slot]):
                ep.calm_buckets += 1
                if ep.calm_buckets >= self._cooldown:
                    events.append(self._resolve(key, bk, "back to baseline"))
            else:
                ep.calm_buckets = 0
        return events

    def _evict(self, slots: list[int], counter: str, bk: int) -> list[AnomalyEvent]:
        table = self._table
        events: list[AnomalyEvent] = []
        keep = self.config.novelty.remember
        for s in slots:
            rh = table.rhythm_hash[s]
            for kind in AnomalyKind:
                if (rh, kind) in self._episodes:
                    events.append(
                        self._resolve((rh, kind), bk, "pattern no longer tracked (idle or evicted)")
                    )
            self._novel.pop(s, None)
            if keep:
                src = table.source[s]
                self._forgotten[rh] = src.key if src is not None else ""
                if len(self._forgotten) > keep:
                    del self._forgotten[next(iter(self._forgotten))]
            table.remove(s)
            self._c[counter] += 1
        if slots:
            gone = np.array(slots, dtype=np.int64)
            for acc in self._open.values():
                acc.forget(gone)
        return events

    def _resolve(self, key: tuple[str, AnomalyKind], bk: int, why: str) -> AnomalyEvent:
        ep = self._episodes.pop(key)
        self._c["episodes_resolved"] += 1
        dur = (bk - ep.start_bucket + 1) * self.config.bucket
        ep.explanation = (
            f"{ep.explanation.split(' — ')[0]} — resolved: {why} after {number_text(dur)}s"
        )
        # A resolution is never more severe than the opening (no alert on recovery).
        ep.score = ep.open_score if ep.open_score >= 0 else ep.score
        return self._event(ep, EpisodeState.RESOLVED, bk)

    def _event(self, ep: Episode, state: EpisodeState, bk: int) -> AnomalyEvent:
        table = self._table
        slot = table.index[ep.rhythm_hash]
        src = table.source[slot]
        assert src is not None
        bns = self._bucket_ns
        return AnomalyEvent(
            episode_id=ep.episode_id,
            kind=ep.kind,
            state=state,
            time_ns=(bk + 1) * bns,
            started_ns=ep.start_bucket * bns,
            ended_ns=(ep.last_hot_bucket + 1) * bns if state is EpisodeState.RESOLVED else 0,
            score=round(ep.score, 3),
            source=src,
            rhythm_hash=ep.rhythm_hash,
            template_id=table.template_id[slot],
            template=table.template[slot],
            severity=table.severity[slot],
            expected=ep.expected,
            observed=ep.observed,
            baseline_mean=ep.baseline_mean,
            baseline_std=ep.baseline_std,
            bucket_seconds=self.config.bucket,
            explanation=ep.explanation,
            sample_trace_ids=tuple(ep.sample_trace_ids),
        )

    def _explain(self, a: Alarm) -> str:
        table = self._table
        src = table.source[a.slot]
        assert src is not None
        bs = self.config.bucket
        who = f"{src.service_name}: '{table.template[a.slot]}'"
        usual = f"usually {number_text(a.baseline_mean * 60 / bs)}±{number_text(a.baseline_std * 60 / bs)}/min"
        if a.note:
            return f"{who} {a.note}"
        if a.kind is AnomalyKind.NOVELTY:
            return f"{src.service_name}: new {table.severity[a.slot]} pattern '{table.template[a.slot]}' ({number_text(a.observed)} so far)"
        if a.kind is AnomalyKind.SPIKE:
            return f"{who} {rate_text(a.observed, bs)}, {usual}"
        if a.kind is AnomalyKind.DROP:
            if a.observed == 0:
                return f"{who} went silent, {usual}"
            return f"{who} {rate_text(a.observed, bs)}, {usual}"
        if a.kind is AnomalyKind.DRIFT:
            way = "up" if a.direction > 0 else "down"
            return f"{who} sustained shift {way}: {rate_text(a.observed, bs)} now, {usual}"
        return (
            f"{who} {number_text(a.observed)} distinct ids in {number_text(bs)}s, "
            f"about {number_text(a.expected)} expected (usually {number_text(a.baseline_mean)})"
        )

    # -- read side ---------------------------------------------------------------------------

    @property
    def watermark_ns(self) -> int | None:
        """Event time up to which buckets may close (None before the first record)."""
        return self._watermark_ns

    def stats(self) -> EngineStats:
        c = self._c
        table = self._table
        live = table.live
        learning = int(np.count_nonzero(live & (table.rate.n < max(1, table.warmup_buckets))))
        return EngineStats(
            profiles=len(table),
            profiles_learning=learning,
            evictions_idle=c["evictions_idle"],
            evictions_capacity=c["evictions_capacity"],
            records=c["records"],
            late_records=c["late_records"],
            dropped_records=c["dropped_records"],
            batches=c["batches"],
            buckets_closed=c["buckets_closed"],
            buckets_skipped=c["buckets_skipped"],
            open_buckets=len(self._open),
            open_episodes=len(self._episodes),
            episodes_opened=c["episodes_opened"],
            episodes_resolved=c["episodes_resolved"],
            watermark_ns=self._watermark_ns or 0,
            max_event_ns=self._max_event_ns or 0,
        )

    def profiles(self) -> Iterator[ProfileSummary]:
        """Summaries of every profile, in rhythm hash order."""
        table = self._table
        for rh in sorted(table.index):
            yield table.summary(table.index[rh])

    def rhythm_string(self, rhythm_hash: str) -> str:
        """The engine's own string for `rhythm_hash` when it has a profile for it, else
        `rhythm_hash`: a caller that keeps the hash (the patterns stage) shares it instead of
        holding a second copy per profile (~65 B each after a restart)."""
        table = self._table
        slot = table.index.get(rhythm_hash)
        return rhythm_hash if slot is None else table.rhythm_hash[slot]

    def profile(self, rhythm_hash: str) -> ProfileSummary | None:
        """The summary of one profile, or None if it is not tracked."""
        slot = self._table.index.get(rhythm_hash)
        return None if slot is None else self._table.summary(slot)

    def recent_buckets(self, rhythm_hash: str) -> list[RecentBucket] | None:
        """One profile's most recent closed buckets, oldest first (at most `RECENT`, none before
        the profile was made or the engine was restored from a snapshot without them); None if
        the profile is not tracked."""
        slot = self._table.index.get(rhythm_hash)
        return None if slot is None else self._table.recent(slot)

    # -- state -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Versioned state as a tree (JSON values and 1-d numpy arrays, see `codec`); restore
        it into an Engine with the same config."""
        k = self.config.max_sample_trace_ids
        return {
            "version": self.VERSION,
            "bucket_ns": self._bucket_ns,
            "table": self._table.snapshot(),
            "open": [acc.to_tree(bk, None, k) for bk, acc in sorted(self._open.items())],
            "next_close": self._next_close,
            "max_event_ns": self._max_event_ns,
            "watermark_ns": self._watermark_ns,
            "episodes": [ep.to_json() for ep in self._episodes.values()],
            "sources": [
                [key, [list(a) for a in src.attributes], t]
                for key, (src, t) in self._sources.items()
            ],
            "forgotten": [list(x) for x in self._forgotten.items()],
            "novel": [[self._table.rhythm_hash[s], *h] for s, h in self._novel.items()],
            "counters": dict(self._c),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace all state with a `snapshot` (raises ValueError if it cannot be used); an
        older format is upgraded first (`upgrade`)."""
        state = upgrade_engine(state)
        check_version(state, self.VERSION, "Engine")
        if state["bucket_ns"] != self._bucket_ns:
            raise ValueError(
                f"Engine snapshot: bucket is {state['bucket_ns']}ns, config says {self._bucket_ns}ns"
            )
        self._init_state()
        self._table.restore(state["table"])
        ident = np.arange(self._table.capacity, dtype=np.int64)
        for ob in state["open"]:
            self._bucket(int(ob["bucket"])).add_tree(ob, ident)
        self._next_close = state["next_close"]
        self._max_event_ns = state["max_event_ns"]
        self._watermark_ns = state["watermark_ns"]
        self._add_episodes(state["episodes"])
        self._add_sources(state["sources"])
        self._forgotten = {rh: key for rh, key in state["forgotten"]}
        index = self._table.index
        self._novel = {index[row[0]]: _held(row) for row in state["novel"]}
        self._c.update(state["counters"])

    def _add_episodes(self, rows: list[Any]) -> None:
        for v in rows:
            ep = Episode.from_json(v)
            self._episodes[(ep.rhythm_hash, ep.kind)] = ep

    def _add_sources(self, rows: list[Any]) -> None:
        by_key = {s.key: s for s in self._table.source if s is not None}
        for key, attrs, t in rows:
            src = by_key.get(key) or Source(key, tuple((a, b) for a, b in attrs))
            self._sources[key] = (src, int(t))

    # -- after a crash: what the registry knows and the restored state does not ----------------

    def open_episodes(self) -> list[tuple[str, str, AnomalyKind]]:
        """(episode id, rhythm hash, kind) of every open episode."""
        return [(ep.episode_id, rh, kind) for (rh, kind), ep in self._episodes.items()]

    def adopt_episode(self, event: AnomalyEvent) -> bool:
        """Carry on an episode that was open when the process stopped but began after the
        snapshot it restored (`event`: its latest stored event). It keeps its id, start and
        score, so it is not opened twice, and resolves like any other. True if adopted: its
        rhythm hash has a profile here and no episode of its kind is open on it."""
        key = (event.rhythm_hash, event.kind)
        if key in self._episodes or event.rhythm_hash not in self._table.index:
            return False
        start = event.started_ns // self._bucket_ns
        last_hot = max(start, event.time_ns // self._bucket_ns - 1)
        k = self.config.max_sample_trace_ids
        self._episodes[key] = Episode(
            event.episode_id, event.rhythm_hash, event.kind, start, last_hot, 0, event.score,
            event.expected, event.observed, event.baseline_mean, event.baseline_std,
            event.explanation.split(" — ")[0], list(event.sample_trace_ids[:k]),
        )  # fmt: skip
        return True

    def discard_episodes(self, episode_ids: Collection[str]) -> int:
        """Drop open episodes without an event: they resolved before the process stopped (the
        registry has the resolution) and the restored snapshot predates it."""
        ids = set(episode_ids)
        gone = [key for key, ep in self._episodes.items() if ep.episode_id in ids]
        for key in gone:
            del self._episodes[key]
        return len(gone)

    def remember(self, rhythm_hash: str, source_key: str) -> bool:
        """A rhythm hash without a profile here that was seen before (its profile was learnt
        after the snapshot this engine restored): when it comes again it is not novel.
        True if it was not known either way."""
        if rhythm_hash in self._table.index or rhythm_hash in self._forgotten:
            return False
        self._forgotten[rhythm_hash] = source_key
        keep = self.config.novelty.remember
        if keep and len(self._forgotten) > keep:
            del self._forgotten[next(iter(self._forgotten))]
        return True

    # -- handing sources over ----------------------------------------------------------------

    def export_sources(self, keys: Collection[str]) -> dict[str, Any]:
        """Everything learned about the sources `keys` as a tree, for `import_sources` elsewhere.

        Profiles, open episodes, the bucket data not closed yet, first-seen times and the
        remembered (evicted) rhythm hashes of those sources: what another instance needs to
        carry on without a new warm-up or a storm of novelty. Nothing is removed here.
        """
        want = set(keys)
        table = self._table
        slots = sorted(s for s in table.index.values() if table.source[s].key in want)  # type: ignore[union-attr]
        rhs = {table.rhythm_hash[s] for s in slots}
        idx = np.array(slots, dtype=np.int64)
        k = self.config.max_sample_trace_ids
        return {
            "version": self.VERSION,
            "bucket_ns": self._bucket_ns,
            "table": table.take(slots),
            "open": [acc.to_tree(bk, idx, k) for bk, acc in sorted(self._open.items())],
            "episodes": [ep.to_json() for (rh, _), ep in self._episodes.items() if rh in rhs],
            "sources": [
                [key, [list(a) for a in src.attributes], t]
                for key, (src, t) in self._sources.items()
                if key in want
            ],
            "forgotten": [[rh, key] for rh, key in self._forgotten.items() if key in want],
            "novel": [
                [table.rhythm_hash[s], *h] for s, h in self._novel.items() if s in set(slots)
            ],
        }

    def import_sources(self, tree: dict[str, Any]) -> None:
        """Add the sources of an `export_sources` tree, replacing what this engine had of them.

        Their profiles, episodes and open bucket data join this engine's; bucket data of a
        bucket this engine already closed is folded into its oldest open bucket (late).
        """
        check_version(tree, self.VERSION, "Engine export")
        if tree["bucket_ns"] != self._bucket_ns:
            raise ValueError(
                f"Engine export: bucket is {tree['bucket_ns']}ns, config says {self._bucket_ns}ns"
            )
        keys = {row[0] for row in tree["sources"]} | {
            key for key, _ in tree["table"]["profiles"]["sources"]
        }
        table = self._table
        mine = [s for s in table.index.values() if table.source[s].key in keys]  # type: ignore[union-attr]
        for s in mine:
            rh = table.rhythm_hash[s]
            for kind in AnomalyKind:
                self._episodes.pop((rh, kind), None)
            self._novel.pop(s, None)
            table.remove(s)
        if mine:
            gone = np.array(mine, dtype=np.int64)
            for acc in self._open.values():
                acc.forget(gone)
        for key in keys:
            self._sources.pop(key, None)
        self._forgotten = {rh: key for rh, key in self._forgotten.items() if key not in keys}
        slots = table.put(tree["table"])
        slot_of = np.array(slots, dtype=np.int64)
        for ob in tree["open"]:
            bk = int(ob["bucket"])
            if self._next_close is not None:
                bk = max(bk, self._next_close)
            self._bucket(bk).add_tree(ob, slot_of)
        self._add_episodes(tree["episodes"])
        self._add_sources(tree["sources"])
        for rh, key in tree["forgotten"]:
            self._forgotten[rh] = key
        index = table.index
        self._novel.update({index[row[0]]: _held(row) for row in tree["novel"]})
