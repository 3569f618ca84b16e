"""The cascading-failure run through `Pipeline` offline, scored pairwise (also a script:
``python -m tests.correlate.run_cascade`` prints the figures)."""

from __future__ import annotations

import dataclasses
import time

from tests.correlate import cascade
from via_otlp.app import Pipeline
from via_otlp.config import Config
from via_otlp.correlate.config import CorrelateConfig, RelatednessConfig
from via_otlp.correlate.evaluate import PairwiseScores, pairwise_scores
from via_otlp.correlate.offline import OfflineRun, correlate_events
from via_otlp.detect.config import DetectConfig
from via_otlp.model import AnomalyEvent


def pipeline_config() -> Config:
    detect = DetectConfig(warmup=600.0, cooldown=60.0)
    detect = dataclasses.replace(
        detect, novelty=dataclasses.replace(detect.novelty, source_warmup=600.0, threshold=0.0)
    )
    return dataclasses.replace(Config(), detect=detect)


def correlate_config() -> CorrelateConfig:
    return CorrelateConfig(
        enabled=True, relatedness=RelatednessConfig(dependencies=cascade.DEPENDENCIES)
    )


def anomaly_events() -> list[AnomalyEvent]:
    events: list[AnomalyEvent] = []
    pipeline = Pipeline(pipeline_config(), None, events.extend)
    for req in cascade.requests():
        batch = pipeline.intake.process(pipeline.intake.prepare_request(req, cascade.END))
        pipeline.consume(batch)
    pipeline.finish()
    return events


def score(events: list[AnomalyEvent], run: OfflineRun) -> PairwiseScores:
    truth: dict[str, str] = {}
    for e in events:
        if e.episode_id in truth:
            continue
        label = cascade.true_incident(e.source.service_name, e.started_ns)
        truth[e.episode_id] = label if label is not None else f"noise:{e.episode_id}"
    return pairwise_scores(truth, run.assignment)


def main() -> None:
    t = time.perf_counter()
    events = anomaly_events()
    run = correlate_events(events, correlate_config())
    s = score(events, run)
    print(
        f"{len(events)} anomaly events, {len(run.assignment)} episodes, "
        f"{len({*run.assignment.values()})} incidents in {time.perf_counter() - t:.1f}s"
    )
    for e in events:
        print(
            f"  {e.state.value:8} {e.source.service_name:9} {e.kind.value:11} {e.episode_id} -> "
            f"{run.assignment.get(e.episode_id)} truth={cascade.true_incident(e.source.service_name, e.started_ns)} {e.template[:60]}"
        )
    print(
        f"pairwise precision {s.precision:.3f} recall {s.recall:.3f} f1 {s.f1:.3f} "
        f"(true pairs {s.true_pairs}, predicted {s.predicted_pairs}, correct {s.correct_pairs})"
    )


if __name__ == "__main__":
    main()
