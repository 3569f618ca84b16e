"""The correlate stage: anomaly episodes grouped into incidents, by time, trace ids and similarity.

- `Correlator` (correlator.py): the pure algorithm: `observe(event, vector)` → incident events;
- `Incident`, `IncidentLink`, `LinkType`, `IncidentEvent` (model.py): what it produces;
- `HashingEmbedder`, `OpenAIEmbedder`, `EmbeddingSpace` (embeddings.py): templates → vectors;
- `VectorStore` (store.py): episodes in Qdrant, one collection per embedding space;
- `Correlation` (service.py): the async stage the app feeds, which ties them together;
- `pairwise_scores` (evaluate.py): pairwise precision and recall of a grouping.

Only model.py and config.py are imported by other stages (registry, emit): keep them free of
imports from those stages.
"""

from typing import TYPE_CHECKING

from via_otlp.lazy import lazy_exports

if TYPE_CHECKING:
    from via_otlp.correlate.config import CorrelateConfig
    from via_otlp.correlate.correlator import Correlator, CorrelatorStats, incident_id
    from via_otlp.correlate.embeddings import (
        EmbeddingSpace,
        HashingEmbedder,
        OpenAIEmbedder,
        make_embedder,
    )
    from via_otlp.correlate.evaluate import PairwiseScores, pairwise_scores
    from via_otlp.correlate.model import SimilarEpisode, SimilarIncident, SimilarResult
    from via_otlp.model import (
        Incident,
        IncidentEvent,
        IncidentEventKind,
        IncidentLink,
        IncidentMember,
        IncidentState,
        LinkType,
    )

__all__ = [
    "CorrelateConfig",
    "Correlator",
    "CorrelatorStats",
    "EmbeddingSpace",
    "HashingEmbedder",
    "Incident",
    "IncidentEvent",
    "IncidentEventKind",
    "IncidentLink",
    "IncidentMember",
    "IncidentState",
    "LinkType",
    "OpenAIEmbedder",
    "PairwiseScores",
    "SimilarEpisode",
    "SimilarIncident",
    "SimilarResult",
    "incident_id",
    "make_embedder",
    "pairwise_scores",
]

# Imported when first read: see via_otlp/lazy.py.
__getattr__ = lazy_exports(
    __name__,
    {
        "CorrelateConfig": "via_otlp.correlate.config",
        "Correlator": "via_otlp.correlate.correlator",
        "CorrelatorStats": "via_otlp.correlate.correlator",
        "incident_id": "via_otlp.correlate.correlator",
        "EmbeddingSpace": "via_otlp.correlate.embeddings",
        "HashingEmbedder": "via_otlp.correlate.embeddings",
        "OpenAIEmbedder": "via_otlp.correlate.embeddings",
        "make_embedder": "via_otlp.correlate.embeddings",
        "PairwiseScores": "via_otlp.correlate.evaluate",
        "pairwise_scores": "via_otlp.correlate.evaluate",
        "SimilarEpisode": "via_otlp.correlate.model",
        "SimilarIncident": "via_otlp.correlate.model",
        "SimilarResult": "via_otlp.correlate.model",
        "Incident": "via_otlp.model",
        "IncidentEvent": "via_otlp.model",
        "IncidentEventKind": "via_otlp.model",
        "IncidentLink": "via_otlp.model",
        "IncidentMember": "via_otlp.model",
        "IncidentState": "via_otlp.model",
        "LinkType": "via_otlp.model",
    },
)
