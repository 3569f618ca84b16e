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
``tail_probability / SCALES``) so adding scales does not add false alarms.

A window is two half-blocks of ``HALF[j]`` buckets, aligned on the absolute bucket number (so
every shard, replay and restored snapshot cuts them alike): the previous, complete one and the
current one, so it holds between ``HALF + 1`` and ``2·HALF`` buckets. Per profile and scale
that is four sums and one dispersion: 5 float32, 60 bytes a profile for three scales (sums
of counts stay exact up to 2^24 records a window).

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
at 1.5)."""
BOUND_Z = 5.0
"""Bounded influence: one window adds at most ``BOUND_Z²·φ`` to the dispersion it learns."""


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
        self.last: int | None = None  # the last bucket added (table-wide)

    def grow(self, capacity: int) -> None:
        """Extend to `capacity` profiles (new ones empty)."""
        pad = capacity - len(self.cnt)
        if pad <= 0:
            return
        self.cnt = np.concatenate([self.cnt, np.zeros((pad, self.cnt.shape[1]), np.float32)])
        self.exp = np.concatenate([self.exp, np.zeros((pad, self.exp.shape[1]), np.float32)])
        self.disp = np.concatenate([self.disp, np.zeros((pad, self.disp.shape[1]), np.float32)])

    def clear(self, slot: int) -> None:
        """Forget one profile."""
        self.cnt[slot] = 0.0
        self.exp[slot] = 0.0
        self.disp[slot] = 0.0

    def begin(self, bucket: int) -> None:
        """Start the half-blocks that begin at `bucket`: the current one becomes the previous one
        (both are emptied after a gap of more than a half-block)."""
        last = self.last
        if last is not None and bucket <= last:
            return
        j = len(HALF)
        for k, h in enumerate(HALF):
            if last is not None and bucket // h == last // h:
                continue
            if last is not None and bucket // h == last // h + 1:
                self.cnt[:, k] = self.cnt[:, j + k]
                self.exp[:, k] = self.exp[:, j + k]
            else:
                self.cnt[:, k] = 0.0
                self.exp[:, k] = 0.0
            self.cnt[:, j + k] = 0.0
            self.exp[:, j + k] = 0.0
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

    def learn(
        self, s: np.ndarray, e: np.ndarray, weight: np.ndarray, n: np.ndarray, hl: float
    ) -> None:
        """Learn each scale's dispersion from this window (weights as the per-bucket dispersion).

        The step is ``max(λ, w/n)`` with the per-bucket dispersion's count `n`, each scale with a
        half-life of at least 20 of its windows; a window adds at most ``BOUND_Z²·φ``. (All scales
        in one pass of 2-d arrays: with few profiles the per-call cost, not the size, is the cost.)
        """
        lam, _, _ = _scale_constants(hl)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = weight[:, None] * np.maximum(lam, np.where(n > 0, 1.0 / n, 0.0)[:, None])
        ok = e > 1e-9
        r2 = np.where(ok, (s - e) ** 2 / np.where(ok, e, 1.0), 0.0)
        cur = self.disp.astype(np.float64)
        bound = BOUND_Z * BOUND_Z * np.maximum(cur, 1.0)
        r2 = np.minimum(r2, bound)
        self.disp[:] = np.where(ok & (step > 0), cur + step * (r2 - cur), cur)


@functools.cache
def _scale_constants(hl: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scale, for a dispersion half-life of `hl` buckets: the dispersion's learning rate,
    the cap on the buckets its estimate remembers, and the window length (``2·HALF``)."""
    mem = [max(hl, 40.0 * h) for h in HALF]
    lam = np.array([1.0 - 2.0 ** (-1.0 / x) for x in mem])
    return lam, np.array([1.44 * x for x in mem]), np.array([2.0 * h for h in HALF])


def dispersion_at(disp: np.ndarray, floor: np.ndarray, n: np.ndarray, hl: float) -> np.ndarray:
    """Per profile and scale, the dispersion to judge with, and 0 where a scale is not ready.

    At least `floor` (the one-bucket dispersion: wander only adds to it), times `SAFETY`
    plus one standard error of an estimate from the windows seen so far (``sqrt(2/m)``).
    """
    _, mem, length = _scale_constants(hl)
    m = np.minimum(n[:, None], mem) / length
    ready = m >= MIN_WINDOWS
    phi = np.maximum(disp, floor[:, None]) * (SAFETY + np.sqrt(2.0 / np.maximum(m, 1.0)))
    return np.where(ready, phi, 0.0).astype(disp.dtype)


def log10_of(p: float) -> float:
    """``-log10 p``, 300 for a p that underflowed to 0."""
    return 300.0 if p <= 0.0 else min(300.0, -math.log10(p))
