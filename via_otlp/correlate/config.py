"""Configuration of the correlate stage (the `correlate` section of via.json5).

Defaults live here and nowhere else. The embedding space (provider, model, dimension) names
the Qdrant collection, so changing any of them starts a new collection instead of mixing
vectors that cannot be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from via_otlp.configload import spec
from via_otlp.errors import ConfigError

Provider = Literal["hashing", "openai"]

_DEPENDENCY_RE = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*([^\s>-][^>]*?)\s*$")


def parse_dependency(text: str) -> tuple[str, str]:
    """``"checkout -> payments"`` → ``("checkout", "payments")``; ValueError when malformed.

    >>> parse_dependency("checkout -> payments")
    ('checkout', 'payments')
    """
    m = _DEPENDENCY_RE.match(text)
    if m is None or m.group(1) == m.group(2):
        raise ValueError(f"must be 'caller -> callee' with two different names, got {text!r}")
    return m.group(1), m.group(2)


def _check_http_url(url: str, path: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(path, f"must be an http:// or https:// URL, got {url!r}")


@dataclass(frozen=True)
class EmbeddingsRetryConfig:
    """Retries of a failed embeddings request (429, 5xx, timeouts, refused connections)."""

    max_attempts: int = field(default=3, metadata=spec(ge=1, le=20))
    initial_backoff: float = field(default=0.5, metadata=spec(unit="duration", gt=0))
    max_backoff: float = field(default=5.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        if self.initial_backoff > self.max_backoff:
            raise ConfigError("initial_backoff", "must be <= max_backoff")


@dataclass(frozen=True)
class EmbeddingsConfig:
    """How an episode's template becomes a vector."""

    provider: Provider = "hashing"
    dimension: int = field(default=256, metadata=spec(ge=8, le=16384))
    url: str = field(default="", metadata=spec(env="VIA_EMBEDDINGS_URL"))
    model: str = field(default="", metadata=spec(env="VIA_EMBEDDINGS_MODEL"))
    api_key: str = field(default="", metadata=spec(env="VIA_EMBEDDINGS_API_KEY"))
    timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    batch_size: int = field(default=32, metadata=spec(ge=1, le=4096))
    retry: EmbeddingsRetryConfig = field(default_factory=EmbeddingsRetryConfig)
    queue_size: int = field(default=10_000, metadata=spec(ge=1))
    retry_interval: float = field(default=15.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        if self.provider == "openai":
            if not self.url:
                raise ConfigError(
                    "url", "is required with provider 'openai' (e.g. http://127.0.0.1:1234/v1)"
                )
            _check_http_url(self.url, "url")
            if not self.model:
                raise ConfigError("model", "is required with provider 'openai'")


@dataclass(frozen=True)
class QdrantConfig:
    """Where episode vectors live: a Qdrant server by URL, or local on-disk mode."""

    url: str = field(default="", metadata=spec(env="VIA_QDRANT_URL"))
    api_key: str = field(default="", metadata=spec(env="VIA_QDRANT_API_KEY"))
    path: str = field(default="qdrant", metadata=spec(nonempty=True))
    collection_prefix: str = field(default="via_episodes", metadata=spec(nonempty=True))
    timeout: float = field(default=10.0, metadata=spec(unit="duration", gt=0))
    batch_size: int = field(default=256, metadata=spec(ge=1, le=10_000))
    queue_size: int = field(default=20_000, metadata=spec(ge=1))
    retry_max_backoff: float = field(default=10.0, metadata=spec(unit="duration", gt=0))

    def check(self) -> None:
        if self.url:
            _check_http_url(self.url, "url")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", self.collection_prefix):
            raise ConfigError("collection_prefix", "may hold only letters, digits, '_' and '-'")


@dataclass(frozen=True)
class RelatednessConfig:
    """How related two sources are (0..1): weights the temporal link between their episodes."""

    dependencies: tuple[str, ...] = ()
    namespace_attribute: str = "service.namespace"
    same_source: float = field(default=1.0, metadata=spec(ge=0.0, le=1.0))
    dependency: float = field(default=0.9, metadata=spec(ge=0.0, le=1.0))
    learned: float = field(default=0.8, metadata=spec(ge=0.0, le=1.0))
    same_namespace: float = field(default=0.6, metadata=spec(ge=0.0, le=1.0))
    other: float = field(default=0.2, metadata=spec(ge=0.0, le=1.0))
    max_learned_pairs: int = field(default=10_000, metadata=spec(ge=0))

    def check(self) -> None:
        for i, text in enumerate(self.dependencies):
            try:
                parse_dependency(text)
            except ValueError as exc:
                raise ConfigError(f"dependencies[{i}]", str(exc)) from None


@dataclass(frozen=True)
class CorrelateConfig:
    """Grouping anomaly episodes into incidents: time, shared trace ids, similar templates."""

    enabled: bool = True
    # 5 min: a caller's spike is often detected a few buckets after its callee's novelty.
    window: float = field(default=300.0, metadata=spec(unit="duration", gt=0))
    min_link_confidence: float = field(default=0.5, metadata=spec(gt=0.0, le=1.0))
    trace_confidence: float = field(default=0.95, metadata=spec(gt=0.0, le=1.0))
    semantic_threshold: float = field(default=0.85, metadata=spec(gt=0.0, le=1.0))
    merge_confidence: float = field(default=0.8, metadata=spec(gt=0.0, le=1.0))
    resolve_cooldown: float = field(default=300.0, metadata=spec(unit="duration", ge=0))
    max_open_incidents: int = field(default=1000, metadata=spec(ge=1))
    max_members: int = field(default=200, metadata=spec(ge=1))
    max_links_per_episode: int = field(default=8, metadata=spec(ge=1))
    max_episodes_remembered: int = field(default=100_000, metadata=spec(ge=1))
    queue_size: int = field(default=10_000, metadata=spec(ge=1))
    relatedness: RelatednessConfig = field(default_factory=RelatednessConfig)
    embeddings: EmbeddingsConfig = field(default_factory=EmbeddingsConfig)
    qdrant: QdrantConfig = field(default_factory=QdrantConfig)

    def check(self) -> None:
        if self.merge_confidence < self.min_link_confidence:
            raise ConfigError(
                "merge_confidence",
                f"must be >= min_link_confidence ({self.min_link_confidence}), got {self.merge_confidence}",
            )
