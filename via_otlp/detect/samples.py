"""Sample trace ids of one open bucket: per profile slot, its first few distinct ids, as columns.

An anomaly event carries a few trace ids of the records that made it: per slot, the first `k`
distinct non-empty ids among its candidates, in the order they came. Candidates come by the
thousand per batch (the first records of every group), so they are taken with a few sorts per
batch, not with Python work per candidate: a Python loop over them was half the engine's time
at 20,000 profiles. Ids are compared by their XXH64 (`hash_ids`, in C, which the engine takes
with the candidates) mixed with the slot; every match is then
checked for equal ids, and should two different ids ever meet on one key, that batch is taken
by the loop itself (`TraceSamples._take_exact`), so the samples are exactly the loop's.

Ids are held as 16 bytes (`pick_ids`: an (n, 2) uint64 array, keyed by their own bits, never
hex-encoded nor hashed) when they are the usual 32 lower hex digits, or came off the wire as 16
bytes: a Python str per sample was 89 of the ~120 bytes a sample cost (0.6 KB per profile with
5 while its bucket is open). Any other id (another width, upper case, not hex) turns the
bucket's samples into strs compared by their XXH64 (`TraceSamples.take`): the same samples.

>>> ts = TraceSamples()
>>> ids = np.array(["a", "b", "a", "c", "", "d"], dtype=object)
>>> ts.see(np.array([0, 0, 0, 1, 2, 1]))
>>> ts.take(np.array([0, 0, 0, 1, 2, 1]), ids, 2).tolist()   # the slots of the samples taken
[0, 0, 1, 1]
>>> ts.take(np.array([0, 1]), np.array(["z", "e"], dtype=object), 2).tolist()
[]
>>> ts.by_slot(None)
{0: ['a', 'b'], 1: ['c', 'd'], 2: []}
>>> ids, _, keep = pick_ids(["", "0" * 31 + "1", "f" * 32], np.array([0, 1, 2]))
>>> ids.shape, keep.tolist(), hex_ids(ids)[1] == "f" * 32
((2, 2), [False, True, True], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

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


ID_BYTES = 16  # a trace id's width (OTLP), held as two uint64s
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _id_hashes(ids: np.ndarray) -> np.ndarray:
    """16-byte ids' own int64 hashes (their halves mixed, no pass over bytes): what `take` keys
    them by; every key match is checked on the whole id, so a weak mix would cost speed only."""
    return ((ids[:, 0] * _MIX2) ^ ids[:, 1]).view(np.int64)


def hex_ids(ids: np.ndarray) -> list[str]:
    """(n, 2) uint64 ids as the lower hex of their 16 bytes (one encoding for all)."""
    text = np.ascontiguousarray(ids).tobytes().hex()
    step = 2 * ID_BYTES
    return [text[i : i + step] for i in range(0, len(text), step)]


def _fixed(ids: Sequence[Any], blank: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(ids, mask of the non-empty or None) for ids (bytes, or strs of lower hex) that are all
    16 bytes or empty, as one (m, 2) uint64 array without the empty ones; ValueError if not."""
    if isinstance(blank, str) and "" not in ids:
        return _from_hex(ids), None
    width = ID_BYTES if isinstance(blank, bytes) else 2 * ID_BYTES
    lens = np.fromiter(map(len, ids), np.int64, len(ids))
    full = lens == width
    keep = None
    if not full.all():
        if not np.all(full | (lens == 0)):
            raise ValueError("an id of another width")
        keep = full
    if isinstance(blank, str):
        return _from_hex([i for i in ids if i]), keep
    return np.frombuffer(blank.join(ids), np.uint64).reshape(-1, 2), keep


def _from_hex(ids: Sequence[str]) -> np.ndarray:
    """Ids of 32 lower hex digits each as (m, 2) uint64; ValueError for any other. Each is 32
    long as the newlines joining them are every 33rd character and nowhere else (no length
    of each taken: that was half the time)."""
    m = len(ids)
    if m == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    text = "\n".join(ids)
    step = 2 * ID_BYTES + 1
    if (
        len(text) != step * m - 1
        or text.count("\n") != m - 1
        or text[step - 1 :: step] != "\n" * (m - 1)
    ):
        raise ValueError("an id of another width")
    raw = bytes.fromhex(text)  # (skips whitespace, reads upper case: both checked)
    if len(raw) != ID_BYTES * m or any(c in text for c in "ABCDEF"):
        raise ValueError("not lower hex")
    return np.frombuffer(raw, np.uint64).reshape(-1, 2)


def _gather(seq: Sequence[Any], idx: np.ndarray) -> list[Any]:
    """``[seq[i] for i in idx]`` in C."""
    if len(idx) <= 1:
        return [seq[int(i)] for i in idx]
    return list(itemgetter(*idx.tolist())(seq))


def pick_ids(
    seq: Sequence[str], idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The trace ids at `idx` of `seq` (strs, or bytes behind `blob`/`raw`/`hex_at` as
    `receive.normalise.HexIds` keeps them) as `take` holds them: (ids, hashes, keep).

    Ids of 16 bytes or 32 lower hex digits (or empty) come as an (m, 2) uint64 array without
    the empty ones (`keep` marks the positions taken, None: all) and no hashes; any other id
    makes them all an object array of strs with their `hash_ids` as int64, `keep` None."""
    try:
        blob_of = getattr(seq, "blob", None)
        if blob_of is None:
            return _binary(_fixed(_gather(seq, idx), ""))
        packed = blob_of()
        if packed is None:
            return _binary(_fixed(_gather(seq.raw, idx), b""))  # type: ignore[attr-defined]
        if packed[1] == ID_BYTES:
            return np.frombuffer(packed[0], np.uint64).reshape(-1, 2)[idx], None, None
    except ValueError:
        pass
    hex_at = getattr(seq, "hex_at", None)
    strs = hex_at(idx) if hex_at is not None else _gather(seq, idx)
    return objects(strs)


def _binary(
    fixed: tuple[np.ndarray, np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    return fixed[0], None, fixed[1]


def objects(strs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, None]:
    """`strs` as an object array with their `hash_ids` as int64 (`pick_ids`'s other form)."""
    tids = np.empty(len(strs), dtype=object)
    tids[:] = strs
    return tids, hash_ids(strs).view(np.int64), None


def as_held(
    tids: np.ndarray, hashes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """An object array of ids as `pick_ids` gives them: 16 bytes each where all are."""
    try:
        return _binary(_fixed(tids.tolist(), ""))
    except ValueError:
        return tids, hash_ids(tids.tolist()).view(np.int64) if hashes is None else hashes, None


def join_ids(
    ids: list[np.ndarray], hashes: list[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Chunks of ids (`pick_ids`'s forms) and their hashes as one: strs if any chunk is."""
    if all(h is None for h in hashes):
        return np.concatenate(ids), None
    parts = [
        objects(hex_ids(t))[:2] if h is None else (t, h) for t, h in zip(ids, hashes, strict=True)
    ]
    return np.concatenate([t for t, _ in parts]), np.concatenate([h for _, h in parts])


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
    group of it was seen (its entry exists, ids or not) and how many samples it holds. Ids are
    16 bytes, (n, 2) uint64 (`pick_ids`), until one that is not comes: then all are strs."""

    __slots__ = ("_skey", "_slot", "_spos", "_tid", "count", "n", "seen", "strs")

    def __init__(self) -> None:
        # Chunks of the samples in the order taken (one per `take`, joined when read).
        self._slot: list[np.ndarray] = []
        self._tid: list[np.ndarray] = []
        self.n = 0
        self.strs = False  # ids held as strs (object array), not as 16 bytes
        self.seen = np.zeros(0, dtype=bool)
        self.count = np.zeros(0, dtype=np.int64)
        # Every sample's key, sorted, and its place in taking order: what a candidate repeats.
        # (slots and places as int32: 8 bytes less per sample; `ProfileTable` has < 2^31 slots)
        self._skey = np.zeros(0, dtype=np.int64)
        self._spos = np.zeros(0, dtype=np.int32)

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

    def _flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Slot and id of every sample in the order taken (the chunks joined into one)."""
        if len(self._slot) != 1:
            none = np.zeros(0, dtype=object) if self.strs else np.zeros((0, 2), dtype=np.uint64)
            self._slot = [np.concatenate(self._slot or [np.zeros(0, dtype=np.int32)])]
            self._tid = [np.concatenate(self._tid or [none])]
        return self._slot[0], self._tid[0]

    def _keys_in_order(self) -> np.ndarray:
        """Every sample's key in the order taken (from the sorted ones)."""
        key = np.empty(self.n, dtype=np.int64)
        key[self._spos] = self._skey
        return key

    def _resort(self, key: np.ndarray) -> None:
        o = np.argsort(key)
        self._skey, self._spos = key[o], o.astype(np.int32)

    def _to_strs(self) -> None:
        """Hold the ids as strs from now on (an id that is not 16 bytes came), keyed by XXH64."""
        if self.n:
            slot_all, tid_all = self._flat()
            held, hashes, _ = objects(hex_ids(tid_all))
            self._tid = [held]
            self._resort(_keys(hashes, slot_all))
        else:  # (all forgotten: an empty chunk of 16-byte ids would not join the strs)
            self._slot, self._tid = [], []
        self.strs = True

    def take(
        self, ps: np.ndarray, pt: np.ndarray, cap: int, ph: np.ndarray | None = None
    ) -> np.ndarray:
        """Take each candidate (slot `ps`, id `pt`, in order) whose id is not empty and which its
        slot does not hold yet, while the slot holds fewer than `cap`: the loop
        ``if tid and len(have) < cap and tid not in have: have.append(tid)``, in a few sorts.
        `pt`: 16-byte ids as an (n, 2) uint64 array (none empty), or strs (an object array)
        with `ph`, their `hash_ids` as int64 if the caller has them (`pick_ids` gives both).
        Returns the slots of the samples taken (one per sample)."""
        n = len(ps)
        if n == 0:
            return ps
        self._room(int(ps.max()) + 1)
        if pt.ndim == 2 and self.strs and self.n:
            pt, ph, _ = objects(hex_ids(pt))
        elif pt.ndim == 1 and not self.strs:
            self._to_strs()
        elif pt.ndim == 2 and self.strs:  # (none held: back to bytes)
            self.strs = False
            self._slot, self._tid = [], []
        if pt.ndim == 2:
            ph = _id_hashes(pt)
        else:
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
            if not (np.array_equal(ps[o], ps[rep]) and np.array_equal(pt[o], pt[rep])):
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
                slot_all, tid_all = self._flat()
                pos, f = self._spos[at[hit]], firstpos[hit]
                if not (
                    np.array_equal(slot_all[pos], ps[f]) and np.array_equal(tid_all[pos], pt[f])
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
        self._append(ps[keep], pt[keep], uk[taken], place)
        return ps[keep]

    def _take_exact(self, ps: np.ndarray, pt: np.ndarray, key: np.ndarray, cap: int) -> np.ndarray:
        """`take` by the loop itself, ids compared as they are: when two ids met on one key
        (`ps`, `pt` without empty ids). Only the samples of the batch's slots are compared: two
        ids that share a key are cheap to make (the key of 16-byte ids is linear), so a loop over
        the whole bucket would let two records a request stall a shard."""
        slot_all, tid_all = self._flat()
        mine = np.isin(slot_all, ps)
        have: dict[int, list[Any]] = {}
        for s, t in zip(slot_all[mine].tolist(), _hashable(tid_all[mine]), strict=True):
            have.setdefault(s, []).append(t)
        keep = []
        for i, (s, t) in enumerate(zip(ps.tolist(), _hashable(pt), strict=True)):
            h = have.setdefault(s, [])
            if len(h) < cap and t not in h:
                h.append(t)
                keep.append(i)
        idx = np.array(keep, dtype=np.int64)
        o = np.argsort(key[idx])
        self._append(ps[idx], pt[idx], key[idx][o], o)
        return ps[idx]

    def _append(self, slots: np.ndarray, tids: np.ndarray, ks: np.ndarray, at_: np.ndarray) -> None:
        """Append samples in order; `ks` their keys sorted, `at_` each sorted key's place."""
        m = len(slots)
        if m == 0:
            return
        self._slot.append(slots.astype(np.int32))
        self._tid.append(tids)
        # `np.insert` of both at once: each new key goes before the first larger one, the
        # new ones in their order (`ks` is sorted), the old ones to the places left.
        dest = np.searchsorted(self._skey, ks) + np.arange(m)
        old = np.ones(len(self._skey) + m, dtype=bool)
        old[dest] = False
        skey = np.empty(len(old), dtype=np.int64)
        skey[dest], skey[old] = ks, self._skey
        spos = np.empty(len(old), dtype=np.int32)
        spos[dest], spos[old] = self.n + at_, self._spos
        self._skey, self._spos = skey, spos
        self.n += m
        self.count += np.bincount(slots, minlength=len(self.count))

    def by_slot(self, want: np.ndarray | None) -> dict[int, list[str]]:
        """The samples of every seen slot (of those where the mask `want` is set), slot order."""
        seen = self.seen if want is None else self.seen & want[: len(self.seen)]
        out: dict[int, list[str]] = {s: [] for s in np.flatnonzero(seen).tolist()}
        if self.n:
            slot_all, tid_all = self._flat()
            sel = seen[slot_all]
            slots, tids = slot_all[sel], tid_all[sel]
            o = np.argsort(slots, kind="stable")
            strs = tids[o].tolist() if self.strs else hex_ids(tids[o])
            for s, t in zip(slots[o].tolist(), strs, strict=True):
                out[s].append(t)
        return out

    def forget(self, slots: np.ndarray) -> None:
        """Drop the samples and entries of `slots` (evicted: their slots may be reused)."""
        inside = slots[slots < len(self.seen)]
        self.seen[inside] = False
        self.count[inside] = 0
        if not self.n:
            return
        slot_all, tid_all = self._flat()
        m = ~np.isin(slot_all, slots)
        if m.all():
            return
        key = self._keys_in_order()[m]
        self._slot, self._tid = [slot_all[m]], [tid_all[m]]
        self.n = int(np.count_nonzero(m))
        self._resort(key)


def _hashable(tids: np.ndarray) -> list[Any]:
    """Ids as values `==` and `in` compare: strs, or (high, low) pairs for 16-byte ids."""
    return tids.tolist() if tids.ndim == 1 else list(map(tuple, tids.tolist()))
