"""Correlation without I/O, for replays and the simulation suite: events in, incidents out.

The vectors come from `HashingEmbedder` (pure numpy) of the configured dimension, whatever
the configured provider, so an offline run is deterministic and needs no network.

>>> from via_otlp.correlate.config import CorrelateConfig
>>> run = correlate_events([], CorrelateConfig())
>>> run.incident_events, run.assignment
([], {})
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from via_otlp.correlate.config import CorrelateConfig
from via_otlp.correlate.correlator import Correlator
from via_otlp.correlate.embeddings import HashingEmbedder
from via_otlp.correlate.service import episode_text
from via_otlp.model import AnomalyEvent, IncidentEvent


@dataclass
class OfflineRun:
    """What an offline correlation produced: every incident event, and episode → incident."""

    correlator: Correlator
    incident_events: list[IncidentEvent] = field(default_factory=list)
    assignment: dict[str, str] = field(default_factory=dict)


def correlate_events(
    events: Iterable[AnomalyEvent], config: CorrelateConfig, *, flush: bool = True
) -> OfflineRun:
    """Run `events` (in order) through a new `Correlator`; `flush` resolves what can be at the end."""
    correlator = Correlator(config)
    embedder = HashingEmbedder(config.embeddings.dimension)
    run = OfflineRun(correlator)
    seen: list[str] = []
    for event in events:
        vector = None
        if correlator.incident_of(event.episode_id) is None:
            vector = embedder.embed_one(episode_text(event))
            seen.append(event.episode_id)
        run.incident_events += correlator.observe(event, vector)
    if flush:
        run.incident_events += correlator.flush()
    run.assignment = {e: correlator.incident_of(e) or e for e in seen}
    return run
