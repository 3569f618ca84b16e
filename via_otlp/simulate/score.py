"""Scoring: detections against truth windows, per kind and overall.

Rules (the yardstick for every change to detection):

- A *detection* is the opening event of an episode. It matches a truth window when its kind fits
  the injected kind (`FITS`), it is on the window's source (and, when the run knows which
  rhythm hashes the affected templates got, on one of them; schema windows are per source),
  and its episode starts inside the window or at most `tolerance` after its end.
- A window matched by at least one detection is a true positive, otherwise a miss. Detections
  that match a window are correct (several may match one window: a silent source drops every
  template); the others are false positives, booked under the kind they would label (`BOOKED`).
- Delay: from the window start to the first matching event's time (the end of the bucket that
  produced it), in buckets; a detection in the window's first bucket has delay 1.
- False episodes per source per day: false positives on a source divided by its quiet time
  (the run, less every window of that source and its tolerance), in days.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState
from via_otlp.simulate.generate import TruthWindow
from via_otlp.simulate.scenario import InjectedKind

FITS: Mapping[InjectedKind, frozenset[AnomalyKind]] = {
    InjectedKind.SPIKE: frozenset({AnomalyKind.SPIKE}),
    InjectedKind.DROP: frozenset({AnomalyKind.DROP}),
    InjectedKind.SILENCE: frozenset({AnomalyKind.DROP}),
    InjectedKind.NEW_TEMPLATE: frozenset({AnomalyKind.NOVELTY}),
    InjectedKind.CARDINALITY: frozenset({AnomalyKind.CARDINALITY}),
    InjectedKind.DRIFT: frozenset({AnomalyKind.DRIFT}),
    InjectedKind.SCHEMA: frozenset({AnomalyKind.SCHEMA}),
}
BOOKED: Mapping[AnomalyKind, InjectedKind] = {
    AnomalyKind.SPIKE: InjectedKind.SPIKE,
    AnomalyKind.DROP: InjectedKind.DROP,
    AnomalyKind.NOVELTY: InjectedKind.NEW_TEMPLATE,
    AnomalyKind.CARDINALITY: InjectedKind.CARDINALITY,
    AnomalyKind.DRIFT: InjectedKind.DRIFT,
    AnomalyKind.SCHEMA: InjectedKind.SCHEMA,
}
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class Detection:
    """The part of an opening event that scoring needs."""

    kind: AnomalyKind
    source_key: str
    rhythm_hash: str
    started_ns: int
    time_ns: int
    template: str = ""

    @classmethod
    def of(cls, e: AnomalyEvent) -> Detection:
        return cls(e.kind, e.source.key, e.rhythm_hash, e.started_ns, e.time_ns, e.template)


def detections_of(events: Iterable[AnomalyEvent]) -> list[Detection]:
    """Opening events only: one detection per episode."""
    return [Detection.of(e) for e in events if e.state is EpisodeState.OPEN]


@dataclass
class KindScore:
    """Counts and delays for one injected kind (or for everything)."""

    windows: int = 0
    hits: int = 0  # windows matched (true positives)
    matched_detections: int = 0
    false_positives: int = 0
    delays: list[float] = field(default_factory=list)  # in buckets, one per hit window

    @property
    def misses(self) -> int:
        return self.windows - self.hits

    @property
    def precision(self) -> float:
        n = self.matched_detections + self.false_positives
        return self.matched_detections / n if n else 1.0

    @property
    def recall(self) -> float:
        return self.hits / self.windows if self.windows else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def delay_median(self) -> float | None:
        return quantile(self.delays, 0.5)

    @property
    def delay_p90(self) -> float | None:
        return quantile(self.delays, 0.9)

    def add(self, other: KindScore) -> None:
        self.windows += other.windows
        self.hits += other.hits
        self.matched_detections += other.matched_detections
        self.false_positives += other.false_positives
        self.delays += other.delays

    def to_json(self) -> dict[str, object]:
        return {
            "windows": self.windows, "true_positives": self.hits, "misses": self.misses,
            "matched_detections": self.matched_detections, "false_positives": self.false_positives,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4),
            "f1": round(self.f1, 4), "delay_median_buckets": self.delay_median,
            "delay_p90_buckets": self.delay_p90,
        }  # fmt: skip


def quantile(xs: list[float], q: float) -> float | None:
    """The q-quantile by linear interpolation (None for no values)."""
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Score:
    """The result of scoring one run (or several, merged)."""

    by_kind: dict[InjectedKind, KindScore] = field(default_factory=dict)
    false_by_source: dict[str, int] = field(default_factory=dict)
    quiet_days_by_source: dict[str, float] = field(default_factory=dict)
    window_hits: dict[int, float | None] = field(default_factory=dict)  # window index → delay
    false_detections: list[Detection] = field(default_factory=list)

    @property
    def overall(self) -> KindScore:
        total = KindScore()
        for k in self.by_kind.values():
            total.add(k)
        return total

    def false_per_source_day(self) -> dict[str, float]:
        return {
            s: self.false_by_source.get(s, 0) / d if d > 0 else 0.0
            for s, d in self.quiet_days_by_source.items()
        }

    def merge(self, other: Score, prefix: str = "") -> None:
        for k, v in other.by_kind.items():
            self.by_kind.setdefault(k, KindScore()).add(v)
        for s, n in other.false_by_source.items():
            key = prefix + s
            self.false_by_source[key] = self.false_by_source.get(key, 0) + n
        for s, d in other.quiet_days_by_source.items():
            key = prefix + s
            self.quiet_days_by_source[key] = self.quiet_days_by_source.get(key, 0.0) + d
        self.false_detections += other.false_detections


def score(
    windows: list[TruthWindow],
    detections: list[Detection],
    *,
    sources: Iterable[str],
    run_start_ns: int,
    run_end_ns: int,
    bucket_ns: int,
    tolerance_ns: int,
    rhythms_of: Mapping[int, frozenset[str]] | None = None,
) -> Score:
    """Score `detections` against `windows` (see the module docstring for the rules).

    `rhythms_of` maps a template code to the rhythm hashes its records got; without it (a live
    run) matching is by source, kind and time only.
    """
    out = Score()
    for w in windows:
        out.by_kind.setdefault(w.kind, KindScore()).windows += 1
    first: dict[int, int] = {}
    for d in sorted(detections, key=lambda d: (d.time_ns, d.source_key, d.rhythm_hash)):
        cands = [w for w in windows if _matches(w, d, tolerance_ns, rhythms_of)]
        if not cands:
            booked = BOOKED[d.kind]
            out.by_kind.setdefault(booked, KindScore()).false_positives += 1
            out.false_by_source[d.source_key] = out.false_by_source.get(d.source_key, 0) + 1
            out.false_detections.append(d)
            continue
        # Prefer a window no detection matched yet, so one detection cannot hide another's miss.
        hit = next((w for w in cands if w.index not in first), cands[0])
        ks = out.by_kind[hit.kind]
        ks.matched_detections += 1
        if hit.index not in first:
            first[hit.index] = d.time_ns
            ks.hits += 1
            ks.delays.append((d.time_ns - hit.start_ns) / bucket_ns)
    for w in windows:
        t = first.get(w.index)
        out.window_hits[w.index] = None if t is None else (t - w.start_ns) / bucket_ns
    for s in sources:
        busy = _union(
            [(w.start_ns, w.end_ns + tolerance_ns) for w in windows if w.source_key == s],
            run_start_ns,
            run_end_ns,
        )
        out.quiet_days_by_source[s] = max(0, run_end_ns - run_start_ns - busy) / DAY_NS
        out.false_by_source.setdefault(s, 0)
    return out


def _matches(
    w: TruthWindow, d: Detection, tol: int, rhythms_of: Mapping[int, frozenset[str]] | None
) -> bool:
    return w.start_ns <= d.started_ns <= w.end_ns + tol and _fits(w, d, rhythms_of)


def after_window(
    w: TruthWindow, d: Detection, tol: int, rhythms_of: Mapping[int, frozenset[str]] | None
) -> bool:
    """Whether `d` would have matched `w` but started after its tolerance: a late find where the
    injected change outlasts its window (a drift's level is held to the end of the run)."""
    return d.started_ns > w.end_ns + tol and _fits(w, d, rhythms_of)


def _fits(w: TruthWindow, d: Detection, rhythms_of: Mapping[int, frozenset[str]] | None) -> bool:
    """Kind, source and (where known) template fit the window; time aside."""
    if d.kind not in FITS[w.kind] or d.source_key != w.source_key:
        return False
    if w.kind is InjectedKind.SCHEMA or rhythms_of is None:
        return True
    return any(d.rhythm_hash in rhythms_of.get(c, frozenset()) for c in w.template_codes)


def _union(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    total, end = 0, lo
    for a, b in sorted((max(lo, a), min(hi, b)) for a, b in spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total
