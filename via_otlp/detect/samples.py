"""Sample trace ids of one open bucket: per profile slot, its first few distinct ids, as columns.

An anomaly event carries a few trace ids of the records that made it: per slot, the first `k`
distinct non-empty ids among its candidates, in the order they came. Candidates come by the
thousand per batch (the first records of every group), so they are taken with a few sorts per
batch, not with Python work per candidate: a Python loop over them was half the engine's time
at 20,000 profiles. Ids are compared by their XXH64 (`hash_ids`, in C, which the engine takes
with the candidates) mixed with the slot; every match is then
checked for equal ids, and should two different ids ever meet on one key, that batch is taken
by the loop itself (`TraceSamples._take_exact`), so the samples are exactly the loop's.

>>> ts = TraceSamples()
>>> ids = np.array(["a", "b", "a", "c", "", "d"], dtype=object)
>>> ts.see(np.array([0, 0, 0, 1, 2, 1]))
>>> ts.take(np.array([0, 0, 0, 1, 2, 1]), ids, 2).tolist()   # the slots of the samples taken
[0, 0, 1, 1]
>>> ts.take(np.array([0, 1]), np.array(["z", "e"], dtype=object), 2).tolist()
[]
>>> ts.by_slot(None)
{0: ['a', 'b'], 1: ['c', 'd'], 2: []}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xxhash

_xxh64_utf8: Callable[[Sequence[str]], bytes] | None
try:  # XXH64 of every id in one call (built with the compiled walker; setup.py, optional)
    from via_otlp.receive._wirewalk import xxh64_utf8 as _xxh64_utf8
except ImportError:  # pragma: no cover - not built, or a stale build without it
    _xxh64_utf8 = None

EMPTY_ID_HASH = np.uint64(xxhash.xxh64_intdigest(b""))
_EMPTY_KEY = int(EMPTY_ID_HASH.astype(np.int64))  # (as the int64 `take` compares)


def hash_ids(ids: Sequence[str], errors: str = "surrogatepass") -> np.ndarray:
    """``xxh64_intdigest(id.encode("utf-8", errors))`` of every id, as uint64 (in C where it is
    built: there an id without UTF-8, a lone surrogate, takes the loop, unless `errors` is
    "strict": then it raises).

    >>> h = hash_ids(["ab", "", "\\ud800"])
    >>> h[:2].tolist() == [xxhash.xxh64_intdigest(b"ab"), int(EMPTY_ID_HASH)]
    True
    >>> int(h[2]) == xxhash.xxh64_intdigest("\\ud800".encode("utf-8", "surrogatepass"))
    True
    """
    if _xxh64_utf8 is not None:
        try:
            return np.frombuffer(_xxh64_utf8(ids), dtype=np.uint64)
        except UnicodeEncodeError:
            if errors == "strict":
                raise
    return np.fromiter(
        (xxhash.xxh64_intdigest(i.encode("utf-8", errors)) for i in ids), np.uint64, len(ids)
    )


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: slot -> slot·_MIX is one-to-one modulo 2^64


def _keys(hashes: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """One int64 per (slot, id hash): equal pairs give equal keys (unequal ones almost never)."""
    mixed = hashes.view(np.uint64) ^ (slots.astype(np.uint64) * _MIX)
    return mixed.view(np.int64)


def _rank_in_group(g: np.ndarray) -> np.ndarray:
    """Per element of `g`, how many elements before it have the same value.

    >>> _rank_in_group(np.array([3, 1, 3, 3, 1])).tolist()
    [0, 0, 1, 2, 1]
    """
    by = np.argsort(g, kind="stable")
    gb = g[by]
    i = np.arange(len(g))
    lead = np.concatenate(([True], gb[1:] != gb[:-1]))
    rank = np.empty(len(g), dtype=np.int64)
    rank[by] = i - np.maximum.accumulate(np.where(lead, i, 0))
    return rank


class TraceSamples:
    """The samples of one bucket: (slot, id) columns in the order taken, and per slot whether a
    group of it was seen (its entry exists, ids or not) and how many samples it holds."""

    __slots__ = ("_key", "_skey", "_slot", "_spos", "_tid", "count", "n", "seen")

    def __init__(self) -> None:
        # Chunks of the samples in the order taken (one per `take`, joined when read).
        self._slot: list[np.ndarray] = []
        self._tid: list[np.ndarray] = []
        self._key: list[np.ndarray] = []
        self.n = 0
        self.seen = np.zeros(0, dtype=bool)
        self.count = np.zeros(0, dtype=np.int64)
        # Every sample's key, sorted, and its place in taking order: what a candidate repeats.
        self._skey = np.zeros(0, dtype=np.int64)
        self._spos = np.zeros(0, dtype=np.int64)

    def _room(self, top: int) -> None:
        if len(self.seen) < top:
            pad = top - len(self.seen)
            self.seen = np.concatenate([self.seen, np.zeros(pad, dtype=bool)])
            self.count = np.concatenate([self.count, np.zeros(pad, dtype=np.int64)])

    def see(self, slots: np.ndarray) -> None:
        """Groups of `slots` were seen: each has an entry from now on, ids or not."""
        if len(slots):
            self._room(int(slots.max()) + 1)
            self.seen[slots] = True

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slot, id and key of every sample in the order taken (the chunks joined into one)."""
        if len(self._slot) != 1:
            self._slot = [np.concatenate(self._slot or [np.zeros(0, dtype=np.int64)])]
            self._tid = [np.concatenate(self._tid or [np.zeros(0, dtype=object)])]
            self._key = [np.concatenate(self._key or [np.zeros(0, dtype=np.int64)])]
        return self._slot[0], self._tid[0], self._key[0]

    def take(
        self, ps: np.ndarray, pt: np.ndarray, cap: int, ph: np.ndarray | None = None
    ) -> np.ndarray:
        """Take each candidate (slot `ps`, id `pt`, in order) whose id is not empty and which its
        slot does not hold yet, while the slot holds fewer than `cap`: the loop
        ``if tid and len(have) < cap and tid not in have: have.append(tid)``, in a few sorts.
        `ph`: the ids' `hash_ids` as int64, if the caller has them. Returns the slots of the
        samples taken (one per sample)."""
        n = len(ps)
        if n == 0:
            return ps
        self._room(int(ps.max()) + 1)
        if ph is None:
            ph = hash_ids(pt.tolist()).view(np.int64)
        zero = ph == _EMPTY_KEY  # the empty id's hash (and, rarely, another id's: compared)
        if zero.any():
            empty = zero.copy()
            empty[zero] = pt[zero] == ""
            if empty.any():
                ps, pt, ph = ps[~empty], pt[~empty], ph[~empty]
                n = len(ps)
                if n == 0:
                    return ps
        key = _keys(ph, ps)
        # The distinct candidates (every repeat of a key checked to be the same slot and id),
        # in key order, each with its first position.
        o = np.argsort(key)
        sk = key[o]
        starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        if len(starts) < n:
            rep = np.repeat(o[starts], np.diff(np.append(starts, n)))
            if not (np.array_equal(ps[o], ps[rep]) and bool(np.all(pt[o] == pt[rep]))):
                return self._take_exact(ps, pt, key, cap)
            firstpos = np.minimum.reduceat(o, starts)
        else:
            firstpos = o
        uk = sk[starts]
        # Not one its slot holds already (every key match checked to be the same slot and id).
        if self.n:
            at = np.minimum(np.searchsorted(self._skey, uk), len(self._skey) - 1)
            hit = self._skey[at] == uk
            if hit.any():
                slot_all, tid_all, _ = self._flat()
                pos, f = self._spos[at[hit]], firstpos[hit]
                if not (
                    np.array_equal(slot_all[pos], ps[f]) and bool(np.all(tid_all[pos] == pt[f]))
                ):
                    return self._take_exact(ps, pt, key, cap)
                uk, firstpos = uk[~hit], firstpos[~hit]
        if not len(uk):
            return ps[:0]
        # In the order they came: each slot's i-th new id is taken while it holds < cap - i.
        # (`firstpos` are distinct positions below n: put in order by a mask, not a sort;
        # `where`: each one's place in that order)
        at_pos = np.zeros(n, dtype=bool)
        at_pos[firstpos] = True
        first = np.flatnonzero(at_pos)
        where = np.cumsum(at_pos)[firstpos] - 1
        fs = ps[first]
        ok = self.count[fs] + _rank_in_group(fs) < cap
        keep = first[ok]
        # The taken ones' keys stay in key order, with their place among the taken.
        taken = ok[where]
        place = (np.cumsum(ok) - 1)[where[taken]]
        self._append(ps[keep], pt[keep], key[keep], uk[taken], place)
        return ps[keep]

    def _take_exact(self, ps: np.ndarray, pt: np.ndarray, key: np.ndarray, cap: int) -> np.ndarray:
        """`take` by the loop itself, ids compared as they are: when two ids met on one key
        (`ps`, `pt` without empty ids)."""
        slot_all, tid_all, _ = self._flat()
        have: dict[int, list[str]] = {}
        for s, t in zip(slot_all.tolist(), tid_all.tolist(), strict=True):
            have.setdefault(s, []).append(t)
        keep = []
        for i, (s, t) in enumerate(zip(ps.tolist(), pt.tolist(), strict=True)):
            h = have.setdefault(s, [])
            if len(h) < cap and t not in h:
                h.append(t)
                keep.append(i)
        idx = np.array(keep, dtype=np.int64)
        o = np.argsort(key[idx])
        self._append(ps[idx], pt[idx], key[idx], key[idx][o], o)
        return ps[idx]

    def _append(
        self, slots: np.ndarray, tids: np.ndarray, keys: np.ndarray, ks: np.ndarray, at_: np.ndarray
    ) -> None:
        """Append samples in order; `ks` their keys sorted, `at_` each sorted key's place."""
        m = len(slots)
        if m == 0:
            return
        self._slot.append(slots)
        self._tid.append(tids)
        self._key.append(keys)
        # `np.insert` of both at once: each new key goes before the first larger one, the
        # new ones in their order (`ks` is sorted), the old ones to the places left.
        dest = np.searchsorted(self._skey, ks) + np.arange(m)
        old = np.ones(len(self._skey) + m, dtype=bool)
        old[dest] = False
        skey = np.empty(len(old), dtype=np.int64)
        skey[dest], skey[old] = ks, self._skey
        spos = np.empty(len(old), dtype=np.int64)
        spos[dest], spos[old] = self.n + at_, self._spos
        self._skey, self._spos = skey, spos
        self.n += m
        self.count += np.bincount(slots, minlength=len(self.count))

    def by_slot(self, want: np.ndarray | None) -> dict[int, list[str]]:
        """The samples of every seen slot (of those where the mask `want` is set), slot order."""
        seen = self.seen if want is None else self.seen & want[: len(self.seen)]
        out: dict[int, list[str]] = {s: [] for s in np.flatnonzero(seen).tolist()}
        if self.n:
            slot_all, tid_all, _ = self._flat()
            sel = seen[slot_all]
            slots, tids = slot_all[sel], tid_all[sel]
            o = np.argsort(slots, kind="stable")
            for s, t in zip(slots[o].tolist(), tids[o].tolist(), strict=True):
                out[s].append(t)
        return out

    def forget(self, slots: np.ndarray) -> None:
        """Drop the samples and entries of `slots` (evicted: their slots may be reused)."""
        inside = slots[slots < len(self.seen)]
        self.seen[inside] = False
        self.count[inside] = 0
        if not self.n:
            return
        slot_all, tid_all, key_all = self._flat()
        m = ~np.isin(slot_all, slots)
        if m.all():
            return
        self._slot, self._tid, self._key = [slot_all[m]], [tid_all[m]], [key_all[m]]
        self.n = int(np.count_nonzero(m))
        o = np.argsort(self._key[0])
        self._skey, self._spos = self._key[0][o], o.astype(np.int64)
