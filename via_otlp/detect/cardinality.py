"""Distinct ids over windows: a pattern whose few records a bucket start naming ids it never names.

With one or two records per bucket, the distinct ids of a bucket equal its count, whatever the
population behind them; the difference between "the same 20 clients" and "a new client every
time" shows only across buckets. So each profile keeps a small window of the ids it named
lately, as HyperLogLog register fingerprints (register and rank, 16 bits: the sketch's own
registers, a sparse sketch) each with the bucket it was last seen in: the union of the sketches
of the last `id_window` (up to `id_slots` ids, the least recently seen making room). A
bucket's registers merged into the window tell which of its ids are *fresh* (absent from the
window). A profile learns the share of its ids that are fresh (the distinct / count of its
windows: small for a small pool, near 1 for an open population), and where that share is at
most a half (a pool, not an open population) a Bernoulli CUSUM per id weighs fresh ids
against it: ``ln(q1/p0)`` for each fresh id and ``ln((1-q1)/(1-p0))``
for each known one, with ``q1`` halfway between ``p0`` and 1. A warning that hits the same 20
clients all day and then a new one with every record adds up within a few records, at any
volume; more records from the same clients (a volume rise) are known ids and pull it down.

The state is `id_slots` × 4 bytes (fingerprint, last bucket modulo 2^16) and five float32 per
profile, all slot columns of the profile table (so snapshots, `take`/`put` and handoff carry
them). Ages stay below 2^16 buckets: every `_SWEEP` buckets entries older than the window are
cleared. A profile whose bucket holds more than half `id_slots` distinct ids is not followed in
that bucket: it has the volume for the per-bucket tests.

>>> fingerprints(np.array([(3 << 24) | (5 << 8) | 2]))
array([322], dtype=uint16)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.ewma import decay_of

_SWEEP = 1024  # buckets between sweeps of expired entries (ages must stay below 2**16)
_P0_MIN, _P0_MAX = 0.02, 0.5  # the fresh share the CUSUM uses (clipped), judged up to
_COLS = ("fresh", "seen", "cusum", "run_fresh", "run_seen")


def fingerprints(packed: np.ndarray) -> np.ndarray:
    """16-bit fingerprints ``(register mod 1024) << 6 | min(rank, 63)`` of packed triples
    (never 0: a rank is at least 1)."""
    reg = (packed >> 8) & 0x3FF
    rank = np.minimum(packed & 0xFF, 63)
    return ((reg << 6) | rank).astype(np.uint16)


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    """Per slot, from closing one bucket: the alarms and their numbers, and which are calm."""

    hit: np.ndarray  # bool
    score: np.ndarray  # 50 at the threshold, rising with the CUSUM
    observed: np.ndarray  # fresh ids over the excursion
    expected: np.ndarray  # fresh ids the learned share expects over it
    share: np.ndarray  # the learned fresh share
    calm: np.ndarray  # bool: the CUSUM below half its threshold


class IdWindow:
    """The ids each profile named lately, and its learned share of fresh ones (slot columns)."""

    def __init__(self, config: DetectConfig, capacity: int = 0) -> None:
        cc = config.cardinality
        self.k = cc.id_slots
        self.window = min(config.buckets(cc.id_window), (1 << 16) - 2 * _SWEEP)
        self.threshold = cc.window_threshold
        self.min_ids = cc.window_min_ids
        self.decay = 1.0 - decay_of(config.dispersion_half_life / config.bucket)
        self.anomaly_weight = config.anomaly_update_weight
        self.fp = np.zeros((0, self.k), dtype=np.uint16)
        self.last = np.zeros((0, self.k), dtype=np.uint16)
        self.fresh = np.zeros(0, dtype=np.float32)  # decayed fresh ids seen
        self.seen = np.zeros(0, dtype=np.float32)  # decayed ids seen (per bucket, distinct)
        self.cusum = np.zeros(0, dtype=np.float32)
        self.run_fresh = np.zeros(0, dtype=np.float32)
        self.run_seen = np.zeros(0, dtype=np.float32)
        self.grow(capacity)

    def grow(self, capacity: int) -> None:
        pad = capacity - len(self.fresh)
        if pad <= 0:
            return
        self.fp = np.concatenate([self.fp, np.zeros((pad, self.k), dtype=np.uint16)])
        self.last = np.concatenate([self.last, np.zeros((pad, self.k), dtype=np.uint16)])
        for name in _COLS:
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(pad, np.float32)]))

    def clear(self, slot: int) -> None:
        """Forget a profile (its slot is reused)."""
        self.fp[slot] = 0
        self.last[slot] = 0
        for name in _COLS:
            getattr(self, name)[slot] = 0.0

    def slot_arrays(self, prefix: str) -> dict[str, tuple[np.ndarray, int]]:
        """Every column by name (``prefix`` + attribute), slot axis 0."""
        out = {f"{prefix}{n}": (getattr(self, n), 0) for n in _COLS}
        out[f"{prefix}fp"], out[f"{prefix}last"] = (self.fp, 0), (self.last, 0)
        return out

    @property
    def nbytes_per_slot(self) -> int:
        return self.k * 4 + 4 * len(_COLS)

    def close(self, bucket: int, packed: np.ndarray, active: np.ndarray) -> WindowVerdict:
        """Merge bucket `bucket`'s registers (compacted packed triples of every profile) into the
        windows, judge the `active` profiles' fresh ids, and learn the share of fresh ones."""
        cap = len(self.fresh)
        now = np.uint16(bucket & 0xFFFF)
        if bucket % _SWEEP == 0:
            self._sweep(now)
        slot = (packed >> 24).astype(np.int64)
        per_slot = np.bincount(slot, minlength=cap)
        if len(slot) and per_slot.max() > self.k // 2:
            keep = per_slot[slot] <= self.k // 2
            slot, fp = slot[keep], fingerprints(packed[keep])
            n_ids = np.where(per_slot <= self.k // 2, per_slot, 0).astype(np.float64)
        else:  # (every profile followed, as in most closes: four numpy calls fewer)
            fp = fingerprints(packed)
            n_ids = per_slot.astype(np.float64)
        fresh = np.zeros(cap)
        if len(slot):
            fresh = np.bincount(slot[self._merge(slot, fp, now)], minlength=cap).astype(np.float64)
        return self._judge(n_ids, fresh, active)

    def _merge(self, slot: np.ndarray, fp: np.ndarray, now: np.uint16) -> np.ndarray:
        """Refresh the ids the windows hold and add the others (in the least recently seen
        places); returns which of the given ids were fresh. `slot` is sorted."""
        rows = self.fp[slot]
        age = (now - self.last[slot]).astype(np.int64)
        held = (rows != 0) & (age < self.window)
        match = held & (rows == fp[:, None])
        found = match.any(axis=1)
        col = match.argmax(axis=1)
        self.last[slot[found], col[found]] = now
        new = (~found).nonzero()[0]
        if len(new):
            s = slot[new]
            # Each fresh id takes its slot's j-th least recently seen place (j: its order among
            # the slot's fresh ids); places just refreshed are the most recent.
            age = (now - self.last[s]).astype(np.int64)
            age = np.where(self.fp[s] == 0, 1 << 17, age)
            order = np.argsort(-age, axis=1, kind="stable")
            first = np.concatenate(([True], s[1:] != s[:-1]))
            start = np.maximum.accumulate(np.where(first, np.arange(len(s)), 0))
            j = np.arange(len(s)) - start
            place = order[np.arange(len(s)), j]
            self.fp[s, place] = fp[new]
            self.last[s, place] = now
        return ~found

    def _judge(self, n_ids: np.ndarray, fresh: np.ndarray, active: np.ndarray) -> WindowVerdict:
        """The Bernoulli CUSUM of fresh ids against the learned share, then learning it."""
        share = (self.fresh.astype(np.float64) + 1.0) / (self.seen.astype(np.float64) + 2.0)
        p0 = share.clip(_P0_MIN, _P0_MAX)
        q1 = 0.5 * (1.0 + p0)
        step = fresh * np.log(q1 / p0) + (n_ids - fresh) * np.log((1.0 - q1) / (1.0 - p0))
        # Where nearly every id is fresh anyway (an open population) there is nothing to find,
        # and a share clipped below the true one would make the CUSUM climb.
        judged = active & (self.seen >= self.min_ids) & (n_ids > 0) & (share <= _P0_MAX)
        cum = np.where(judged, np.maximum(0.0, self.cusum + step), self.cusum)
        cum = np.where(active, cum, 0.0)
        going = cum > 0
        self.run_fresh = np.where(going, self.run_fresh + np.where(judged, fresh, 0.0), 0.0).astype(
            np.float32
        )
        self.run_seen = np.where(going, self.run_seen + np.where(judged, n_ids, 0.0), 0.0).astype(
            np.float32
        )
        self.cusum = cum.astype(np.float32)
        hit = judged & (cum >= self.threshold)
        # Learn the share of fresh ids, an excursion only a little.
        w = np.where(going, self.anomaly_weight, 1.0)
        decay = np.where(n_ids > 0, self.decay, 1.0)
        self.fresh = (self.fresh * decay + w * fresh).astype(np.float32)
        self.seen = (self.seen * decay + w * n_ids).astype(np.float32)
        score = np.minimum(100.0, 50.0 * cum / max(self.threshold, 1e-9))
        expected = share * self.run_seen
        return WindowVerdict(
            hit,
            score,
            self.run_fresh.astype(np.float64),
            expected,
            share,
            cum < 0.5 * self.threshold,
        )

    def _sweep(self, now: np.uint16) -> None:
        """Clear entries older than the window, so that no age reaches 2^16 buckets."""
        old = (now - self.last).astype(np.int64) >= self.window
        self.fp[old] = 0
        self.last[old] = 0


def describe(observed: float, seen: float, share: float) -> str:
    """The explanation's tail: fresh ids among the ids of the excursion, against the usual."""
    return f"{observed:.0f} of its last {seen:.0f} ids not seen lately (usually {share:.0%})"
