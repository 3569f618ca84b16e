"""The answers of the correlate stage's similarity search: episodes and incidents near a query.

The incident records themselves (`Incident`, `IncidentEvent`, ...) are shared by several stages
and live in `via_otlp.model`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimilarEpisode:
    """A stored episode near a query vector (`similarity`: cosine, -1..1)."""

    episode_id: str
    similarity: float
    incident_id: str
    source: str
    kind: str
    template: str
    started_ns: int
    score: float


@dataclass(frozen=True, slots=True)
class SimilarIncident:
    """An incident near a query: its best member's similarity."""

    incident_id: str
    similarity: float
    best_episode_id: str
    title: str


@dataclass(frozen=True, slots=True)
class SimilarResult:
    """The answer to a similarity search: episodes and incidents, most similar first."""

    episodes: tuple[SimilarEpisode, ...]
    incidents: tuple[SimilarIncident, ...]
