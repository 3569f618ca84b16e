"""Incident scenarios: which episodes belong together, and how well correlation groups them.

A scenario carries its incident truth in three optional keys (see `scenario.py`):

- ``anomalies[i].incident``: the true incident of an injected anomaly (anomalies with the same
  label are one incident; an anomaly without one is an incident of its own);
- ``anomalies[i].traces``: a trace group: the anomaly's records carry trace ids, and records of
  every anomaly of the group in the same bucket share them (the j-th record of each template in
  a bucket gets the same id), as a failing callee and its callers log the same requests;
- ``relatedness``: the correlate stage's `RelatednessConfig` for the run, e.g.
  ``relatedness: { dependencies: ["checkout -> db"] }``.

Scoring (`score_incidents`): every detected episode gets the label of the injected anomaly it
comes from (same source, one of the anomaly's templates when the run knows their rhythm hashes,
started from one bucket before the window to `tolerance` after it, or any time later for a
new template, which exists only because of its anomaly; the kind does not matter: a spike and
the drop after it are one story), or a label of its own when it matches none (a false
detection). The episodes are correlated offline (`correlate_events`, the same `Correlator` as
`serve`) and the grouping is scored as pairwise precision and recall (`pairwise_scores`).

Recurrences (`recurrences`): an incident whose anomaly repeats an earlier incident's anomaly
(same source, kind and template or text) recurs it; `search_recurrences` asks `Correlation`
(with a local Qdrant) for the episodes most similar to each recurring episode and reports
whether the earlier occurrence ranks first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xxhash

from via_otlp.config import Config
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.correlate.evaluate import PairwiseScores, pairwise_scores
from via_otlp.correlate.offline import OfflineRun, correlate_events
from via_otlp.model import AnomalyEvent
from via_otlp.simulate.generate import GeneratedRequest, Traffic, TruthWindow
from via_otlp.simulate.scenario import AnomalySpec, InjectedKind, Scenario

if TYPE_CHECKING:  # run.py pulls in the whole pipeline
    from via_otlp.simulate.run import RunResult

PRECISION_TARGET = 0.9
RECALL_TARGET = 0.8
NOISE_PREFIX = "noise:"


# -- trace ids shared across sources -----------------------------------------------------------


def trace_id(seed: int, group: str, k: int) -> bytes:
    """The trace id of the k-th failing request of a trace group (16 bytes).

    >>> trace_id(1, "db", 0) == trace_id(1, "db", 0) != trace_id(1, "db", 1)
    True
    """
    return xxhash.xxh3_128_digest(f"via-simulate\x1f{seed}\x1f{group}\x1f{k}".encode())


def shared_trace_ids(traffic: Traffic) -> Callable[[GeneratedRequest, int], None]:
    """A `Traffic.decorate` hook that gives the records of trace-group anomalies their trace ids.

    A record gets one when its template is one the anomaly affects and its time falls in the
    anomaly's window: the k-th such record of each template (counted from the window start, in
    time order) carries the group's k-th trace id. So a failing callee and its callers log the
    same requests, whichever bucket each one's records fall into; records of other templates and
    times carry none.
    """
    sc = traffic.scenario
    # Records of each template before each bucket: k of a record = before[b] - before[b0] + j.
    before = np.concatenate(
        [np.zeros((traffic.counts.shape[0], 1), dtype=np.int64),
         np.cumsum(traffic.counts.astype(np.int64), axis=1)],
        axis=1,
    )  # fmt: skip
    plan: dict[int, list[tuple[int, int, str]]] = {}  # code → [(first bucket, end bucket, group)]
    for w in traffic.truth:
        group = sc.anomalies[w.index].traces
        if not group:
            continue
        b0 = (w.start_ns - sc.start_ns) // sc.bucket_ns
        b1 = (w.end_ns - sc.start_ns) // sc.bucket_ns
        for code in w.template_codes:
            plan.setdefault(code, []).append((b0, b1, group))

    def decorate(g: GeneratedRequest, time_shift_ns: int) -> None:
        codes = g.codes.tolist()
        start = sc.start_ns + time_shift_ns
        seen: dict[tuple[int, int], int] = {}  # (code, bucket) → its records so far (time order)
        i = 0
        for rl in g.request.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    code = codes[i]
                    i += 1
                    spans = plan.get(code)
                    if not spans:
                        continue
                    b = (lr.time_unix_nano - start) // sc.bucket_ns
                    span = next((s for s in spans if s[0] <= b < s[1]), None)
                    if span is None:
                        continue
                    j = seen.get((code, b), 0)
                    seen[(code, b)] = j + 1
                    k = int(before[code, b] - before[code, span[0]]) + j
                    lr.trace_id = trace_id(sc.seed, span[2], k)

    return decorate


# -- truth -------------------------------------------------------------------------------------


def has_incident_labels(scenario: Scenario) -> bool:
    return any(a.incident for a in scenario.anomalies)


def incident_label(scenario: Scenario, index: int) -> str:
    """The true incident of anomaly `index`: its label, or one of its own."""
    return scenario.anomalies[index].incident or f"anomaly-{index}"


def first_events(events: Sequence[AnomalyEvent]) -> list[AnomalyEvent]:
    """The first event of every episode, in order."""
    seen: dict[str, AnomalyEvent] = {}
    for e in events:
        seen.setdefault(e.episode_id, e)
    return list(seen.values())


def window_of(
    e: AnomalyEvent,
    windows: Sequence[TruthWindow],
    rhythms_of: dict[int, frozenset[str]] | None,
    bucket_ns: int,
    tolerance_ns: int,
) -> TruthWindow | None:
    """The injected anomaly an episode comes from (the nearest start among those that fit)."""
    fits = []
    for w in windows:
        if w.source_key != e.source.key:
            continue
        # A new template exists only because of its anomaly: any later episode of it (the drift
        # down once it stops) tells the same story. Other windows end `tolerance` after them.
        aftermath = w.kind is InjectedKind.NEW_TEMPLATE and rhythms_of is not None
        end = e.started_ns if aftermath else w.end_ns + tolerance_ns
        if not w.start_ns - bucket_ns <= e.started_ns <= end:
            continue
        if (
            w.kind is not InjectedKind.SCHEMA
            and rhythms_of is not None
            and not any(e.rhythm_hash in rhythms_of.get(c, frozenset()) for c in w.template_codes)
        ):
            continue
        fits.append(w)
    return min(
        fits,
        key=lambda w: (e.started_ns < w.start_ns, abs(e.started_ns - w.start_ns), w.index),
        default=None,
    )


def episode_truth(result: RunResult, bucket_ns: int) -> dict[str, str]:
    """Episode id → true incident label (``noise:<episode>`` for a false detection)."""
    sc = result.scenario
    tolerance_ns = round(sc.tolerance * 1e9)
    out: dict[str, str] = {}
    for e in first_events(result.events):
        w = window_of(e, result.traffic.truth, result.rhythms_of, bucket_ns, tolerance_ns)
        out[e.episode_id] = (
            incident_label(sc, w.index) if w is not None else NOISE_PREFIX + e.episode_id
        )
    return out


def correlate_config(scenario: Scenario, base: CorrelateConfig | None = None) -> CorrelateConfig:
    """The correlate settings of a run: `base` (defaults) with the scenario's relatedness."""
    return replace(base or CorrelateConfig(), enabled=True, relatedness=scenario.relatedness)


# -- scoring -----------------------------------------------------------------------------------


@dataclass
class IncidentScore:
    """How one scenario's episodes were grouped."""

    scenario: str
    truth: dict[str, str]  # episode → true incident label
    run: OfflineRun
    pairwise: PairwiseScores

    @property
    def predicted(self) -> dict[str, str]:
        return self.run.assignment

    @property
    def true_incidents(self) -> int:
        return len({v for v in self.truth.values() if not v.startswith(NOISE_PREFIX)})

    @property
    def predicted_incidents(self) -> int:
        return len({self.predicted.get(e, e) for e in self.truth})

    @property
    def noise_episodes(self) -> int:
        return sum(1 for v in self.truth.values() if v.startswith(NOISE_PREFIX))


def score_incidents(
    result: RunResult, bucket_ns: int, base: CorrelateConfig | None = None
) -> IncidentScore:
    """Correlate a run's anomaly events offline and score the grouping pairwise."""
    truth = episode_truth(result, bucket_ns)
    run = correlate_events(result.events, correlate_config(result.scenario, base))
    return IncidentScore(result.scenario.name, truth, run, pairwise_scores(truth, run.assignment))


def suite_pairwise(scores: Sequence[IncidentScore]) -> PairwiseScores:
    """Pairwise scores over every scenario's episodes at once (no pair spans two scenarios)."""
    truth: dict[str, str] = {}
    predicted: dict[str, str] = {}
    for i, s in enumerate(scores):
        for e, label in s.truth.items():
            truth[f"{i}/{e}"] = f"{i}/{label}"
            predicted[f"{i}/{e}"] = f"{i}/{s.predicted.get(e, e)}"
    return pairwise_scores(truth, predicted)


def incident_table(scores: Sequence[IncidentScore]) -> str:
    """Per scenario and over the suite: episodes, incidents true and predicted, pairwise figures."""
    head = (
        f"{'incident grouping':<28} {'episodes':>8} {'noise':>5} {'true inc':>8} "
        f"{'pred inc':>8} {'pairs':>5} {'precision':>9} {'recall':>6} {'F1':>5}"
    )
    lines = [head, "-" * len(head)]

    def row(name: str, episodes: int, noise: int, true: int, pred: int, p: PairwiseScores) -> str:
        return (
            f"{name:<28} {episodes:>8} {noise:>5} {true:>8} {pred:>8} {p.true_pairs:>5} "
            f"{p.precision:>9.3f} {p.recall:>6.3f} {p.f1:>5.3f}"
        )

    for s in scores:
        lines.append(
            row(s.scenario, len(s.truth), s.noise_episodes, s.true_incidents,
                s.predicted_incidents, s.pairwise)
        )  # fmt: skip
    if len(scores) > 1:
        lines.append("-" * len(head))
        lines.append(
            row("all", sum(len(s.truth) for s in scores), sum(s.noise_episodes for s in scores),
                sum(s.true_incidents for s in scores), sum(s.predicted_incidents for s in scores),
                suite_pairwise(scores))
        )  # fmt: skip
    p = suite_pairwise(scores)
    ok = p.precision >= PRECISION_TARGET and p.recall >= RECALL_TARGET
    lines.append(
        f"targets: pairwise precision >= {PRECISION_TARGET}, recall >= {RECALL_TARGET}: "
        + ("met" if ok else "MISSED")
    )
    return "\n".join(lines)


def report_incidents(results: Sequence[RunResult], config: Config) -> list[str]:
    """`via-otlp simulate`'s hook: print the grouping table of the runs whose scenarios carry
    incident labels (nothing when none does); returns the targets missed."""
    labelled = [r for r in results if has_incident_labels(r.scenario)]
    if not labelled:
        return []
    scores = [score_incidents(r, config.detect.bucket_ns, config.correlate) for r in labelled]
    print()
    print(incident_table(scores))
    return incident_failures(scores)


def incident_failures(scores: Sequence[IncidentScore]) -> list[str]:
    p = suite_pairwise(scores)
    out = []
    if p.precision < PRECISION_TARGET:
        out.append(f"incident grouping: pairwise precision {p.precision:.3f} < {PRECISION_TARGET}")
    if p.recall < RECALL_TARGET:
        out.append(f"incident grouping: pairwise recall {p.recall:.3f} < {RECALL_TARGET}")
    return out


# -- recurrences and SearchSimilar ---------------------------------------------------------------


def _same_failure(a: AnomalySpec, b: AnomalySpec) -> bool:
    return (a.kind, a.source, a.template, a.text) == (b.kind, b.source, b.template, b.text)


def recurrences(scenario: Scenario) -> list[tuple[int, int]]:
    """(earlier anomaly, later anomaly) pairs: the same failure again, in another incident."""
    out = []
    anomalies = scenario.anomalies
    for j, later in enumerate(anomalies):
        for i, earlier in enumerate(anomalies):
            if (
                earlier.at < later.at
                and _same_failure(earlier, later)
                and incident_label(scenario, i) != incident_label(scenario, j)
            ):
                out.append((i, j))
                break  # the latest earlier one is not needed: any earlier occurrence will do
    return out


@dataclass(frozen=True)
class RecurrenceCheck:
    """SearchSimilar for one episode of a recurring failure: what ranked first."""

    episode_id: str
    earlier_incident: str  # the true label of the earlier occurrence
    top_episode_id: str
    top_label: str
    top_similarity: float
    rank: int  # 1-based rank of the first episode of the earlier occurrence (0 = not found)

    @property
    def ok(self) -> bool:
        return self.rank == 1


async def search_recurrences(
    result: RunResult,
    bucket_ns: int,
    base: CorrelateConfig | None = None,
    data_dir: str | Path | None = None,
    limit: int = 10,
) -> list[RecurrenceCheck]:
    """Feed a run's events to `Correlation` (local Qdrant under `data_dir`, or a temporary
    directory), then search like each episode of a recurring failure's later occurrence."""
    from via_otlp.correlate.service import Correlation

    sc = result.scenario
    pairs = recurrences(sc)
    if not pairs:
        return []
    truth = episode_truth(result, bucket_ns)
    tolerance_ns = round(sc.tolerance * 1e9)
    later_windows = {j: i for i, j in pairs}
    queries: list[tuple[str, str]] = []  # (episode id, earlier incident label)
    for e in first_events(result.events):
        w = window_of(e, result.traffic.truth, result.rhythms_of, bucket_ns, tolerance_ns)
        if w is not None and w.index in later_windows:
            queries.append((e.episode_id, incident_label(sc, later_windows[w.index])))
    with tempfile.TemporaryDirectory(prefix="via-simulate-qdrant-") as tmp:
        correlation = Correlation(correlate_config(sc, base), data_dir or tmp)
        await correlation.start()
        try:
            correlation.submit(result.events)
            await correlation.flush(60.0)
            assert correlation.store is not None
            await correlation.store.flush(60.0)
            out = []
            for episode_id, earlier in queries:
                found = await correlation.search_similar(episode_id=episode_id, limit=limit)
                labels = [truth.get(h.episode_id, "?") for h in found.episodes]
                rank = next((n + 1 for n, lab in enumerate(labels) if lab == earlier), 0)
                top = found.episodes[0] if found.episodes else None
                out.append(
                    RecurrenceCheck(
                        episode_id,
                        earlier,
                        top.episode_id if top else "",
                        labels[0] if labels else "",
                        top.similarity if top else 0.0,
                        rank,
                    )
                )
            return out
        finally:
            await correlation.shutdown()
