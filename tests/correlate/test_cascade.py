"""Cascading failures through `Pipeline` offline, grouped and scored pairwise over episodes
(targets: precision >= 0.9, recall >= 0.8). `python -m tests.correlate.run_cascade` prints them."""

from __future__ import annotations

import dataclasses

import pytest

from tests.correlate import run_cascade
from via_otlp.correlate.config import RelatednessConfig
from via_otlp.correlate.offline import correlate_events
from via_otlp.model import AnomalyEvent, LinkType


@pytest.fixture(scope="module")
def events() -> list[AnomalyEvent]:
    return run_cascade.anomaly_events()


def test_cascade_is_grouped(events: list[AnomalyEvent]) -> None:
    run = correlate_events(events, run_cascade.correlate_config())
    s = run_cascade.score(events, run)
    assert s.true_pairs >= 4
    assert s.precision >= 0.9 and s.recall >= 0.8, s
    # The index/search incident is linked by trace ids alone (no dependency, other namespaces).
    index = next(e for e in events if e.source.service_name == "index")
    inc = next(
        e.incident for e in reversed(run.incident_events)
        if index.episode_id in e.incident.episode_ids
    )  # fmt: skip
    assert {x.type for x in inc.links} == {LinkType.TRACE}
    assert {m.source.service_name for m in inc.members} == {"index", "search"}


def test_without_configured_dependencies_trace_ids_still_group(events: list[AnomalyEvent]) -> None:
    config = dataclasses.replace(run_cascade.correlate_config(), relatedness=RelatednessConfig())
    s = run_cascade.score(events, correlate_events(events, config))
    assert s.precision >= 0.9 and s.recall >= 0.8, s
