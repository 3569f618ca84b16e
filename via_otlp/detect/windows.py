"""Multi-scale windows: counts summed over windows of several lengths, each judged at its own scale.

Buckets of a real rate are not independent draws: when a whole minute runs at twice its
neighbours, its six buckets are high together, and a test that multiplies their tails finds
"p < 1e-6" in ordinary traffic. So longer stretches are judged as one count: for each scale
``j`` the count ``S`` of a window of about ``2·HALF[j]`` buckets ending at the bucket being
closed, against ``E``, the sum of what the baseline expected in each of those buckets, under a
negative binomial with variance ``φ_j · E``. ``φ_j`` is learnt from ``(S - E)² / E`` *at that
aggregation*, so minute-scale wander widens the longer windows instead of looking like
independent Poisson surprise, and a low-rate burst (63 records in ten minutes where 5 are usual)
is one very unlikely count even when no bucket of it is. One mechanism finds spikes, drops and
slow bursts; the false-alarm budget is shared by the scales (`SCALES` tests, each at
``p_alarm / SCALES``, ``p_alarm`` being `false_alarms_per_day` spread over the day's buckets) so
adding scales does not add false alarms.

A window is two half-blocks of ``HALF[j]`` buckets, aligned on the absolute bucket number (so
every shard, replay and restored snapshot cuts them alike): the previous, complete one and the
current one, so it holds between ``HALF + 1`` and ``2·HALF`` buckets (fewer just after a gap
in event time, which empties the half-blocks it skips: `WindowState.lengths`). Per profile and
scale that is four sums and one dispersion (5 float32, 60 bytes a profile for three scales; sums
of counts stay exact up to 2^24 records a window); with what the lagged and drop tests and the
rate-scaled wander keep beside them, and the drift tests' copy of the dispersion (`disp_v`),
`WindowState` holds 132 bytes a profile (`_COLS`).

>>> w = WindowState(2)
>>> for b in range(12):
...     w.begin(b)
...     w.add(np.array([1.0, 4.0 if b >= 9 else 1.0]), np.ones(2))
>>> w.begin(12)
>>> s, e = w.sums(np.array([1.0, 4.0]), np.ones(2))
>>> s[:, 0].tolist(), e[:, 0].tolist()   # scale 0: buckets 9..12 (a window of 4-6 buckets)
([4.0, 16.0], [4.0, 4.0])
"""

from __future__ import annotations

import functools
import math

import numpy as np

from via_otlp.detect.tails import count_tails, math_of

HALF = (3, 15, 45)
"""Half-block lengths in buckets: windows of 4-6, 16-30 and 46-90 buckets (1, 5 and 15 min at 10 s)."""
SCALES = 1 + len(HALF)
"""Tests that share the spike (or drop) budget: one bucket, then each window."""
MIN_WINDOWS = 4
"""A scale is judged once its dispersion has seen this many windows' worth of buckets."""
SAFETY = 1.5
"""The window's dispersion is an average over window lengths and phases (a window that lines up
with a burst of wander varies more than one that straddles two); the negative binomial matched
to that average is too light in the tail, so windows are judged at 1.5× it (on minute-scale
gamma wander, CV 0.2, two days × two seeds: 0.75 false episodes per profile-day at 1.0, none
at 1.5). A spike's tail test models the part of it that was the wander's lag behind a rising
rate instead (`tail_dispersion_at`, `WANDER_SAFETY`)."""
WANDER_SAFETY = 1.0
"""A spike's tail test scales the learnt wander to the rate it judges (`tail_dispersion_at`), so
the lag `SAFETY` covered there is modelled; measured at 1.0 and 1.25 (`experiments/`)."""
MEAN_LEN = 1.5 * np.array(HALF, dtype=np.float64) + 0.5
"""Per scale, a window's mean length in buckets over the phases of its half-blocks."""
BOUND_Z = 5.0
"""Bounded influence: one window adds at most ``BOUND_Z²·φ`` to the dispersion it learns."""
LAG_SAFETY = 1.0
"""The lagged test's variance is learnt on the comparison it judges (`learn_lag`), not averaged
over window lengths and phases as a window's dispersion is, so it is used as learnt (at 1.5, as
the windows: count series dev 59.1 / held-out 54.2; at 1.0: 60.9 / 58.8, no more false rows)."""
LAG_FROM = 3
"""The lagged test judges a current half-block once it holds a third of its buckets (fewer say
too little about the level)."""
HELD_SHARE = 0.5
"""The most a level held from before adds to a window's wander against it, as a share of the
longest lag's (`held_wander`): two half-blocks a whole block apart differ by twice what one
block's level varies around a long-run one."""


_COLS = ("cnt", "exp", "disp", "lag", "cnt2", "exp2", "disp_e", "lag_n", "rexp", "disp_v")
_LAG_READY = 2.0 * MIN_WINDOWS * np.array(HALF, dtype=np.float64)  # (`WindowState.lag_ready`)


@functools.cache
def _filled(phase: tuple[int, ...]) -> np.ndarray:
    """Per scale, whether the current half-block (at `phase`, the bucket modulo each `HALF`)
    holds enough buckets for the lagged test (`WindowState.lagged`; cached: it recurs)."""
    out = np.array([p + 1 >= max(1, h // LAG_FROM) for p, h in zip(phase, HALF, strict=True)])
    out.flags.writeable = False
    return out


class WindowState:
    """Per profile and scale: the previous and the current half-block's count and expected count.

    Columns (`cnt`, `exp`: shape ``(capacity, 2·len(HALF))``, previous blocks first; `disp`:
    ``(capacity, len(HALF))``) so a `ProfileTable` carries them through snapshot, take and put.
    """

    def __init__(self, capacity: int) -> None:
        j = len(HALF)
        self.cnt = np.zeros((capacity, 2 * j), dtype=np.float32)
        self.exp = np.zeros((capacity, 2 * j), dtype=np.float32)
        self.disp = np.zeros((capacity, j), dtype=np.float32)
        # The expected count of the windows `disp` learnt from, averaged with the same steps: the
        # wander part of `disp` grows with it (`tail_dispersion_at`). (12 bytes a profile.)
        self.disp_e = np.zeros((capacity, j), dtype=np.float32)
        # Relative variance of the level between one half-block and the one before it, beyond
        # what their counts' noise explains: the wander of the rate over that lag (`lagged`).
        self.lag = np.zeros((capacity, j), dtype=np.float32)
        # The half-block before the previous one (count, expected): the lagged test's reference.
        self.cnt2 = np.zeros((capacity, j), dtype=np.float32)
        self.exp2 = np.zeros((capacity, j), dtype=np.float32)
        # How much `lag` has learnt: the weighted number of buckets it learnt from (`learn_lag`;
        # the per-bucket dispersion's count, as long as both were there from the start). Not
        # that count itself: a snapshot without `lag` (older than it, or a `put` from an older
        # shard) restores a profile whose windows are long ready with `lag` at 0, which
        # `lag_judged` would read as the counts' dispersion 1 and no wander. (4 bytes a profile.)
        self.lag_n = np.zeros(capacity, dtype=np.float32)
        # The longest scale's previous and current half-block of what the level from before a
        # change (`ProfileTable.drop_ref`) expected: the drop test's second reference. (8 bytes.)
        self.rexp = np.zeros((capacity, 2), dtype=np.float32)
        # Each scale's dispersion learnt with every unusual stretch at the anomaly weight (as
        # `disp` was before it learnt them in full): the drift tests' variance inflation
        # (`ProfileTable.close`), tuned on it. (12 bytes a profile; float16 would round away
        # the steps of a long memory.)
        self.disp_v = np.zeros((capacity, j), dtype=np.float32)
        self.last: int | None = None  # the last bucket added (table-wide)
        # Per scale, the buckets begun in the previous and in the current half-block (table-wide:
        # `lengths`; kept in a snapshot beside `last`); None where not counted (a table restored
        # from a snapshot older than it: both taken as full).
        self.filled: list[tuple[int, int]] | None = None

    def grow(self, capacity: int) -> None:
        """Extend to `capacity` profiles (new ones empty)."""
        pad = capacity - len(self.cnt)
        if pad <= 0:
            return
        for name in _COLS:
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.zeros((pad, *a.shape[1:]), np.float32)]))

    def clear(self, slot: int) -> None:
        """Forget one profile."""
        for name in _COLS:
            getattr(self, name)[slot] = 0.0

    def slot_arrays(self, prefix: str) -> dict[str, tuple[np.ndarray, int]]:
        """Every column by name (``prefix`` + attribute), slot axis 0: what a `ProfileTable`
        carries through snapshot, take and put."""
        return {f"{prefix}{n}": (getattr(self, n), 0) for n in _COLS}

    def filled_tree(self) -> list[list[int]] | None:
        """`filled` for a snapshot (JSON values), None where not counted."""
        return None if self.filled is None else [[a, b] for a, b in self.filled]

    def restore_filled(self, tree: list[list[int]] | None) -> None:
        """`filled` from `filled_tree` (after `last` is set from the same snapshot): a table
        restored in the windows after a gap judges them at the lengths the original would."""
        if tree is not None and len(tree) == len(HALF):
            self.filled = [(int(a), int(b)) for a, b in tree]

    def begin(self, bucket: int) -> None:
        """Start the half-blocks that begin at `bucket`: the current one becomes the previous one,
        the previous one the one before it (all are emptied after a gap of more than a
        half-block)."""
        last = self.last
        if last is not None and bucket <= last:
            return
        j = len(HALF)
        if self.filled is None:
            self.filled = [(0, 0) if last is None else (h, last % h + 1) for h in HALF]
        filled = self.filled
        for k, h in enumerate(HALF):
            if last is not None and bucket // h == last // h:
                filled[k] = (filled[k][0], filled[k][1] + 1)
                continue
            if last is not None and bucket // h == last // h + 1:
                filled[k] = (filled[k][1], 1)
                self.cnt2[:, k] = self.cnt[:, k]
                self.exp2[:, k] = self.exp[:, k]
                self.cnt[:, k] = self.cnt[:, j + k]
                self.exp[:, k] = self.exp[:, j + k]
            else:
                filled[k] = (0, 1)
                self.cnt2[:, k] = 0.0
                self.exp2[:, k] = 0.0
                self.cnt[:, k] = 0.0
                self.exp[:, k] = 0.0
            self.cnt[:, j + k] = 0.0
            self.exp[:, j + k] = 0.0
            if k == j - 1:  # (the longest scale's second reference rolls with it)
                adjacent = last is not None and bucket // h == last // h + 1
                self.rexp[:, 0] = self.rexp[:, 1] if adjacent else 0.0
                self.rexp[:, 1] = 0.0
        self.last = bucket

    def sums(self, c: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per profile and scale, the window's count and expected count with this bucket's `c`, `mu`
        (after `begin`; nothing is stored, so a partial bucket can be judged and not added)."""
        j = len(HALF)
        s = self.cnt[:, :j].astype(np.float64) + self.cnt[:, j:] + c[:, None]
        e = self.exp[:, :j].astype(np.float64) + self.exp[:, j:] + mu[:, None]
        return s, e

    def add(self, c: np.ndarray, mu: np.ndarray) -> None:
        """Add the closed bucket's count `c` and expected count `mu` to the current half-blocks."""
        j = len(HALF)
        self.cnt[:, j:] += c[:, None]
        self.exp[:, j:] += mu[:, None]

    def ref_sum(self, mu_ref: np.ndarray) -> np.ndarray:
        """Per profile, the longest window's expected count at the reference level, with this
        bucket's `mu_ref` (as `sums`: nothing stored)."""
        return self.rexp[:, 0].astype(np.float64) + self.rexp[:, 1] + mu_ref

    def add_ref(self, mu_ref: np.ndarray) -> None:
        """Add the closed bucket's expected count at the reference level (see `ref_sum`)."""
        self.rexp[:, 1] += mu_ref

    def learn(
        self,
        s: np.ndarray,
        e: np.ndarray,
        weight: np.ndarray,
        n: np.ndarray,
        hl: float,
        edge: np.ndarray | None = None,
        edge_r2: float = 0.0,
        weight_v: np.ndarray | None = None,
    ) -> None:
        """Learn each scale's dispersion from this window (weights as the per-bucket dispersion).
        Where `edge` (per profile), a window adds at most ``edge_r2·φ`` (see `ProfileTable.close`).
        `disp_v` learns with `weight_v` (default `weight`) and no such cap.

        The step is ``max(λ, w/n)`` with the per-bucket dispersion's count `n`, each scale with a
        half-life of at least 20 of its windows; a window adds at most ``BOUND_Z²·φ``. (All scales
        in one pass of 2-d arrays: with few profiles the per-call cost, not the size, is the cost.)
        """
        step = _steps(weight, n, hl)
        ok = e > 1e-9
        r2 = _ratio((s - e) ** 2, e, ok=ok)
        step_v = step if weight_v is None else _steps(weight_v, n, hl)
        self.disp_v[:] = _bounded_step(self.disp_v.astype(np.float64), r2, step_v, ok)
        cur = self.disp.astype(np.float64)
        if edge is not None:
            r2 = np.where(edge[:, None], np.minimum(r2, edge_r2 * np.maximum(cur, 1.0)), r2)
        move = ok & (step > 0)
        self.disp[:] = _bounded_step(cur, r2, step, ok)
        # (From the window's own count where nothing was learnt yet: a snapshot from before
        # `disp_e` restores it at 0 under a `disp` long learnt.)
        at = self.disp_e.astype(np.float64)
        at = np.where(at > 0, at, e)
        self.disp_e[:] = np.where(move, at + step * (e - at), self.disp_e)

    def vif_disp(self) -> np.ndarray:
        """Per profile and scale, `disp_v`, or `disp` where it was never learnt (a snapshot from
        before it)."""
        return np.where(self.disp_v > 0, self.disp_v, self.disp)

    def counts_dispersion(self) -> np.ndarray:
        """Per profile, the counts' own dispersion the shortest lag learnt (`learn_lag`), at
        least 1, and 1 until it is ready: what a spike's window keeps of its learnt excess at
        a rate below the one it learnt at (`tail_dispersion_at`)."""
        return _counts_dispersion(self.lag, self.lag_ready())

    def lengths(self) -> np.ndarray:
        """Per scale, the buckets in the window that ends at the last bucket begun (`begin`):
        the previous half-block and the current one so far, this bucket included, less those a
        gap in event time skipped (after one, the previous half-block is empty or part-filled,
        and the current one starts where the gap ended)."""
        if self.filled is None:
            last = 0 if self.last is None else self.last
            return np.array([h + last % h + 1 for h in HALF], dtype=np.float64)
        return np.array([a + b for a, b in self.filled], dtype=np.float64)

    def lagged(
        self, bucket: int, c: np.ndarray, mu: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per profile and scale, the current half-block with this bucket (count, expected) and
        the one before the previous one (count, expected), and where they can be compared (the
        current one holds at least ``HALF/LAG_FROM`` buckets, both expected something).

        The level some half-blocks before is the reference of the lagged test: a slow change the
        baseline has not followed (a weekend, a level shift) is not in it, so the wander it is
        judged against is only what that lag adds (`lag`), not the spread of whole windows. Not
        the previous half-block: blocks are aligned on bucket numbers, so a change that starts
        inside one would be half in the reference when the next one is judged.
        """
        j = len(HALF)
        a = self.cnt[:, j:].astype(np.float64) + c[:, None]
        ea = self.exp[:, j:].astype(np.float64) + mu[:, None]
        b = self.cnt2.astype(np.float64)
        eb = self.exp2.astype(np.float64)
        filled = _filled(tuple(bucket % h for h in HALF))
        ok = filled[None, :] & (ea > 1e-9) & (eb > 1e-9)
        return a, ea, b, eb, ok

    def learn_lag(
        self,
        blocks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        weight: np.ndarray,
        hl: float,
        scale_weight: np.ndarray | None = None,
    ) -> None:
        """Learn the spread of the lagged comparisons from `blocks` (`lagged`; bounded influence).

        Over the shortest lag (a few buckets) the rate has not wandered, so the squared
        difference of the two levels is the counts' own noise: column 0 of `lag` learns that
        dispersion (the per-bucket one, `dispersion`, also holds the wander of the rate around
        a slow baseline: 4-6 on counts generated at 1.2-2.5). Each longer scale learns the
        relative variance the wander adds over its lag, beyond that noise.

        The step is ``w·max(λ, 1/n)`` with the scale's rate λ and `lag_n`, the buckets it has
        learnt from (this one included): a running mean while young, so a `lag` that starts
        empty (a new profile, or a restore that lacked it) is learnt as a new profile's is,
        not at λ from the 0 it started from (a half-life of days).

        `scale_weight` (per profile and scale), where given, is each comparison's weight in
        place of the profile's `weight` (which still counts the bucket in `lag_n`): a
        comparison whose half-blocks hold a bucket that alarmed learns as that bucket did.
        """
        a, ea, b, eb, ok = blocks
        sw = weight[:, None] if scale_weight is None else scale_weight
        short = np.maximum(self.lag[:, :1].astype(np.float64), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pooled = (a + b) / np.where(ok, ea + eb, 1.0)
            use = ok & (pooled * ea >= 1.0) & (pooled * eb >= 1.0) & (sw > 0)
            pl = np.where(use, pooled, 1.0)
            ia = 1.0 / np.where(use, ea, 1.0)
            ib = 1.0 / np.where(use, eb, 1.0)
            d2 = (a * ia - b * ib) ** 2
        self.lag_n += weight.astype(np.float32)
        step = _steps(sw, self.lag_n, hl)
        cur = self.lag.astype(np.float64)
        # The wander: relative d² less the counts' noise (bounded)...
        noise = short * (ia + ib) / pl
        rel = np.minimum(d2 / (pl * pl), BOUND_Z * BOUND_Z * (np.maximum(cur, 0.0) + noise))
        obs = rel - noise
        # ...but at the shortest lag the counts' dispersion: d² over its variance at dispersion 1.
        obs[:, 0] = np.minimum(
            d2[:, 0] / (pl[:, 0] * (ia[:, 0] + ib[:, 0])),
            BOUND_Z * BOUND_Z * np.maximum(cur[:, 0], 1.0),
        )
        self.lag[:] = np.where(use & (step > 0), cur + step * (obs - cur), cur)

    def lag_ready(self) -> np.ndarray:
        """Per profile and scale, whether `lag` has learnt enough to judge with: from as many
        buckets as `dispersion_at` asks of the windows' dispersion (`MIN_WINDOWS` windows)."""
        return self.lag_n[:, None] >= _LAG_READY


def _bounded_step(cur: np.ndarray, r2: np.ndarray, step: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """A learnt dispersion `cur` moved by `step` towards a window's ``(S - E)²/E`` `r2` where `ok`
    (bounded influence: one window counts as at most ``BOUND_Z²·φ``)."""
    r2 = np.minimum(r2, BOUND_Z * BOUND_Z * np.maximum(cur, 1.0))
    return np.where(ok & (step > 0), cur + step * (r2 - cur), cur)


def _steps(weight: np.ndarray, n: np.ndarray, hl: float) -> np.ndarray:
    """Per profile and scale, the learning step of a window statistic: ``weight·max(λ, 1/n)``
    with the scale's rate λ (`_scale_constants`) and the count `n` it has learnt from; `weight`
    per profile, or per profile and scale."""
    lam, _, _ = _scale_constants(hl)
    inv = np.divide(1.0, n, out=np.zeros(len(n), n.dtype), where=n > 0)  # (an errstate costs more)
    w = weight if weight.ndim == 2 else weight[:, None]
    return w * np.maximum(lam, inv[:, None])


def _windows_seen(n: np.ndarray, hl: float) -> np.ndarray:
    """Per profile and scale, how many windows' worth of buckets its dispersion has learnt from
    (capped at what it remembers): a scale is judged from `MIN_WINDOWS` on."""
    _, mem, length = _scale_constants(hl)
    return np.minimum(n[:, None], mem) / length


@functools.cache
def _scale_constants(hl: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scale, for a dispersion half-life of `hl` buckets: the dispersion's learning rate,
    the cap on the buckets its estimate remembers, and the window length (``2·HALF``)."""
    mem = [max(hl, 40.0 * h) for h in HALF]
    lam = np.array([1.0 - 2.0 ** (-1.0 / x) for x in mem])
    return lam, np.array([1.44 * x for x in mem]), np.array([2.0 * h for h in HALF])


def lag_judged(
    blocks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    lag: np.ndarray,
    ready: np.ndarray,
    wander: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per profile and scale, the current half-block's expected count against the level just
    before for a rise (`m_up`) and for a fall (`m_down`), and the variance of each (0 where not
    judged). `wander`: `lag_wander` of `lag`, where the caller has it.

    The reference is the more cautious of the previous half-block's level and the baseline's: a
    rise is judged against the higher of the two, a fall against the lower, so neither a stale
    baseline (a weekend, a level shift not yet learnt) nor a previous half-block that was itself
    unusual (the stretch before a recovery) makes a change out of nothing. The variance
    (`learn_lag`): the counts' dispersion, for the current counts and for the reference's
    estimate, plus the wander of the rate over the scale's lag (``lag·m²``), times `LAG_SAFETY`.
    That wander is the largest learnt at this lag or a longer one, and the shortest lag takes
    the next one's: a rate that wanders in steps (a level held for minutes, then another) moves
    between two blocks only where a step falls between them, so a short lag's average (what it
    learnt) is mostly no move and now and then a whole step, whose size the longer lags show;
    judged at the average, the comparison that straddles a step was a false spike or drop.
    """
    _, ea, b, eb, ok = blocks
    ok = ok & ready
    rb = _ratio(b, eb, 1.0, ok=ok)
    ratio = _ratio(ea, eb, ok=ok)
    m_up = np.where(ok, ea * np.maximum(rb, 1.0), 0.0)
    m_down = np.where(ok, ea * np.minimum(rb, 1.0), 0.0)
    p = np.maximum(lag[:, :1], 1.0)
    v = lag_wander(lag) if wander is None else wander
    var_up = np.where(ok, LAG_SAFETY * (p * m_up * (1.0 + ratio) + v * m_up * m_up), 0.0)
    var_down = np.where(ok, LAG_SAFETY * (p * m_down * (1.0 + ratio) + v * m_down * m_down), 0.0)
    return m_up, var_up, m_down, var_down


def lag_wander(lag: np.ndarray) -> np.ndarray:
    """Per profile and scale, the wander the lagged test judges a half-block against an
    earlier one with (`lag_judged`): the largest learnt at its own lag or a longer one, the
    shortest lag that of the next. (Column 0 of `lag` is the counts' dispersion, not a
    wander.) Half of it is the reference's own level's (`level_wander_sf`)."""
    v = np.maximum(lag, 0.0)
    v[:, 1:] = np.maximum.accumulate(v[:, :0:-1], axis=1)[:, ::-1]  # (max from the longest lag)
    v[:, 0] = v[:, 1]
    return v


def held_dispersion(
    lag: np.ndarray, ready: np.ndarray, e: np.ndarray, wander: np.ndarray | None = None
) -> np.ndarray:
    """Per profile, the least dispersion of a window's count `e` judged against a level held
    from some time before (`ProfileTable.drop_ref`): the counts' own dispersion plus the wander
    of the rate between the two times, ``lag·E`` with the wander learnt at the longest lag
    (`learn_lag`, over half-blocks of the longest window's aggregation; 0 where not ready), as
    `lag_judged` judges a half-block against an earlier one.

    The windows' dispersion is learnt against a baseline that follows a wander part of the
    way within each window; a level held from before does not follow at all, so against it a
    rate that wanders in blocks as long as the window moves by a whole step between blocks.
    (The spike side's floor. On the drop side, whose held dispersion is the lighter one learnt
    before the fall, that wander held back a day-one drop at the default wander, p 8e-7, just
    alarmed: it gives `wander`, the part the held level misses (`held_wander`), instead.)

    >>> lag = np.array([[1.2, 0.04, 0.01]])  # (counts' dispersion, then each lag's wander)
    >>> held_dispersion(lag, np.ones_like(lag, bool), np.array([100.0])).round(2).tolist()
    [2.2]
    """
    p = _counts_dispersion(lag, ready)
    return p + (long_wander(lag, ready) if wander is None else wander) * e


def long_wander(lag: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Per profile, the wander the longest lag learnt (`learn_lag`), 0 where not `ready`."""
    return np.where(ready[:, -1], np.maximum(lag[:, -1], 0.0), 0.0)


def _counts_dispersion(lag: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Per profile, the counts' own dispersion the lags learnt (`learn_lag`'s first column),
    at least Poisson's 1, and 1 until it is ready."""
    return np.maximum(np.where(ready[:, 0], lag[:, 0], 1.0), 1.0)


def held_age(held: np.ndarray, span: float) -> np.ndarray:
    """Per profile, the mean time in buckets from a level held for `held` buckets to the
    buckets of a window of `span` that ends now: the window's buckets from before the hold
    were expected at the forecast of their own time (age 0).

    >>> held_age(np.array([0.0, 30.0, 90.0, 150.0]), 90.0).tolist()
    [0.0, 5.0, 45.0, 105.0]
    """
    return np.where(held >= span, held - span / 2.0, held * held / (2.0 * span))


def held_wander(
    lag: np.ndarray,
    ready: np.ndarray,
    age: np.ndarray,
    disp_e: np.ndarray,
    lag_n: np.ndarray,
    hl: float,
    group: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Per profile, the relative variance a level held `age` buckets before a window
    (`held_age`) adds to the window's count against it, beyond the windows' learnt dispersion:
    the part of the rate's wander that grows with the lag (`held_slope`), and only as far as
    the learnt lags can tell it from their noise (`wander_at`).

    Lags learnt at 0.05 and 0.2 over a day, 100 records a half-block: a level 45 minutes
    older than the window's buckets (270 of them, on average) adds half the longest lag's
    wander; lags at 0.2 and 0.2 (no growth) add nothing, nor any before the longest is ready:

    >>> lag = np.array([[1.0, 0.05, 0.2], [1.0, 0.2, 0.2], [1.0, 0.05, 0.2]])
    >>> ready = np.ones_like(lag, bool)
    >>> ready[2, -1] = False
    >>> e = np.tile(100.0 * MEAN_LEN / np.array(HALF), (3, 1))
    >>> held_wander(lag, ready, np.full(3, 270.0), e, np.full(3, 8640.0), 2160.0).round(3).tolist()
    [0.1, 0.0, 0.0]
    """
    return wander_at(held_slope(lag, ready, disp_e, lag_n, hl, group), lag, ready, age)


def held_slope(
    lag: np.ndarray,
    ready: np.ndarray,
    disp_e: np.ndarray,
    lag_n: np.ndarray,
    hl: float,
    group: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Per profile, how fast the rate's wander grows with a held level's age (relative
    variance a bucket; `held_wander`): the growth of the learnt lag wander from one lag to the
    next, less one standard error, per bucket of lag; 0 where it does not grow. It does not
    depend on the age, so a close computes it once for every level it judges against.

    The windows' dispersion is learnt against a baseline that does not follow a wander much
    shorter than its memory (minute blocks: counts against it vary as much as they ever do),
    but follows one of tens of minutes part of the way, and a level held from before does not
    follow that at all. The two tell apart by how the learnt lag wander (`learn_lag`) moves
    with the lag: a short wander averages out over longer half-blocks (a third as large from
    the 15- to the 45-bucket scale), a coarse one grows with the lag until a whole block
    moves between the two (day one, 5 seeds, medians over patterns: 0.03 and 0.02 at minute
    blocks, 0.06 and 0.19 at blocks of 15 minutes). So the growth from one lag to the next,
    less one standard error (`lag_error`), is extrapolated linearly to the held level's age
    (`wander_at`). At a minute-scale wander the lags' noise makes the growth of a quiet
    template's lags up to 0.1 (day one, 5 seeds, 10-90 %: -0.1..0.07), which the error takes
    back: a held drop there stays at the dispersion the windows learnt (p 8e-7 in day-one
    finds at 4 records of 31.3 and 9 of 46.3 expected). Less, too, the most of it that the
    counts' noise taken off the lags can make (`_noise_over`): the dispersion taken off holds
    part of a minute wander, more of the shorter lag's, which read as growth.

    With `group` (per profile, its source's index, and the number of them): the growth less
    its error is also the source's (`pooled_growth`), whichever is larger. A source's patterns
    share its traffic's wander, so a quiet or young pattern's lags, whose error alone keeps
    its growth, take the growth its busier siblings tell (`--wander 900` dev, false drops
    0.53 -> 0.30 a source-day); a pattern's own growth is kept where larger (its own trend's
    misfit under a deep daily curve, not shared).
    """
    v = np.maximum(lag, 0.0)
    over = _noise_over(lag, ready, disp_e)
    growth = v[:, -1] - v[:, 1] - (over[:, 1] - over[:, -1])
    err = np.hypot(*lag_error(lag, ready, disp_e, lag_n, hl)[:, 1:].T)
    grown = growth - err
    if group is not None:  # (the source's, where it tells more: `pooled_growth`)
        grown = np.fmax(grown, np.subtract(*pooled_growth(growth, err, ready[:, -1], *group)))
    return np.maximum(np.where(np.isfinite(grown), grown, 0.0), 0.0) / (2.0 * (HALF[-1] - HALF[1]))


def wander_at(slope: np.ndarray, lag: np.ndarray, ready: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Per profile, the wander a level held `age` buckets adds (`held_wander`): the growth
    `slope` (`held_slope`) times the age, at most `HELD_SHARE` of the longest lag's wander (one
    level against one other: two blocks differ by twice what one varies); none before the
    longest lag is ready."""
    v_long = long_wander(lag, ready)
    return np.where(ready[:, -1], np.minimum(HELD_SHARE * v_long, slope * age), 0.0)


def _noise_over(lag: np.ndarray, ready: np.ndarray, disp_e: np.ndarray) -> np.ndarray:
    """Per profile and scale, the most the counts' noise taken off a lag's wander
    (`learn_lag`) can be too much: the counts' dispersion it takes off is learnt at the
    shortest lag, whose half-blocks of a few buckets straddle a minute wander's steps, so it
    holds part of that wander (2.7 at 7.6 records a bucket, 1.3 at 1.5), and a Poisson count's
    noise is all that was there for certain. The shorter lag, over fewer records, had the
    more taken off: its wander reads the lower, and the growth with the lag the higher by up
    to the difference (`held_slope`; day one, default wander, dev seeds 1-5: 0.013-0.04 on
    busy templates, where the growth less its error read 0.001-0.007 above 0). At a coarse
    wander the shortest lag's half-blocks rarely straddle a step: a few thousandths."""
    over = _counts_dispersion(lag, ready) - 1.0
    half = np.array(HALF, dtype=np.float64)[None, :]
    e_half = disp_e.astype(np.float64) * half / MEAN_LEN[None, :]
    return _ratio(2.0 * over[:, None], e_half)


def pooled_growth(
    growth: np.ndarray, err: np.ndarray, ok: np.ndarray, gid: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per profile, its group's precision-weighted mean of the `ok` profiles' lag growth
    (`held_wander`) and that mean's standard error; a profile keeps its own where that error is
    not smaller than its own (a lone pattern, or one busy beside a quiet sibling).

    The patterns of one source share its traffic's wander (the wander is the service's load),
    so their growths estimate one value, each with its own noise (`lag_error`): pooled, a quiet
    or young pattern's growth is told from its noise by its busier siblings'. No profile
    weighs more than half its group's others (a third of the group: bounded influence, one
    pattern whose own level moved, a drift or the drop being judged, does not set its
    siblings' growth).

    >>> g, e = pooled_growth(np.array([0.3, 0.1, 0.1, 0.1]), np.array([0.3, 0.05, 0.05, 0.05]),
    ...                      np.ones(4, bool), np.zeros(4, np.int64), 1)
    >>> g.round(3).tolist(), e.round(3).tolist()
    ([0.102, 0.102, 0.102, 0.102], [0.029, 0.029, 0.029, 0.029])
    """
    use = ok & np.isfinite(err) & np.isfinite(growth) & (err > 0)
    w = _ratio(1.0, err * err, ok=use)
    w = np.minimum(w, (np.bincount(gid, w, n_groups)[gid] - w) / 2.0)
    tot = np.bincount(gid, w, n_groups)[gid]
    mean = _ratio(np.bincount(gid, w * np.where(use, growth, 0.0), n_groups)[gid], tot)
    se = _ratio(
        np.sqrt(np.bincount(gid, w * w * np.where(use, err * err, 0.0), n_groups)[gid]), tot
    )
    better = (tot > 0) & ~(se >= err)  # (a busy pattern beside one quiet sibling keeps its own)
    return np.where(better, mean, growth), np.where(better, se, err)


def lag_error(
    lag: np.ndarray, ready: np.ndarray, disp_e: np.ndarray, lag_n: np.ndarray, hl: float
) -> np.ndarray:
    """Per profile and scale, the standard error of the learnt lag wander (`learn_lag`), inf
    where the window's expected count is not known (`disp_e` 0).

    Each comparison's relative d² is the counts' noise (``2·φ/E`` for two half-blocks of
    ``E`` expected at the counts' dispersion φ) plus the wander ``v``, spread as a χ² of one
    degree: standard deviation ``√2·(noise + v)``; the lag averages the comparisons of the
    buckets it remembers (at most its memory, `_scale_constants`), which overlap: about one
    independent comparison every two half-blocks.
    """
    _, mem, _ = _scale_constants(hl)
    phi = _counts_dispersion(lag, ready)
    half = np.array(HALF, dtype=np.float64)[None, :]
    e_half = disp_e.astype(np.float64) * half / MEAN_LEN[None, :]
    n = np.minimum(lag_n.astype(np.float64)[:, None], mem[None, :]) / (2.0 * half)
    noise = _ratio(2.0 * phi[:, None], e_half, np.inf)
    return np.sqrt(2.0 / np.maximum(n, 1.0)) * (noise + np.maximum(lag, 0.0))


def run_log_p0(
    e_run: np.ndarray, mu: np.ndarray, disp: np.ndarray, disp_e: np.ndarray, ready: np.ndarray
) -> np.ndarray:
    """Per profile, ``log P(0)`` of a run of silent buckets judged as one count: nothing at all
    where `e_run` records were expected, under a negative binomial at the dispersion learnt at
    the aggregation of the run's length (about ``e_run / mu`` buckets; its wander part scaled to
    `e_run` as `tail_dispersion_at` scales it). Buckets of a wandering rate are empty together:
    a run judged as independent buckets (the product of their ``P(0)``) is far too unlikely
    when a whole wander period runs low. Poisson (``-e_run``) where the scale is not ready.

    At a relative wander of 0.1 (φ = 3 learnt at 20 expected), 40 expected in a silent run:

    >>> d, de = np.full((1, len(HALF)), 3.0), np.full((1, len(HALF)), 20.0)
    >>> round(float(run_log_p0(np.array([40.0]), np.array([5.0]), d, de, np.ones((1, 3), bool))[0]), 2)
    -16.09
    """
    length = _ratio(e_run, mu)
    j = np.searchsorted(2.0 * np.array(HALF, dtype=np.float64), length).clip(0, len(HALF) - 1)
    rows = np.arange(len(e_run))
    d, de, ok = disp[rows, j].astype(np.float64), disp_e[rows, j].astype(np.float64), ready[rows, j]
    v = _ratio(np.maximum(d - 1.0, 0.0), de, ok=ok & (de > 0))
    # (NB of size 1/v: log P(0) = -log(1 + v·E) / v, -E as v -> 0)
    return _ratio(-np.log1p(v * e_run), v, -e_run)


def _block_excess(length: float, period: np.ndarray) -> np.ndarray:
    """Per wander period (buckets), the wander's share of a window's sum of `length` buckets
    over that of one bucket: a factor held for `period` buckets at a random phase, so two
    buckets d apart share it with probability max(0, 1 - d/period)."""
    d = np.arange(1, max(1, round(length)))[:, None]
    share = np.clip(1.0 - d / period[None, :], 0.0, None)
    return 1.0 + 2.0 * ((1.0 - d / round(length)) * share).sum(axis=0)


@functools.lru_cache(maxsize=8)
def _smoothing_gain_table(lam: float) -> tuple[np.ndarray, np.ndarray]:
    """For block wanders of periods up to the smoothing's 4.5 half-lives: the ratio of the
    middle window's wander excess to the longest's (increasing), and the EWMA of weight
    `lam`'s excess over the longest window's (`smoothing_vif`)."""
    period = np.geomspace(1.0, 4.5 * math.log(2.0) / -math.log1p(-lam), 64)
    d = np.arange(1, int(period[-1]) + 1)[:, None]
    share = np.clip(1.0 - d / period[None, :], 0.0, None)
    ewma = 1.0 + 2.0 * (((1.0 - lam) ** d) * share).sum(axis=0)
    longest = _block_excess(float(MEAN_LEN[-1]), period)
    ratio = _block_excess(float(MEAN_LEN[-2]), period) / longest
    order = np.argsort(ratio)
    return ratio[order], (ewma / longest)[order]


def smoothing_vif(vd: np.ndarray, phi: np.ndarray, ready: np.ndarray, lam: float) -> np.ndarray:
    """Per profile, the variance inflation of an EWMA of weight `lam` over buckets (its
    variance over the iid one at per-bucket dispersion `phi`), from the window dispersions `vd`
    (per profile and scale): the longest window's wander excess (``vd - 1``), scaled to the
    smoothing's weights for the block wander whose period gives the middle window's excess
    its share of it. 1 where either is not `ready` (learnt).

    A 15-minute EWMA weighs ~260 buckets, longer than any window: under a minute-scale wander
    the longest window's excess is the smoothing's (within 2 %), but under a wander of 15
    minutes it is 0.70 of it, and the day-one sibling z's sd was 1.23 (families, seed 1).
    """
    ratio, gain = _smoothing_gain_table(float(lam))
    x_mid = np.maximum(vd[:, -2] - 1.0, 0.0)
    x_long = np.maximum(vd[:, -1] - 1.0, 0.0)
    g = np.interp(_ratio(x_mid, x_long, 1.0), ratio, gain)
    ok = ready[:, -2] & ready[:, -1]
    return np.where(ok, (1.0 + x_long * g) / np.maximum(phi, 1e-9), 1.0)


def dispersion_at(disp: np.ndarray, floor: np.ndarray, n: np.ndarray, hl: float) -> np.ndarray:
    """Per profile and scale, the dispersion to judge with, and 0 where a scale is not ready.

    At least `floor` (the one-bucket dispersion: wander only adds to it), times `SAFETY`
    plus one standard error of an estimate from the windows seen so far (``sqrt(2/m)``).
    """
    m = _windows_seen(n, hl)
    ready = m >= MIN_WINDOWS
    phi = np.maximum(disp, floor[:, None]) * (SAFETY + np.sqrt(2.0 / np.maximum(m, 1.0)))
    return np.where(ready, phi, 0.0).astype(disp.dtype)


def tail_dispersion_at(
    disp: np.ndarray,
    disp_e: np.ndarray,
    n: np.ndarray,
    hl: float,
    e: np.ndarray,
    length: np.ndarray,
    level: np.ndarray,
    bounded: bool = False,
    counts: np.ndarray | None = None,
    busy: np.ndarray | None = None,
) -> np.ndarray:
    """Per profile and scale, the dispersion a window's count is judged with for a spike (its
    upper tail), and 0 where a scale is not ready.

    A window's variance is its counts' Poisson part plus the wander of the rate: ``E + v·E²``
    for a relative wander ``v`` (Poisson-gamma), so its dispersion ``1 + v·E`` grows with the
    rate. `disp` (at least 1) was learnt over windows that expected `disp_e` on average (the
    same steps), so the wander part at this window is ``(φ - 1)·busy`` with ``busy`` the
    window's rate per bucket over the one `disp` learnt at (``E/L`` over ``disp_e/L̄``, ``L̄``
    the mean window length), times ``L/L̄`` when the window is longer than that (wander coherent
    over the whole window: the cautious side). That is the lag that `SAFETY` (1.5) covered here
    before: a dispersion learnt at night judged at noon, or early in a morning ramp (1.49 where
    ~2.2 held at the rate judged). The wander part is not scaled by `SAFETY` any more
    (`WANDER_SAFETY`). Then one standard error of the estimate (``sqrt(2/m)``, as
    `dispersion_at`; on the spike side its own spread, `estimate_rel_var`). Where `disp_e` is
    0 (a snapshot from before it, until the next window is learnt) ``busy`` is ``E`` over
    `level` times the mean window length, at least 1.

    `dispersion_at` (``max(φ, φ_bucket)·(SAFETY + se)``) judged the Poisson part at 1.5x as
    well and was floored by the one-bucket dispersion; at a low rate that is no wander at all
    but the noise of a baseline that remembers a few records. The close judges with the
    lighter of this and `dispersion_at`.

    `bounded` (the spike side): only the part of each scale's excess that the scales together
    say is a wander is scaled with the rate (`_bounded_wander`); the rest is judged as learnt
    (so at a rate below the one learnt it is not scaled down either), and the estimate's
    error is its own spread (`estimate_rel_var`). ``E`` is what the wander is scaled to: on a
    first day, a spike's window passes the level it runs at (`runs_at`).

    `counts` (per profile, the counts' own dispersion the shortest lag learnt,
    `WindowState.counts_dispersion`): that much of the excess is not scaled down at a rate
    below the one learnt at. Counts that are overdispersed in themselves (records in clumps:
    variance ``2·E`` at every rate) have an excess that does not fall with the rate, and at
    one rate the windows cannot tell it from a wander. Scaled down as a wander to a night at
    half the learnt rate, the quiet week's first windows were judged at 1.4-1.7 where their
    counts varied at 2 (days 2-7, busy under 0.7: p under 1e-3 and 1e-4 up to 5 and 12
    times as often as that, p 2e-7 on null traffic; the forecast's own error added 0.05-0.2). The shortest lag
    learns the counts' own dispersion and what a rate wanders over a few buckets, at least the
    counts' part: kept where the rate is lower, scaled with the rest where it is higher (the
    cautious side both ways; the one-bucket test splits its dispersion so both ways,
    `profile.bucket_dispersion`).

    `busy`: `wander_busy` of these arguments, where the caller has it (the close's cap reads
    it too, `ProfileTable._window_tails`).

    Poisson counts (φ = 1) at any rate, and φ = 3 learnt at the rate judged, a day's windows
    seen (mean-length windows):

    >>> one, n = np.ones((1, len(HALF))), np.array([1e9])
    >>> e = MEAN_LEN[None, :]
    >>> tail_dispersion_at(one, e, n, 2160.0, e, MEAN_LEN, np.ones(1)).round(2).tolist()
    [[1.06, 1.14, 1.24]]
    >>> tail_dispersion_at(3 * one, e, n, 2160.0, e, MEAN_LEN, np.ones(1)).round(2).tolist()
    [[3.19, 3.42, 3.72]]

    At twice the rate it was learnt at, the wander part doubles:

    >>> tail_dispersion_at(3 * one, e, n, 2160.0, 2 * e, MEAN_LEN, np.ones(1)).round(2).tolist()
    [[5.19, 5.42, 5.72]]

    At a third of the rate, the wander scaled down, but not the counts' own dispersion (2):

    >>> tail_dispersion_at(3 * one, e, n, 2160.0, e / 3, MEAN_LEN, np.ones(1)).round(2).tolist()
    [[1.85, 2.08, 2.39]]
    >>> c = np.array([2.0])
    >>> tail_dispersion_at(3 * one, e, n, 2160.0, e / 3, MEAN_LEN, np.ones(1), counts=c).round(2).tolist()
    [[2.52, 2.75, 3.06]]

    The spike side's error (Poisson: the error alone):

    >>> tail_dispersion_at(one, e, n, 2160.0, e, MEAN_LEN, np.ones(1), True).round(2).tolist()
    [[1.04, 1.07, 1.12]]
    """
    m = _windows_seen(n, hl)
    ready = m >= MIN_WINDOWS
    base = np.maximum(disp, 1.0)
    busy = wander_busy(disp_e, e, length, level) if busy is None else busy
    excess = base - 1.0
    wander = excess if not bounded else _bounded_wander(excess, disp_e, m, ready)
    rel_var = estimate_rel_var(disp, disp_e, n, hl) if bounded else 2.0 / np.maximum(m, 1.0)
    scaled = wander * WANDER_SAFETY * busy
    if counts is not None:  # (the counts' own part is not scaled down with the rate)
        own = np.minimum(wander, np.maximum(counts - 1.0, 0.0)[:, None])
        scaled = scaled + own * np.maximum(1.0 - WANDER_SAFETY * busy, 0.0)
    phi = 1.0 + (excess - wander) + scaled + base * np.sqrt(rel_var)
    return np.where(ready, phi, 0.0).astype(disp.dtype)


def wander_busy(
    disp_e: np.ndarray, e: np.ndarray, length: np.ndarray, level: np.ndarray
) -> np.ndarray:
    """Per profile and scale, how much busier a window expecting `e` runs than the windows its
    dispersion learnt at (`disp_e`): the factor `tail_dispersion_at` scales the wander part of
    a learnt dispersion by (``E/L`` over ``disp_e/L̄``, times ``L̄/L`` where the window is
    shorter than the mean; where `disp_e` is 0, ``E`` over `level` times ``L̄``, at least 1).

    >>> wander_busy(MEAN_LEN[None, :], 2 * MEAN_LEN[None, :], MEAN_LEN, np.ones(1)).tolist()
    [[2.0, 2.0, 2.0]]
    """
    mean_len = MEAN_LEN[None, :]
    rate = _ratio(e, disp_e)
    busy = rate * np.maximum(mean_len / np.maximum(length, 1.0)[None, :], 1.0)
    typical = np.maximum(level, 1e-12)[:, None] * mean_len
    old = np.maximum(np.where(level[:, None] > 0, e / typical, 1.0), 1.0)
    return np.where(disp_e > 0, busy, old)


def runs_at(e: np.ndarray, s: np.ndarray, learnt: np.ndarray) -> np.ndarray:
    """The expected count a first day's spike window scales its learnt wander to
    (`tail_dispersion_at`): its forecast `e`, or its count `s` where that is higher, up to
    `learnt`, what the window would count at the level its dispersion learnt at.

    A wander's variance is ``v·μ²`` at the level ``μ`` the rate runs at, ``v`` relative to
    the level it wanders about, and the forecast is only an estimate of ``μ``. Before a daily
    shape is learnt the baseline follows the day's curve and the wander's long low stretches
    alike (its trend with them), so a forecast under the level learnt at says nothing of which
    it was, and the next stretch can be back at that level by the wander alone: judged at the
    wander scaled down to a forecast at 0.57 of it, a window at 2.3x the learnt level was a
    false spike under a 5-minute wander (`--wander 300`). The count is evidence of where the
    window runs: the wander is scaled to it, between the forecast and the learnt level, so it
    is scaled down only as far as both the forecast and the count say the rate runs low. Never
    above the learnt level on the count's say (a spike's own excess would widen its own test),
    nor below the forecast. Once a daily shape is learnt, a quiet hour's low forecast is that
    shape's, and the forecast alone is the level (scaled to the count on every day as well,
    bursts at a quiet hour went unfound: count series 75.6 -> 73.9).

    >>> e, learnt = np.full(4, 2.0), np.array([5.0, 5.0, 5.0, 1.0])
    >>> runs_at(e, np.array([1.0, 3.0, 9.0, 9.0]), learnt).tolist()
    [2.0, 3.0, 5.0, 2.0]
    """
    return np.maximum(e, np.minimum(s, learnt))


_LEVEL_NODES, _LEVEL_WEIGHTS = np.polynomial.hermite_e.hermegauss(16)
_LEVEL_WEIGHTS = _LEVEL_WEIGHTS / _LEVEL_WEIGHTS.sum()
"""Gauss-Hermite nodes and weights for a standard normal (`level_wander_tails`)."""


def level_wander_tails(k: np.ndarray, e: np.ndarray, var: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``P(S >= k)`` of a window's count expected at `e` and judged with variance `var`, where
    `e` is a level the rate's wander set and so stands off the level the rate wanders about by
    a factor of relative variance `v`: the tail of a count whose expectation is ``e/g`` over
    that factor ``g`` (log-normal, mean 1), at each level at the variance `var` scaled with it
    or the wander ``v`` at that level, whichever is larger. 0 <= `v`; at 0 it is the negative
    binomial tail of `var` (`count_tail`). A spike's three tests against a level are such:
    the baseline's forecast, which follows the blocks of a coarse wander
    (`ProfileTable._forecast_wander`: the wander it misses beyond the windows' learnt
    dispersion is all the forecast's own), the lagged test's reference half-block
    (`lag_wander`) and the level held from before a change (`held_dispersion`): of the wander
    learnt between two levels, half is each one's (`v` the reference's, the window's in `var`).

    A window's count against such a forecast is the wander's factor of its own block over the
    forecast's: a ratio of two factors, whose right tail is polynomial where the negative
    binomial of the same variance (one factor) falls exponentially. Judged at that variance,
    a block at 2.25x the long-run level after two at 0.42 and 0.71, 3.8x the forecast that had
    followed them, was p 5e-8 at the forecast floor where the ratio's law gives 6e-4
    (`--wander 900`, families dev seed 1, a window of 4 buckets: 155 records, 41 expected;
    the counts' own law about the rate's true level gave 3e-3).

    Arrays of counts `k` with their `e`, `var` and `v`: the tails of all of them in one array
    call (`count_tails`, over every node of every count: a close's spike tests, which in a
    surge are every pattern's).
    """
    k, e, var, v = (np.asarray(x, np.float64) for x in (k, e, var, v))
    wide = v > 0.0
    if not wide.any():
        return count_tails(k, e, var, True)
    kw, e_w, var_w, v_w = k[wide], e[wide], var[wide], v[wide]
    sig = np.sqrt(math_of(math.log1p, v_w))[:, None]
    # (e over a factor exp(-sig·z - sig²/2), at each node z)
    at = (sig * _LEVEL_NODES + 0.5 * sig * sig).ravel()
    m = e_w[:, None] * math_of(math.exp, at).reshape(len(kw), len(_LEVEL_NODES))
    m_var = np.maximum(var_w[:, None] * m / e_w[:, None], m + v_w[:, None] * m * m)
    # (One array call for every node of every count and the counts without a spread.)
    flat = ~wide
    p = count_tails(
        np.concatenate([k[flat], np.repeat(kw, len(_LEVEL_NODES))]),
        np.concatenate([e[flat], m.ravel()]),
        np.concatenate([var[flat], m_var.ravel()]),
        True,
    )
    out = np.empty(len(k))
    out[flat] = p[: len(k) - len(kw)]
    nodes = p[len(k) - len(kw) :].reshape(len(kw), len(_LEVEL_NODES))
    mix = np.zeros(len(kw))
    for j, w in enumerate(_LEVEL_WEIGHTS.tolist()):  # (in the nodes' order, as a scalar sum)
        mix = mix + w * nodes[:, j]
    out[wide] = np.minimum(mix, 1.0)
    return out


def level_wander_sf(k: int, e: float, var: float, v: float) -> float:
    """`level_wander_tails` of one count.

    >>> from via_otlp.detect.tails import count_tail
    >>> round(count_tail(155, 41.0, 4.6 * 41.0).upper, 8)
    5e-08
    >>> round(level_wander_sf(155, 41.0, 4.6 * 41.0, 0.088), 4)
    0.0006
    >>> level_wander_sf(155, 41.0, 4.6 * 41.0, 0.0) == count_tail(155, 41.0, 4.6 * 41.0).upper
    True
    """
    one = (np.array([x], np.float64) for x in (k, e, var, v))
    return float(level_wander_tails(*one)[0])


def estimate_rel_var(disp: np.ndarray, disp_e: np.ndarray, n: np.ndarray, hl: float) -> np.ndarray:
    """Per profile and scale, the relative variance of the learnt window dispersion `disp`
    (learnt at expected counts `disp_e`, from the per-bucket dispersion's count `n` of buckets).

    Each bucket teaches its window's ``(S - E)²/E``, whose relative variance is ``2 + γ₂``
    with ``γ₂`` the count's excess kurtosis: for a negative binomial of mean ``E`` and
    dispersion ``φ = 1 + a`` (Poisson at ``a = 0``: ``1/E``) ``(1 + 7a + 12a² + 6a³)/(E·φ²)``,
    so at a few records a window the estimate varies more than ``2/m``. An exponential average
    of rate ``λ`` is worth ``(2 - λ)/λ`` independent terms (fewer, ``n``, while it is young),
    and the windows of consecutive buckets overlap: their squared deviations are correlated
    over about ``2L/3`` buckets (``L`` the mean window length), so the estimate rests on
    ``min(n, (2-λ)/λ) / (1 + 2L/3)`` windows. Simulated (Poisson counts at 0.05, 0.3 and 3
    records a bucket, a 6 h half-life, 60 runs each) the estimate's spread is within 15 % of
    this at every scale; the `dispersion_at` standard error ``sqrt(2/m)`` was 1.6-2x it at the
    two longer scales (it counts the windows of its memory, ``1.44·hl``, end to end).

    Poisson windows learnt a day, at 1 and at 0.1 records a bucket:

    >>> n, one = np.array([1e9]), np.ones((1, len(HALF)))
    >>> np.sqrt(estimate_rel_var(one, MEAN_LEN[None, :], n, 2160.0)).round(3).tolist()
    [[0.039, 0.073, 0.122]]
    >>> np.sqrt(estimate_rel_var(one, 0.1 * MEAN_LEN[None, :], n, 2160.0)).round(3).tolist()
    [[0.053, 0.08, 0.126]]
    """
    lam, _, _ = _scale_constants(hl)
    worth = np.minimum(n[:, None], ((2.0 - lam) / lam)[None, :])
    m = np.maximum(worth / (1.0 + 2.0 * MEAN_LEN[None, :] / 3.0), 1.0)
    a = np.maximum(disp.astype(np.float64), 1.0) - 1.0
    phi = 1.0 + a
    kurt = _ratio(1.0 + 7.0 * a + 12.0 * a * a + 6.0 * a**3, disp_e * phi * phi, ok=disp_e > 0)
    return (2.0 + kurt) / m


def _bounded_wander(
    excess: np.ndarray, disp_e: np.ndarray, m: np.ndarray, ready: np.ndarray
) -> np.ndarray:
    """Per profile and scale, the part of the learnt excess dispersion `excess` (``φ - 1``,
    learnt at expected counts `disp_e` over `m` windows) that is the rate's wander, estimated
    across the scales.

    A wander (any positively correlated change of the rate) adds ``v_L·E`` to a window's
    dispersion, and ``v_L·L`` (the variance of a window's sum over its length, in units of the
    rate) does not fall as windows grow: per unit of the per-bucket rate, ``c = excess /
    (disp_e / L̄)``, a wander's excess is non-decreasing in the scale. Each scale's ``c`` is an
    estimate (standard error ``φ·sqrt(2/m)`` over that rate, as `dispersion_at`'s); where a
    shorter scale's is above a longer one's, the constraint pools them (isotonic regression,
    weights the inverse variances), and a scale's wander is the pooled ``c`` times its rate, at
    most its own excess: what is left of the excess (at 0.06 records a bucket the 5-min
    windows learnt 1.33 where the 15-min ones learnt 1.02 and the counts were Poisson, 1.03)
    is the counts' and the baseline's noise at that scale, not scaled with the rate judged.
    Scales not ready or without `disp_e` take part in nothing.
    """
    per_rate = disp_e / MEAN_LEN[None, :]
    ok = ready & (disp_e > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(ok, per_rate, 1.0)
        coef = np.where(ok, excess / safe, 0.0)
        se = (1.0 + excess) * np.sqrt(2.0 / np.maximum(m, 1.0)) / safe
        w = np.where(ok, 1.0 / np.maximum(se * se, 1e-12), 0.0)
    # Isotonic regression by its min-max formula: at scale k, the max over a <= k of the min
    # over b >= k of the weighted mean of scales a..b (a handful of scales: every block, each
    # block's mean computed once; inf where a block has no weight).
    zero = np.zeros((len(coef), 1))
    cw = np.concatenate([zero, np.cumsum(coef * w, axis=1)], axis=1)
    sw = np.concatenate([zero, np.cumsum(w, axis=1)], axis=1)
    j = excess.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        block = {
            (a, b): np.where(sw[:, b + 1] > sw[:, a],
                             (cw[:, b + 1] - cw[:, a]) / (sw[:, b + 1] - sw[:, a]), np.inf)
            for a in range(j) for b in range(a, j)
        }  # fmt: skip
    fit = np.empty_like(coef)
    for k in range(j):
        lows = [np.min([block[a, b] for b in range(k, j)], axis=0) for a in range(k + 1)]
        fit[:, k] = np.max(lows, axis=0)
    own = np.isfinite(fit) & ok
    fit = np.where(own, np.maximum(fit, 0.0), 0.0)
    return np.where(own, np.minimum(excess, fit * per_rate), excess)


def _ratio(
    num: np.ndarray | float,
    den: np.ndarray,
    default: np.ndarray | float = 0.0,
    ok: np.ndarray | None = None,
) -> np.ndarray:
    """``num / den`` where ``ok`` (by default where ``den > 0``), else `default`, without a
    warning where it is not: the guarded division every per-profile ratio here needs.

    >>> _ratio(np.array([1.0, 2.0]), np.array([2.0, 0.0]), -1.0).tolist()
    [0.5, -1.0]
    """
    ok = den > 0 if ok is None else ok
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), default)


def log10_of(p: float) -> float:
    """``-log10 p``, 300 for a p that underflowed to 0."""
    return 300.0 if p <= 0.0 else min(300.0, -math.log10(p))
